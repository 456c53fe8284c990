"""The storage prefixes a server may read: no ``file:///etc/passwd``, no arbitrary host.

Asset hrefs come from the catalog, and through it from whoever registered the items. The raster
API (and the other server-side readers) open an href only when it lies under one of the
configured prefixes (``STACUBE_READ_PREFIXES``, a comma-separated list):

* a local directory (``/srv/scenes``, ``file:///srv/scenes``): the href's real path (symbolic
  links resolved, ``..`` collapsed) must be that directory or below it;
* ``s3://bucket`` or ``s3://bucket/prefix``: ``s3://`` and ``/vsis3/`` hrefs in that bucket, below
  that key prefix;
* ``https://host[:port]/prefix`` (or ``http://``): URLs of that scheme, host and port whose path
  is below the prefix (``/vsicurl/`` hrefs too); URLs with user information are refused.

Everything else is refused: other schemes and GDAL paths (``/vsizip/``, ``/vsigs/``,
``NETCDF:...``, ``vrt://...``), relative paths, hrefs with ``..`` segments in a URL path or key,
control characters. The defaults - the output root, the repository's ``data/`` directory and the
sample data next to it, and the data bucket (``STACUBE_DATA_BUCKET``) - always apply;
``STACUBE_READ_PREFIXES`` adds to them. The catalog's own files (the embedded database cluster
``<data dir>/pg``, job logs ``<data dir>/jobs``, logs in the data directory) are never read,
whatever the prefixes say (:func:`never_read`).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from stacube.errors import InvalidInput

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Location:
    """A normalised storage address: ``kind`` is ``local``, ``s3`` or ``http``/``https``;
    ``host`` is the bucket or ``host:port``; ``path`` the absolute path or key."""

    kind: str
    host: str
    path: str


def _segments_escape(path: str) -> bool:
    return any(part == ".." for part in unquote(path).replace("\\", "/").split("/"))


def _http_location(url: str) -> Location | None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    if "@" in parts.netloc or "\\" in url:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    path = parts.path or "/"
    if _segments_escape(path):
        return None
    return Location(scheme, f"{parts.hostname.lower()}:{port}", posixpath.normpath(unquote(path)))


def _s3_location(bucket: str, key: str) -> Location | None:
    if not bucket or "/" in bucket or _segments_escape(key):
        return None
    return Location("s3", bucket, "/" + key.lstrip("/"))


def locate(href: str) -> Location | None:
    """The normalised location of an href, or None when it is of a kind never read."""
    if not isinstance(href, str) or not href or href != href.strip() or _CONTROL.search(href):
        return None
    if href.startswith("/vsis3/"):
        bucket, _, key = href[len("/vsis3/"):].partition("/")
        return _s3_location(bucket, key)
    if href.startswith("/vsicurl/"):
        return _http_location(href[len("/vsicurl/"):])
    if href.startswith("/vsi"):
        return None
    match = _SCHEME.match(href)
    if match:
        scheme = match.group(1).lower()
        if scheme == "s3":
            parts = urlsplit(href)
            return _s3_location(parts.netloc, parts.path)
        if scheme in _DEFAULT_PORTS:
            return _http_location(href)
        if scheme == "file":
            parts = urlsplit(href)
            if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
                return None
            href = unquote(parts.path)
        else:
            return None
    if not href.startswith("/"):
        return None
    return Location("local", "", os.path.realpath(href))


def _prefix_location(text: str) -> Location:
    text = text.strip()
    if _SCHEME.match(text) and not text.lower().startswith("file:"):
        loc = locate(text.rstrip("/") or text)
        if loc is None:
            raise InvalidInput(f"STACUBE_READ_PREFIXES: {text!r} is not a directory, s3://bucket/prefix "
                               "or http(s)://host/prefix")
        return loc
    if text.lower().startswith("file:"):
        text = unquote(urlsplit(text).path)
    return Location("local", "", os.path.realpath(os.path.abspath(text)))


def _under(loc: Location, prefix: Location) -> bool:
    if loc.kind != prefix.kind or loc.host != prefix.host:
        return False
    base = prefix.path.rstrip("/")
    return not base or loc.path == base or loc.path.startswith(base + "/")


class ReadPrefixes:
    """The allowed prefixes; :meth:`check` before opening any href.

    Args:
        prefixes: directories and URIs (see the module docstring).

    Raises:
        InvalidInput: a prefix that is none of the accepted forms.
    """

    def __init__(self, prefixes: list[str]):
        self.prefixes = [p for p in (s.strip() for s in prefixes) if p]
        self.locations = [_prefix_location(p) for p in self.prefixes]

    @classmethod
    def from_settings(cls, settings) -> ReadPrefixes:
        """The defaults of the module docstring plus ``settings.read_prefixes``."""
        extra = (settings.read_prefixes or "").split(",")
        return cls(list(dict.fromkeys([*default_prefixes(settings), *(p.strip() for p in extra if p.strip())])))

    def allows(self, href: str) -> bool:
        """True when ``href`` lies under one of the prefixes."""
        loc = locate(href)
        return loc is not None and any(_under(loc, p) for p in self.locations)

    def covers(self, loc: Location) -> bool:
        """True when the normalised location lies under one of the prefixes."""
        return any(_under(loc, p) for p in self.locations)


def shown(href) -> str:
    """An href as messages quote it (at most 200 characters)."""
    return repr(href if isinstance(href, str) and len(href) <= 200 else f"{str(href)[:200]}...")


def suggested_prefix(href: str) -> str | None:
    """The prefix that would allow ``href``, worked out from the text alone (no file is looked
    at, so the answer says nothing about what exists): its folder, bucket or host; None for an
    href of a kind never read."""
    if not isinstance(href, str) or href != href.strip() or _CONTROL.search(href):
        return None
    if href.startswith("/vsis3/"):
        bucket = href[len("/vsis3/"):].partition("/")[0]
        return f"s3://{bucket}" if bucket else None
    if href.startswith("/vsicurl/"):
        href = href[len("/vsicurl/"):]
    elif href.startswith("/vsi"):
        return None
    match = _SCHEME.match(href)
    scheme = match.group(1).lower() if match else ""
    if scheme == "s3":
        bucket = urlsplit(href).netloc
        return f"s3://{bucket}" if bucket else None
    if scheme in _DEFAULT_PORTS:
        loc = _http_location(href)
        return f"{scheme}://{urlsplit(href).netloc.lower()}" if loc else None
    if scheme == "file":
        href = unquote(urlsplit(href).path)
    elif scheme:
        return None
    if not href.startswith("/") or _segments_escape(href):
        return None
    return posixpath.dirname(posixpath.normpath(href)) or "/"


def never_read(settings) -> list[Location]:
    """Local places no server reads whatever the prefixes say: the embedded database cluster
    (``<data dir>/pg``, and where its symbolic link points), the job logs (``<data dir>/jobs``)."""
    data_dir = Path(settings.data_dir).absolute()
    places = {str(data_dir / "pg"), os.path.realpath(data_dir / "pg"), str(data_dir / "jobs"),
              os.path.realpath(data_dir / "jobs")}
    return [Location("local", "", os.path.realpath(p)) for p in sorted(places)]


def is_log(loc: Location, data_dir) -> bool:
    """A ``*.log`` file directly in the data directory (``stacube up``'s log)."""
    return (loc.kind == "local" and loc.path.endswith(".log")
            and posixpath.dirname(loc.path) == os.path.realpath(Path(data_dir).absolute()))


def default_prefixes(settings) -> list[str]:
    """The output root, the repository's ``data/`` and the sample data beside it (when they
    exist), and ``s3://$STACUBE_DATA_BUCKET``."""
    out = [settings.output_root]
    repo = Path(__file__).resolve().parents[3]
    for candidate in (repo / "data", repo.parent / "shared" / "data"):
        if candidate.is_dir():
            out.append(str(candidate))
    if settings.data_bucket:
        out.append(f"s3://{settings.data_bucket}")
    return out


def is_local(href) -> bool:
    """Whether ``href`` is a path of the server's file system (absolute, or ``file:``), from its
    text alone (nothing is opened): the hrefs the asset route serves and the raster API reads in
    the request's thread. GDAL ``/vsi...`` paths are not."""
    if not isinstance(href, str):
        return False
    if href[:5].lower() == "file:":
        return True
    return href.startswith("/") and not href.startswith("/vsi")


def local_path(href: str) -> str | None:
    """The absolute path an href names as written (``..`` collapsed, no link resolved), or None
    when it is not a local path."""
    if not isinstance(href, str) or _SCHEME.match(href) and not href.lower().startswith("file:"):
        return None
    if href.lower().startswith("file:"):
        href = unquote(urlsplit(href).path)
    return posixpath.normpath(href) if href.startswith("/") else None


def _folder_roots(path) -> list[str]:
    """The real folders a registered path covers: itself (its folder, for a file) and the real
    folders of the symbolic links to folders below it."""
    path = Path(path).absolute()
    folder = path if path.is_dir() else path.parent
    roots = [os.path.realpath(folder)]
    if path.is_dir():
        from stacube.catalog.ingest import walk_folders  # lazy: numpy and pyproj, not for the HTTP apps

        for top, _ in walk_folders(folder):
            real = os.path.realpath(top)
            if not any(_inside(real, r) for r in roots):
                roots.append(real)
    return roots


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def registered_roots(paths, items) -> dict[str, list[str]]:
    """The read prefixes ``stacube dataset add`` records for what it registered:
    ``{collection: [real path of a folder, ...]}``.

    A registered folder covers itself and, through symbolic links to folders below it, their
    real folders; a local asset href whose real path lies in one of them makes that folder a
    root of the item's collection. Hrefs outside every registered folder make none (they need
    ``STACUBE_READ_PREFIXES``).
    """
    roots = [r for path in paths for r in _folder_roots(path)]
    out: dict[str, set[str]] = {}
    for item in items:
        for asset in (item.get("assets") or {}).values():
            given = local_path(asset.get("href") if isinstance(asset, dict) else None)
            if given is None or not item.get("collection"):
                continue
            real = os.path.realpath(given)
            root = next((r for r in roots if _inside(real, r)), None)
            if root is not None:
                out.setdefault(item["collection"], set()).add(root)
    return {c: sorted(r) for c, r in out.items()}
