"""Band vocabulary: STAC ``eo:bands`` common names, and how assets map onto them."""

from __future__ import annotations

from stacube.catalog.quality import QUALITY_KEY
from stacube.errors import InvalidInput, listing

#: STAC eo extension common band names (eo v1.1 / STAC 1.1 ``eo:common_name``).
COMMON_NAMES = (
    "pan", "coastal", "blue", "green", "green05", "yellow", "red", "rededge", "rededge071",
    "rededge075", "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "lwir",
    "lwir11", "lwir12",
)


def asset_common_name(asset: dict) -> str | None:
    """The common name of a single-band asset (``eo:bands[0].common_name`` or ``eo:common_name``)."""
    if asset.get("eo:common_name"):
        return asset["eo:common_name"]
    bands = asset.get("eo:bands") or asset.get("bands") or []
    if len(bands) == 1:
        return bands[0].get("common_name") or bands[0].get("eo:common_name")
    return None


def band_map(collection: dict) -> dict[str, str]:
    """``{common name, alias or asset key: asset key}`` of a collection's ``item_assets``.

    Asset keys map to themselves; common names (``red`` -> ``B04``) and ODC measurement aliases
    (``stacube:aliases``) map to the asset carrying them.
    """
    mapping: dict[str, str] = {}
    assets = collection.get("item_assets") or {}
    for key in assets:
        mapping[key] = key
    for key, asset in assets.items():
        for name in [asset_common_name(asset), *(asset.get("stacube:aliases") or [])]:
            if name and name not in mapping:
                mapping[name] = key
    return mapping


def resolve_bands(collection: dict, names: list[str]) -> dict[str, str]:
    """Map requested band names (common names or asset keys) to this collection's asset keys.

    Returns:
        ``{requested name: asset key}`` in request order.

    Raises:
        InvalidInput: a name matches no asset of the collection.
    """
    mapping = band_map(collection)
    out = {}
    for name in names:
        if name in mapping:
            out[name] = mapping[name]
        elif name.lower() in mapping:
            out[name] = mapping[name.lower()]
        else:
            known = sorted({k for k in mapping if k in COMMON_NAMES} | set(mapping.values()))
            none = ("none known: it declares no item_assets and no item is registered yet"
                    if not collection.get("item_assets") else "none")
            raise InvalidInput(
                f"collection {collection['id']!r} has no band {name!r}; it has: {listing(known, none=none)}"
            )
    return out


#: Accepted stand-ins when a collection lacks a common name (STAC eo: nir08 is a narrow nir).
COMMON_NAME_FALLBACKS = {
    "nir": ["nir08"], "nir08": ["nir"], "lwir": ["lwir11"], "lwir11": ["lwir"],
    "rededge": ["rededge071"], "green": ["green05"],
}


def resolve_band_assets(collection: dict, names: list[str]) -> dict[str, str]:
    """Like :func:`resolve_bands`, accepting the stand-ins of :data:`COMMON_NAME_FALLBACKS`
    (``nir`` served by a ``nir08`` asset...), so collections of different sensors match.

    Raises:
        InvalidInput: a name matches no asset, even through its stand-ins.
    """
    out = {}
    for name in names:
        first_error = None
        for candidate in [name, *COMMON_NAME_FALLBACKS.get(name, [])]:
            try:
                out[name] = resolve_bands(collection, [candidate])[candidate]
                break
            except InvalidInput as exc:
                first_error = first_error or exc
        else:
            raise first_error  # type: ignore[misc]
    return out


def data_bands(collection: dict) -> list[str]:
    """Asset keys of the data (non-quality) bands, in ``item_assets`` order."""
    quality_asset = (collection.get(QUALITY_KEY) or {}).get("asset")
    return [
        key for key, asset in (collection.get("item_assets") or {}).items()
        if key != quality_asset and "data" in (asset.get("roles") or ["data"])
    ]
