"""Run JSON-schema-fetching tools offline: schemas come from local copies, nothing leaves loopback.

STAC validators fetch JSON schemas by URL (``https://schemas.stacspec.org/...``,
``https://geojson.org/schema/...``, ``https://stac-extensions.github.io/...``) with ``requests``
and ``urllib``. :func:`install` answers those URLs from local files instead:

1. ``tests/conformance/schemas/<host>/<path>`` (vendored copies, if any);
2. the STAC core (v1.1.0) and GeoJSON schemas that pystac ships
   (``pystac.validation.local_validator.get_local_schema_cache``);
3. an extension schema (``stac-extensions.github.io``) found in neither is answered with a
   permissive schema (``{}``) and recorded as *stubbed*: the document's core and GeoJSON parts are
   still validated, its extension fields are not. So are the core schemas of STAC versions
   pystac does not ship (1.0.0: documents copied from a STAC 1.0 catalogue), whose documents
   are then checked by the tool's semantic checks only.

Any other connection to an address outside 127.0.0.0/8 / ::1 is refused (and recorded) at the
socket level, so a test cannot reach the network whatever library it goes through.
"""

from __future__ import annotations

import io
import ipaddress
import json
import socket
import urllib.request
from email.message import Message
from pathlib import Path
from urllib.parse import urlparse

SCHEMAS = Path(__file__).resolve().parent / "schemas"
EXTENSION_HOSTS = {"stac-extensions.github.io"}
SCHEMA_HOSTS = {"schemas.stacspec.org", "geojson.org", "json-schema.org", *EXTENSION_HOSTS}


class Record:
    """What the hook served, stubbed and refused (URLs, in order of first use)."""

    def __init__(self):
        self.served: dict[str, str] = {}
        self.stubbed: list[str] = []
        self.refused: list[str] = []

    def as_dict(self) -> dict:
        return {"served": self.served, "stubbed": self.stubbed, "refused": self.refused}


RECORD = Record()


def _pystac_schemas() -> dict[str, dict]:
    from pystac.validation.local_validator import get_local_schema_cache

    return get_local_schema_cache()


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SchemaSource:
    """Local answers for schema URLs."""

    def __init__(self, roots: list[Path] | None = None):
        self.roots = roots if roots is not None else [SCHEMAS]
        self.bundled = _pystac_schemas()

    def lookup(self, url: str) -> dict | None:
        """The schema document for ``url``, or None when the URL is not a known schema host."""
        clean = url.split("#", 1)[0]
        parsed = urlparse(clean)
        if parsed.hostname not in SCHEMA_HOSTS:
            return None
        for root in self.roots:
            path = root / parsed.hostname / parsed.path.lstrip("/")
            if path.is_file():
                RECORD.served.setdefault(clean, str(path))
                return json.loads(path.read_text())
        for candidate in (clean, clean.replace("http://", "https://", 1)):
            if candidate in self.bundled:
                RECORD.served.setdefault(clean, f"pystac:{candidate}")
                return self.bundled[candidate]
        if parsed.hostname in EXTENSION_HOSTS or (parsed.hostname == "schemas.stacspec.org"
                                                  and not parsed.path.startswith("/v1.1.")):
            if clean not in RECORD.stubbed:
                RECORD.stubbed.append(clean)
            return {"$schema": "http://json-schema.org/draft-07/schema#", "$id": clean}
        if parsed.hostname == "json-schema.org":  # meta-schemas: jsonschema ships them
            from jsonschema_specifications import REGISTRY

            try:
                RECORD.served.setdefault(clean, "jsonschema-specifications")
                return REGISTRY.contents(clean)
            except Exception:  # noqa: BLE001 - unknown meta-schema: refused below
                pass
        return None


def _refuse(url: str) -> None:
    if url not in RECORD.refused:
        RECORD.refused.append(url)


def _install_requests(source: SchemaSource) -> None:
    import requests
    from requests.adapters import BaseAdapter
    from requests.structures import CaseInsensitiveDict

    class LocalAdapter(BaseAdapter):
        def send(self, request, **kwargs):
            response = requests.Response()
            response.request = request
            response.url = request.url
            doc = source.lookup(request.url)
            if doc is None:
                _refuse(request.url)
                raise requests.ConnectionError(f"offline: {request.url} is not on loopback")
            response.status_code = 200
            response._content = json.dumps(doc).encode()
            response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
            response.encoding = "utf-8"
            return response

        def close(self):
            pass

    local = LocalAdapter()
    original = requests.Session.get_adapter

    def get_adapter(self, url):
        if _is_loopback_host(urlparse(url).hostname):
            return original(self, url)
        return local

    requests.Session.get_adapter = get_adapter


class _LocalHandler(urllib.request.BaseHandler):
    handler_order = 100  # before the HTTP(S) handlers

    def __init__(self, source: SchemaSource):
        self.source = source

    def default_open(self, req):
        url = req.full_url
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or _is_loopback_host(parsed.hostname):
            return None
        doc = self.source.lookup(url)
        if doc is None:
            _refuse(url)
            raise urllib.error.URLError(f"offline: {url} is not on loopback")
        headers = Message()
        headers["Content-Type"] = "application/json"
        return urllib.response.addinfourl(io.BytesIO(json.dumps(doc).encode()), headers, url, 200)


def _install_urllib(source: SchemaSource) -> None:
    import urllib.error  # noqa: F401
    import urllib.response  # noqa: F401

    handler = _LocalHandler(source)
    urllib.request.install_opener(urllib.request.build_opener(handler))
    original_build = urllib.request.build_opener

    def build_opener(*handlers):  # urlopen(..., context=...) builds its own opener
        return original_build(_LocalHandler(source), *handlers)

    urllib.request.build_opener = build_opener


def _install_socket_guard() -> None:
    original_connect = socket.socket.connect
    original_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback_host(address[0]):
            _refuse(f"socket://{address[0]}:{address[1]}")
            raise ConnectionRefusedError(f"offline: {address[0]} is not a loopback address")
        return original_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback_host(str(host)) and str(host) not in ("", "0.0.0.0"):
            _refuse(f"dns://{host}")
            raise socket.gaierror(socket.EAI_NONAME, f"offline: {host} is not resolved")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.getaddrinfo = getaddrinfo


def install(roots: list[Path] | None = None) -> Record:
    """Serve schema URLs locally and refuse every non-loopback connection (this process)."""
    source = SchemaSource(roots)
    _install_requests(source)
    _install_urllib(source)
    _install_socket_guard()
    return RECORD
