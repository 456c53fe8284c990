"""``Range`` requests of the file routes (item assets, ``/files``): the JSON answer to a range
that is not served.

Starlette's ``FileResponse`` serves ranges (``206``, ``multipart/byteranges`` for several,
overlapping ones merged, the whole file for more than ``FileResponse.max_ranges``) but answers
the ranges it refuses in plain text, and its parser is lenient (``+1``, ``1_0``, non-ASCII
digits, ``--5`` parse as numbers; a part it cannot read is skipped). :func:`range_refusal`
checks the header first, strictly (RFC 9110 section 14.1: ``bytes=first-last``, ``bytes=first-``,
``bytes=-suffix``, comma-separated, ASCII digits), then with ``FileResponse``'s own parser, so
what is refused and what is served agree:

* malformed (syntax, another unit, a range that ends before it starts, a position of more than
  :data:`MAX_DIGITS` digits): 400 ``InvalidParameter``;
* unsatisfiable (a range starting at or past the end of the file, ``bytes=-0``): 416
  ``RangeNotSatisfiable`` with ``Content-Range: bytes */<size>``.

Both are the services' JSON error (``{"code", "description"}``), the description starting
with ``Range:``.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.responses import FileResponse, JSONResponse, MalformedRangeHeader, RangeNotSatisfiable

from stacube_services.errors import error_response

#: Digits of a position at most (10^100 bytes is past the end of any file; longer numbers are
#: refused rather than parsed).
MAX_DIGITS = 100
_SPEC = re.compile(r"(?:(?P<first>[0-9]+)-(?P<last>[0-9]*)|-(?P<suffix>[0-9]+))")
_SEPARATOR = re.compile(r"[ \t]*,[ \t]*")
_SYNTAX = ("Range: malformed header {header!r}: expected bytes=first-last, bytes=first- or bytes=-suffix "
           "(decimal byte positions, several separated by commas)")


def _malformed(header: str) -> str | None:
    """Why ``header`` is not a well-formed ``bytes`` range set, or None."""
    unit, sep, ranges = header.strip().partition("=")
    if not sep or not unit or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", unit):
        return _SYNTAX.format(header=header[:100])
    if unit.lower() != "bytes":
        return f"Range: only bytes ranges are served, not {unit[:50]!r}"
    specs = [s for s in _SEPARATOR.split(ranges) if s]  # empty elements of a list are ignored
    if not specs:
        return _SYNTAX.format(header=header[:100])
    for spec in specs:
        match = _SPEC.fullmatch(spec)
        if match is None:
            return _SYNTAX.format(header=header[:100])
        if any(len(n) > MAX_DIGITS for n in match.groups() if n):
            return f"Range: a position has more than {MAX_DIGITS} digits"
        if match["last"] and int(match["first"]) > int(match["last"]):
            return f"Range: {spec[:100]!r} ends before it starts"
    return None


def range_refusal(header: str | None, size: int) -> JSONResponse | None:
    """The JSON answer to a ``Range`` header that is not served for a file of ``size`` bytes
    (400 malformed, 416 unsatisfiable with ``Content-Range: bytes */<size>``), or None (no
    header, or ranges ``FileResponse`` serves)."""
    if not header:
        return None
    reason = _malformed(header)
    if reason is not None:
        return error_response(400, "InvalidParameter", reason)
    try:
        FileResponse._parse_range_header(header, size)
    except MalformedRangeHeader as exc:  # checked above; kept in case the parser is stricter
        return error_response(400, "InvalidParameter", f"Range: {exc.content}")
    except RangeNotSatisfiable:
        response = error_response(416, "RangeNotSatisfiable", f"Range: {header[:100]!r} is not within the "
                                  f"file's {size} bytes")
        response.headers["Content-Range"] = f"bytes */{size}"
        return response
    return None


def file_range_refusal(scope, response: FileResponse, size: int) -> JSONResponse | None:
    """:func:`range_refusal` for a ``FileResponse`` about to answer the request of ``scope``,
    when that response would apply the ``Range`` header (a 200 answer to a GET or HEAD whose
    ``If-Range``, if any, still matches the file); else None (the whole file is served)."""
    headers = Headers(scope=scope)
    header = headers.get("range")
    if not header or response.status_code != 200 or scope.get("method", "GET").upper() not in ("GET", "HEAD"):
        return None
    if_range = headers.get("if-range")
    if if_range is not None and not response._should_use_range(if_range):
        return None
    return range_refusal(header, size)
