"""Sentinel-2 processing-baseline 04.00 harmonisation: reflectance continuous across January 2022.

Since processing baseline (PB) 04.00 (products generated from 25 January 2022, and every
Collection-1 reprocessed product, PB 05.xx, whatever its acquisition date) ESA shifts the digital
numbers of Sentinel-2 reflectance bands by a band-dependent offset, ``BOA_ADD_OFFSET`` (Level-2A)
or ``RADIO_ADD_OFFSET`` (Level-1C), equal to -1000 DN for every band so far:

    reflectance = (DN + ADD_OFFSET) / QUANTIFICATION_VALUE = DN * 0.0001 - 0.1

(ESA, *Sentinel-2 Products Specification Document* S2-PDGS-TAS-DI-PSD, issue 15, section on the
radiometric offset; Copernicus announcement "Sentinel-2 major products upgrade", Oct. 2021).
Products of earlier baselines have no offset (``reflectance = DN * 0.0001``). Reading both
with one scale makes a jump of +0.1 reflectance (+1000 DN) at the baseline change; composites
across it are biased and indices shift.

Catalogues tell it in different ways (see the real items in ``shared/data/stac``):

* Planetary Computer ``sentinel-2-l2a``: raw ESA DN, no ``raster:bands`` scale/offset, the
  baseline in ``s2:processing_baseline`` (``"02.12"``, ``"04.00"``, ``"05.11"``);
* Earth Search v1 ``sentinel-2-c1-l2a`` and ``sentinel-2-l1c``: raw DN with ``raster:bands``
  ``scale: 0.0001, offset: -0.1`` and ``s2:processing_baseline``;
* Earth Search v1 ``sentinel-2-l2a`` (and v0 ``sentinel-s2-l2a-cogs``): the COGs of PB >= 04.00
  products were rewritten with the offset *already subtracted* from the DN, flagged by
  ``earthsearch:boa_offset_applied: true`` (v0: ``sentinel:boa_offset_applied``); the collection's
  ``item_assets`` say ``offset: 0`` while the items repeat ``offset: -0.1``. Element 84 states the
  flag is the truth (github.com/Element84/earth-search issue 9), so a flagged item gets offset 0.

Rule, per item and reflectance band (``B01``..``B12``, ``B8A`` or their common names):

1. ``*:boa_offset_applied`` is true -> the DN are already on the old scale: offset 0;
2. else the processing baseline is known (property, or ``_Nxxyy_`` in ``s2:product_uri`` / the
   id) -> ``-1000 DN * scale`` when >= 04.00, else 0;
3. else nothing is known: the catalogue's ``raster:bands`` offset is kept as it is.

The result is physical reflectance on the pre-2022 scale (DN * 0.0001 with no offset), so a
PB 03.xx scene and a PB 04.00 scene of the same surface give the same value. Scale is never
changed. Items of other sensors pass through untouched.
"""

from __future__ import annotations

import re

S2_BANDS = frozenset({"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                      "B11", "B12"})
S2_COMMON_NAMES = frozenset({"coastal", "blue", "green", "red", "rededge", "rededge1", "rededge2",
                             "rededge3", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22"})
#: DN added by ESA since processing baseline 04.00 (BOA_ADD_OFFSET / RADIO_ADD_OFFSET = -1000).
ADD_OFFSET_DN = -1000.0
NEW_BASELINE = (4, 0)
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})(?:_|\.|$)")


def is_sentinel2(item: dict, collection: dict | None = None) -> bool:
    """True for an item of a Sentinel-2 MSI product (platform, constellation or collection id)."""
    props = item.get("properties") or {}
    platform = str(props.get("platform") or "").lower().replace(" ", "-")
    constellation = str(props.get("constellation") or "").lower().replace(" ", "-")
    if platform.startswith("sentinel-2") or constellation == "sentinel-2":
        return True
    ids = [str(item.get("collection") or ""), str((collection or {}).get("id") or "")]
    return any(("sentinel-2" in c.lower() or "sentinel-s2" in c.lower()) for c in ids)


def processing_baseline(item: dict) -> tuple[int, int] | None:
    """``(major, minor)`` of the item's processing baseline, or None when the item does not say.

    Read from ``s2:processing_baseline`` / ``sentinel:processing_baseline`` (``"04.00"``), or the
    ``_Nxxyy_`` part of ``s2:product_uri`` or the item id.
    """
    props = item.get("properties") or {}
    for key in ("s2:processing_baseline", "sentinel:processing_baseline"):
        value = props.get(key)
        if value is None:
            continue
        match = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?\s*", str(value))
        if match:
            return int(match.group(1)), int(match.group(2) or 0)
    for text in (props.get("s2:product_uri"), item.get("id")):
        match = _BASELINE_IN_NAME.search(str(text or ""))
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def offset_applied(item: dict) -> bool | None:
    """The catalogue's flag saying the ADD_OFFSET was already removed from the DN, if any."""
    props = item.get("properties") or {}
    for key in ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied"):
        if key in props and props[key] is not None:
            return bool(props[key])
    return None


def is_reflectance_band(item: dict, asset_key: str, collection: dict | None = None) -> bool:
    """True when the asset is one of the 13 MSI bands (by key, ``eo:bands`` name or common name)."""
    if asset_key in S2_BANDS or asset_key in S2_COMMON_NAMES:
        return True
    asset = (item.get("assets") or {}).get(asset_key) or \
        ((collection or {}).get("item_assets") or {}).get(asset_key) or {}
    bands = asset.get("eo:bands") or asset.get("bands") or []
    if len(bands) != 1:  # e.g. the 3-band "visual" (TCI) asset
        return False
    name = str(bands[0].get("name") or "")
    common = str(bands[0].get("common_name") or bands[0].get("eo:common_name") or "")
    return name in S2_BANDS or common in S2_COMMON_NAMES


def dn_offset(item: dict, asset_key: str, collection: dict | None = None) -> float | None:
    """DN to add before scaling so the band is on the pre-04.00 scale.

    Returns:
        ``-1000.0`` (raw DN of PB >= 04.00), ``0.0`` (old baseline, or offset already removed by
        the catalogue), or None (not a Sentinel-2 reflectance band, or the item does not say).
    """
    if not is_sentinel2(item, collection) or not is_reflectance_band(item, asset_key, collection):
        return None
    if offset_applied(item) is True:
        return 0.0
    baseline = processing_baseline(item)
    if baseline is None:
        return None
    return ADD_OFFSET_DN if baseline >= NEW_BASELINE else 0.0


def harmonized_scale_offset(item: dict, asset_key: str, scale: float, offset: float,
                            collection: dict | None = None) -> tuple[float, float]:
    """The ``(scale, offset)`` turning the asset's DN into reflectance on one scale across the
    PB 04.00 change: ``physical = DN * scale + offset``.

    Args:
        item: the STAC Item document.
        asset_key: the asset (band) read.
        scale, offset: what the catalogue says (``raster:bands``); offset in physical units.
        collection: the item's collection document (identification and ``item_assets``).

    Returns:
        ``(scale, dn_offset * scale)`` for a Sentinel-2 reflectance band whose baseline (or
        offset flag) is known; ``(scale, offset)`` unchanged otherwise.
    """
    shift = dn_offset(item, asset_key, collection)
    if shift is None:
        return scale, offset
    return scale, shift * scale
