"""Local files read in the request's thread, remote ones in rio-tiler's thread pools.

rio-tiler reads the assets of an item (``RIO_TILER_MAX_THREADS``, 5 per core by default) and the
items of a mosaic (titiler-pgstac's ``MOSAIC_CONCURRENCY``, the same by default) in a new thread
pool per call, which pays where reads wait on the network (S3, HTTP). A local file's read takes a
few milliseconds: there the pools' new threads (each starting its own GDAL environment) and
their contention for the GIL cost more than they overlap. Measured on Landsat RGB mosaic tiles of
the New York sample (``benchmarks/tile_latency.py``, tile cache off, 2 cores, December 4, 2026):
z7-8 tiles p50 484-494 ms -> 214-217 ms, z12-13 61.6 ms -> 34.2-34.5 ms.

* :class:`LocalReadsInThread` - a mixin for titiler-pgstac's item readers: a call whose assets
  are all local files reads them one after the other (``threads=1``).
* :class:`LocalItemsInThread` - a mixin for titiler-pgstac's mosaic backend: a tile whose items
  have the requested assets as local files reads the items one after the other, so the mosaic
  also stops at the first items that fill it (rio-tiler's ``mosaic_reader`` reads ``threads``
  items at a time); the same for its crops (``bbox``, ``feature``) and points.

A ``threads=`` given by the caller of a reader wins; hrefs are classified by their text
(:func:`stacube.access.prefixes.is_local`: ``/vsi...`` paths are not local), before the read
gate maps them.
"""

from __future__ import annotations

from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import RioTilerError
from rio_tiler.utils import cast_to_sequence

from stacube.access.prefixes import is_local


def local_item(item: dict, assets=None) -> bool:
    """Whether the ``assets`` of ``item`` (a STAC Item dict; names, or rio-tiler's asset
    dicts with a ``name``; every asset when None or empty) are local files, their alternate
    hrefs too."""
    found = item.get("assets") or {}
    names = [a.get("name") if isinstance(a, dict) else a for a in cast_to_sequence(assets or ())] or list(found)
    hrefs = []
    for name in names:
        asset = found.get(name) or {}
        hrefs.append(asset.get("href"))
        hrefs += [(alt or {}).get("href") for alt in (asset.get("alternate") or {}).values()]
    return all(is_local(h) for h in hrefs)


def _in_thread_when_local(name: str):
    """The reader method ``name`` of rio-tiler's ``MultiBaseReader``, given ``threads=1`` when
    the assets it reads are local files (and the caller gave no ``threads``)."""

    def method(self, *args, **kwargs):
        if "threads" not in kwargs and self.reads_local(kwargs.get("assets")):
            kwargs["threads"] = 1
        return getattr(super(LocalReadsInThread, self), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


class LocalReadsInThread:
    """A mixin for rio-tiler ``MultiBaseReader`` classes: when the assets a call reads are local
    files (the URLs the reader opens: ``_get_asset_info``, alternates and relative hrefs
    resolved), they are read one after the other in the calling thread (``threads=1`` for
    rio-tiler's ``tasks.multi_*``)."""

    def reads_local(self, assets=None) -> bool:
        """Whether the URLs of ``assets`` (every asset of the item when None) are local files;
        False for an asset the reader does not know (its own call raises the error)."""
        names = cast_to_sequence(assets or ()) or self.default_assets or self.assets
        try:
            return all(is_local(self._get_asset_info(a)["url"]) for a in names)
        except (RioTilerError, ValueError, KeyError):
            return False

    info = _in_thread_when_local("info")
    statistics = _in_thread_when_local("statistics")
    tile = _in_thread_when_local("tile")
    part = _in_thread_when_local("part")
    preview = _in_thread_when_local("preview")
    point = _in_thread_when_local("point")
    feature = _in_thread_when_local("feature")


class LocalItemsInThread:
    """A mixin for rio-tiler mosaic backends (``BaseBackend``): a tile, crop (``part``, and
    ``feature`` through it) or point whose items all have the requested assets (``assets=``;
    every asset without) as local files reads item after item in the calling thread
    (``threads=1`` for rio-tiler's ``mosaic_reader`` and ``multi_values_list``, in place of
    titiler-pgstac's ``MOSAIC_CONCURRENCY``). The items are looked up once more to decide: the
    backend's own cache answers that lookup."""

    @staticmethod
    def _threads(items: list, kwargs: dict) -> dict:
        if items and all(local_item(i, kwargs.get("assets")) for i in items):
            kwargs["threads"] = 1
        return kwargs

    def tile(self, x: int, y: int, z: int, search_options: dict | None = None, **kwargs):
        items = self.assets_for_tile(x, y, z, **(search_options or {}))
        return super().tile(x, y, z, search_options=search_options, **self._threads(items, kwargs))

    def part(self, bbox, bounds_crs=WGS84_CRS, search_options: dict | None = None, **kwargs):
        items = self.assets_for_bbox(*bbox, coord_crs=bounds_crs, **(search_options or {}))
        return super().part(bbox, bounds_crs=bounds_crs, search_options=search_options,
                            **self._threads(items, kwargs))

    def point(self, lon: float, lat: float, coord_crs=WGS84_CRS, search_options: dict | None = None, **kwargs):
        items = self.assets_for_point(lon, lat, coord_crs=coord_crs, **(search_options or {}))
        return super().point(lon, lat, coord_crs=coord_crs, search_options=search_options,
                             **self._threads(items, kwargs))
