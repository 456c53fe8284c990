"""The read gate: one check for every href a server-side component opens.

The raster API's readers and masked mosaics, compositing jobs (when they are planned), Zarr
cube fills, time series, the ingest function and previews all open assets through
:meth:`ReadGate.check`, which takes an href and the collection of its item and returns the
normalised href **to open** (the real path of a local file, symbolic links resolved), so what is
checked is exactly what is read. An href is readable when its normalised location lies

* under the server's prefixes (:class:`~stacube.access.prefixes.ReadPrefixes`: the defaults plus
  ``STACUBE_READ_PREFIXES``), or
* under a read prefix of its item's collection: the roots ``stacube dataset add`` registered
  it from, and the prefixes granted to the workspace that owns the collection
  (``stacube workspace set W --read-prefix ...``);

and never inside the catalog's own files (:func:`~stacube.access.prefixes.never_read`).
Anything else raises :class:`AssetNotAllowed` (403) naming the setting and the prefix that would
allow the href - worked out from the href's text, so the message never tells whether a file
exists.

The kernels (:mod:`stacube.algo`), the job engine and the cubes do not import this module: their
callers (the CLI, the HTTP services, the Lambda handlers) build a gate and pass it down - it is
a plain callable ``gate(href, collection) -> href`` and pickles, so process pools and Dask
workers get it with their arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stacube.access.errors import AssetNotAllowed
from stacube.access.prefixes import (
    Location,
    ReadPrefixes,
    is_log,
    locate,
    never_read,
    shown,
    suggested_prefix,
)
from stacube.db.connection import connect

#: ``(collection, prefix)`` rows: the collections' registered roots, and the prefixes of the
#: workspace that owns each collection.
GATE_SQL = ("SELECT collection, prefix FROM stacube.collection_prefixes UNION "
            "SELECT a.collection, w.prefix FROM stacube.workspace_prefixes w "
            "JOIN stacube.collection_access a ON a.workspace = w.workspace")


def _under(loc: Location, places: Iterable[Location]) -> bool:
    for place in places:
        if loc.kind == place.kind and loc.host == place.host:
            base = place.path.rstrip("/")
            if not base or loc.path == base or loc.path.startswith(base + "/"):
                return True
    return False


@dataclass(frozen=True)
class ReadGate:
    """The server's prefixes, the collections' own, and the places never read.

    Args:
        prefixes: the server-wide prefixes.
        collections: ``{collection id: its read prefixes}``.
        denied: locations never read (the catalog's own files).
        data_dir: the real path of the data directory (its ``*.log`` files are never read).
    """

    prefixes: ReadPrefixes
    collections: Mapping[str, ReadPrefixes] = field(default_factory=dict)
    denied: tuple[Location, ...] = ()
    data_dir: str | None = None

    @classmethod
    def from_settings(cls, settings, rows: Iterable[tuple] = ()) -> ReadGate:
        """The server-wide gate of ``settings``; ``rows`` are ``(collection, prefix)`` pairs."""
        return cls.from_rows(settings, rows)

    @classmethod
    def from_rows(cls, settings, rows: Iterable[tuple]) -> ReadGate:
        by_collection: dict[str, list[str]] = {}
        for row in rows:
            collection, prefix = (row["collection"], row["prefix"]) if isinstance(row, Mapping) else row
            by_collection.setdefault(collection, []).append(prefix)
        collections = {}
        for cid, prefixes in by_collection.items():
            try:
                collections[cid] = ReadPrefixes(prefixes)
            except Exception:  # a malformed stored prefix grants nothing
                continue
        return cls(ReadPrefixes.from_settings(settings), collections, tuple(never_read(settings)),
                   str(settings.data_dir))

    @classmethod
    def load(cls, settings) -> ReadGate:
        """The gate with the catalog's collection and workspace prefixes.

        Raises:
            DatabaseUnavailable: the catalog cannot be read.
        """
        with connect(settings, autocommit=True) as conn:
            rows = conn.execute(GATE_SQL).fetchall()
        return cls.from_rows(settings, rows)

    def never_reads(self, loc: Location) -> bool:
        """Whether ``loc`` is one of the catalog's own files (never read, whatever the prefixes)."""
        if _under(loc, self.denied):
            return True
        return self.data_dir is not None and is_log(loc, self.data_dir)

    def allows(self, href: str, collection: str | None = None) -> bool:
        """Whether ``href`` (an asset of an item of ``collection``) may be read."""
        return self._open_location(href, collection) is not None

    def _open_location(self, href, collection) -> Location | None:
        loc = locate(href)
        if loc is None or self.never_reads(loc):
            return None
        if self.prefixes.covers(loc):
            return loc
        own = self.collections.get(collection) if collection is not None else None
        if own is not None and own.covers(loc):
            return loc
        return None

    def check(self, href: str, collection: str | None = None) -> str:
        """The href to open for ``href``: the real path for a local file, else ``href``.

        Raises:
            AssetNotAllowed: not under an allowed prefix (the message names the setting and the
                prefix that would allow it).
        """
        loc = self._open_location(href, collection)
        if loc is None:
            raise AssetNotAllowed(self.refusal(href))
        return loc.path if loc.kind == "local" else href

    __call__ = check

    def refusal(self, href) -> str:
        """Why ``href`` is refused, in one line."""
        loc = locate(href)
        if loc is not None and self.never_reads(loc):
            return (f"asset href {shown(href)} is not under an allowed prefix (the catalog's own "
                    "database files and logs are never read)")
        prefix = suggested_prefix(href) if loc is not None else None
        if prefix is None:
            return (f"asset href {shown(href)} is not under an allowed prefix (hrefs of this kind are "
                    "never read)")
        return (f"asset href {shown(href)} is not under an allowed prefix: add {prefix!r} to "
                "STACUBE_READ_PREFIXES to allow it")
