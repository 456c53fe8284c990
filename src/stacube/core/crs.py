"""Coordinate reference systems: user input checked, and written as ``EPSG:<code>`` when there
is one, else as WKT2 (the form STAC ``proj:code`` / ``proj:wkt2`` and ODC use)."""

from __future__ import annotations

from functools import lru_cache

from pyproj import CRS
from pyproj.exceptions import CRSError

from stacube.errors import InvalidInput


def crs_text(crs) -> str:
    """``EPSG:<code>`` when the CRS has one, else its WKT2.

    Args:
        crs: an ``odc.geo.CRS``, a ``pyproj.CRS``, or anything ``pyproj.CRS.from_user_input``
            reads (text, PROJJSON dict).
    """
    if isinstance(crs, (str, dict)):
        crs = _parsed(crs) if isinstance(crs, str) else CRS.from_user_input(crs)
    epsg = crs.to_epsg() if isinstance(crs, CRS) else crs.epsg
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def check_crs(value) -> str:
    """Normalise a CRS given as ``EPSG:32633``, ``32633``, WKT, PROJJSON or a PROJ string.

    Returns:
        :func:`crs_text` of it.

    Raises:
        InvalidInput: unknown CRS.
    """
    text = value if isinstance(value, dict) else str(value).strip()
    if isinstance(text, str) and text.isdigit():
        text = f"EPSG:{text}"
    try:
        crs = CRS.from_user_input(text)
    except CRSError as exc:
        raise InvalidInput(f"unknown CRS {value!r}") from exc
    return crs_text(crs)


@lru_cache(maxsize=256)
def _parsed(text: str) -> CRS:
    return CRS.from_user_input(text)


def same_crs(a, b) -> bool:
    """Whether two CRS (text or objects) are the same."""
    a = _parsed(a) if isinstance(a, str) else CRS.from_user_input(a)
    b = _parsed(b) if isinstance(b, str) else CRS.from_user_input(b)
    return a == b


def proj_fields(crs) -> dict:
    """The projection-extension fields of a CRS that stacube writes on items and assets.

    ``{"proj:code": "EPSG:n", "proj:epsg": n}`` when the CRS has an EPSG code: ``proj:code``
    is projection v2, ``proj:epsg`` the v1 field that stackstac and older clients read (both
    are kept so either kind of client finds the CRS); ``{"proj:code": None, "proj:wkt2": ...}``
    otherwise.

    Args:
        crs: as :func:`crs_text` takes it, or an EPSG code (int).
    """
    if isinstance(crs, int):
        return {"proj:code": f"EPSG:{crs}", "proj:epsg": crs}
    text = crs_text(crs)
    if text.startswith("EPSG:"):
        return {"proj:code": text, "proj:epsg": int(text[5:])}
    return {"proj:code": None, "proj:wkt2": text}
