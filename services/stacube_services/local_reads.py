"""Local files read in the request's thread, remote ones in rio-tiler's thread pools.

rio-tiler reads the assets of an item (``RIO_TILER_MAX_THREADS``, 5 per core by default) and the
items of a mosaic (titiler-pgstac's ``MOSAIC_CONCURRENCY``, the same by default) in a new thread
pool per call, which pays where reads wait on the network (S3, HTTP). A local file's read takes a
few milliseconds: there the pools' new threads (each starting its own GDAL environment) and
their contention for the GIL cost more than they overlap. Measured on Landsat RGB mosaic tiles of
the New York sample (``benchmarks/tile_latency.py``, tile cache off, 2 cores): z7-8 tiles p50
450-490 ms -> 200-215 ms, z12-13 60 ms -> 31-33 ms with both levels in the request's thread.

* :class:`LocalReadsInThread` - a mixin for titiler-pgstac's item readers: an item whose every
  asset is a local file reads them one after the other (``threads=1``).
* :class:`LocalItemsInThread` - a mixin for titiler-pgstac's mosaic backend: a tile whose every
  item has only local assets reads the items one after the other, so the mosaic also stops at
  the first items that fill it (rio-tiler's ``mosaic_reader`` reads ``threads`` items at a time).
  Tiles only: a mosaic's ``bbox`` and ``feature`` crops keep ``MOSAIC_CONCURRENCY``.

A ``threads=`` given by the caller of a reader wins; hrefs are classified by their text
(:func:`stacube.access.prefixes.is_local`), before the read gate maps them.
"""

from __future__ import annotations

from stacube.access.prefixes import is_local


def local_item(item: dict) -> bool:
    """Whether every asset of ``item`` (a STAC Item dict) is a local file."""
    return all(is_local((a or {}).get("href")) for a in (item.get("assets") or {}).values())


def _in_thread_when_local(name: str):
    """The reader method ``name`` of rio-tiler's ``MultiBaseReader``, given ``threads=1`` when
    the item is local (and the caller gave no ``threads``)."""

    def method(self, *args, **kwargs):
        if "threads" not in kwargs and self.local():
            kwargs["threads"] = 1
        return getattr(super(LocalReadsInThread, self), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


class LocalReadsInThread:
    """A mixin for rio-tiler ``MultiBaseReader`` classes: when every asset of the item is a local
    file, its assets are read one after the other in the calling thread (``threads=1`` for
    rio-tiler's ``tasks.multi_*``). Subclasses give :meth:`local`."""

    def local(self) -> bool:
        """Whether every asset of the item read is a local file."""
        raise NotImplementedError

    info = _in_thread_when_local("info")
    statistics = _in_thread_when_local("statistics")
    tile = _in_thread_when_local("tile")
    part = _in_thread_when_local("part")
    preview = _in_thread_when_local("preview")
    point = _in_thread_when_local("point")
    feature = _in_thread_when_local("feature")


class LocalItemsInThread:
    """A mixin for rio-tiler mosaic backends (``BaseBackend``): a tile whose every item has only
    local assets is read item after item in the calling thread (``threads=1`` for rio-tiler's
    ``mosaic_reader``, in place of titiler-pgstac's ``MOSAIC_CONCURRENCY``). The tile's items
    are looked up once more to decide: the backend's own cache answers that lookup."""

    def tile(self, x: int, y: int, z: int, search_options: dict | None = None, **kwargs):
        items = self.assets_for_tile(x, y, z, **(search_options or {}))
        if items and all(local_item(i) for i in items):
            kwargs["threads"] = 1
        return super().tile(x, y, z, search_options=search_options, **kwargs)
