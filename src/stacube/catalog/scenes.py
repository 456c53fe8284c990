"""What a scene's names and GeoTIFF tags say: acquisition time, platform, instruments, id, bands.

Scenes that stacube did not make arrive as folders of COGs named by their producers. This module
reads, without guessing beyond published naming conventions:

* **scene and product IDs** (:func:`find_scene_id`):

  - Landsat Collection 1/2 product IDs ``LXSS_LLLL_PPPRRR_YYYYMMDD_yyyymmdd_CC_TX``
    (``LC08_L1TP_013032_20180131_20180207_01_T1``; the first date is the acquisition), USGS
    LSDS-1619/LSDS-1656 naming;
  - Landsat scene IDs ``LXSPPPRRRYYYYDDDGSIVV`` (``LE70350322008118EDC00``: year and day of year);
  - Sentinel-2 product names ``MMM_MSIXXX_YYYYMMDDTHHMMSS_Nxxyy_ROOO_Txxxxx_<stamp>`` (ESA
    compact naming), Earth Search / ``sentinel-cogs`` ids ``S2A_33TVM_20150711_0_L2A``, and tile
    (granule) file names ``T33TVM_20150711T100008_B04``;

  L = Landsat, X = sensor (C OLI/TIRS, O OLI, T TM or TIRS, E ETM+, M MSS), S(S) = satellite.
  Each gives the acquisition date (and time when the name holds it), the platform
  (``landsat-7``, ``sentinel-2a``) and instruments (``["etm+"]``, ``["oli", "tirs"]``, ``["msi"]``);
* **ISO dates** in names: ``YYYY-MM-DD`` or ``YYYYMMDD``, optionally followed by ``THHMMSS``;
* **user patterns** (:class:`DatetimePattern`): a regular expression with named groups
  (``year``, ``month``, ``day``, ``doy``, ``hour``, ``minute``, ``second``) or strptime codes
  (``%Y %y %m %d %j %H %M %S``), searched in the names;
* **GeoTIFF tags** (:func:`tag_datetime`): GDAL's ``IMAGERY`` domain ``ACQUISITIONDATETIME``, then
  ``ACQUISITIONDATETIME``, ``ACQUISITION_DATETIME``, ``DATETIME``, ``DATE_ACQUIRED``
  (+ ``SCENE_CENTER_TIME``), ``SENSING_TIME`` and ``TIFFTAG_DATETIME`` (``YYYY:MM:DD HH:MM:SS``).

:func:`acquisition_time` applies them in a fixed order and, when none gives a time, raises
:class:`~stacube.errors.InvalidInput` naming the folder and everything tried. Band names of the
known sensors (:func:`mission_common_name`) and quality bands (:data:`QUALITY_PRESETS`) let a
product be described from the files alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from stacube.errors import InvalidInput

# -- scene and product IDs ----------------------------------------------------------------------
_LANDSAT_PRODUCT = re.compile(
    r"(?<![A-Za-z0-9])(L([CMOTE])(0[1-9])_(L1TP|L1GT|L1GS|L2SP|L2SR|L2SE|L1TS|L2)_(\d{3})(\d{3})_"
    r"(\d{8})_(\d{8})_(\d{2})_(T1|T2|RT|A1|A2))(?![A-Za-z0-9])", re.IGNORECASE)
_LANDSAT_SCENE = re.compile(
    r"(?<![A-Za-z0-9])(L([CMOTE])([1-9])(\d{3})(\d{3})(\d{4})(\d{3})([A-Z]{3})(\d{2}))(?![A-Za-z0-9])",
    re.IGNORECASE)
_S2_PRODUCT = re.compile(
    r"(?<![A-Za-z0-9])(S2([ABCD])_MSI(L1C|L2A)_(\d{8}T\d{6})_N\d{4}_R\d{3}_T(\d{2}[A-Z]{3})_\d{8}T\d{6})"
    r"(?:\.SAFE)?(?![A-Za-z0-9])", re.IGNORECASE)
_S2_EARTH_SEARCH = re.compile(
    r"(?<![A-Za-z0-9])(S2([ABCD])_(\d{2}[A-Z]{3})_(\d{8})_(\d+)_(L1C|L2A))(?![A-Za-z0-9])", re.IGNORECASE)
_S2_TILE = re.compile(r"(?<![A-Za-z0-9])(T(\d{2}[A-Z]{3})_(\d{8}T\d{6}))(?=_|$)", re.IGNORECASE)
_ISO_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)(-?)([01]\d)\2([0-3]\d)(?:T(\d\d)(\d\d)(\d\d))?(?!\d)")

#: Landsat sensor letter and satellite number -> instruments (STAC ``instruments``).
_LANDSAT_INSTRUMENTS = {"C": ["oli", "tirs"], "O": ["oli"], "E": ["etm+"], "M": ["mss"]}


@dataclass(frozen=True)
class SceneId:
    """A scene or product ID found in a name.

    Attributes:
        id: the ID as written (the item id of its scene).
        datetime: acquisition time (UTC; midnight when the ID holds only the date).
        platform: STAC ``platform`` (``landsat-8``, ``sentinel-2a``), None when the name does not say.
        instruments: STAC ``instruments``.
        sensor: band layout key for :func:`mission_common_name` (``oli-tirs``, ``etm+``, ``tm``,
            ``mss``, ``msi``).
        convention: which naming convention matched.
    """

    id: str
    datetime: datetime
    platform: str | None
    instruments: tuple[str, ...] = field(default=())
    sensor: str | None = None
    convention: str = ""


def _utc(year: int, month: int, day: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime | None:
    try:
        return datetime(year, month, day, hh, mm, ss, tzinfo=timezone.utc)
    except ValueError:
        return None


def _compact(text: str) -> datetime | None:
    """``YYYYMMDD`` or ``YYYYMMDDTHHMMSS``."""
    date, _, time = text.partition("T")
    hh, mm, ss = (int(time[0:2]), int(time[2:4]), int(time[4:6])) if time else (0, 0, 0)
    return _utc(int(date[0:4]), int(date[4:6]), int(date[6:8]), hh, mm, ss)


def _landsat(letter: str, number: int) -> tuple[str, tuple[str, ...], str]:
    letter = letter.upper()
    if letter == "T":  # TM on Landsat 4/5, TIRS-only products of Landsat 8/9
        instruments = ["tirs"] if number >= 8 else ["tm"]
    else:
        instruments = _LANDSAT_INSTRUMENTS[letter]
    sensor = {"C": "oli-tirs", "O": "oli-tirs", "E": "etm+", "M": "mss"}.get(letter)
    if letter == "T":
        sensor = "oli-tirs" if number >= 8 else "tm"
    return f"landsat-{number}", tuple(instruments), sensor


def find_scene_id(text: str) -> SceneId | None:
    """The first Landsat or Sentinel-2 scene/product ID in ``text`` (conventions in the module
    docstring), or None."""
    m = _LANDSAT_PRODUCT.search(text)
    if m:
        when = _compact(m.group(7))
        if when:
            platform, instruments, sensor = _landsat(m.group(2), int(m.group(3)))
            return SceneId(m.group(1), when, platform, instruments, sensor, "Landsat product ID")
    m = _LANDSAT_SCENE.search(text)
    if m:
        year, doy = int(m.group(6)), int(m.group(7))
        if 1 <= doy <= 366 and 1972 <= year <= 2100:
            when = datetime(year, 1, 1, tzinfo=timezone.utc) + timedelta(days=doy - 1)
            if when.year == year:
                platform, instruments, sensor = _landsat(m.group(2), int(m.group(3)))
                return SceneId(m.group(1), when, platform, instruments, sensor, "Landsat scene ID")
    m = _S2_PRODUCT.search(text)
    if m:
        when = _compact(m.group(4).upper())
        if when:
            return SceneId(m.group(1), when, f"sentinel-2{m.group(2).lower()}", ("msi",), "msi",
                           "Sentinel-2 product name")
    m = _S2_EARTH_SEARCH.search(text)
    if m:
        when = _compact(m.group(4))
        if when:
            return SceneId(m.group(1), when, f"sentinel-2{m.group(2).lower()}", ("msi",), "msi",
                           "Sentinel-2 (Earth Search) id")
    m = _S2_TILE.search(text)
    if m:
        when = _compact(m.group(3).upper())
        if when:
            return SceneId(m.group(1), when, None, ("msi",), "msi", "Sentinel-2 tile name")
    return None


def iso_date_in(text: str) -> datetime | None:
    """The first ``YYYY-MM-DD`` / ``YYYYMMDD`` date (optionally ``THHMMSS``) in ``text``, UTC."""
    for m in _ISO_DATE.finditer(text):
        y, _, mo, d, hh, mm, ss = m.groups()
        when = _utc(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        if when:
            return when
    return None


def asset_key(stem: str, scene_id: str | None) -> str:
    """The asset key of a file: its stem without the scene ID and the separators around it
    (``LC08_..._T1_B4`` -> ``B4``); the stem itself when nothing is left."""
    if scene_id:
        rest = re.sub(re.escape(scene_id), "", stem, count=1, flags=re.IGNORECASE).strip("_-. ")
        if rest:
            return rest
    return stem


# -- user patterns ------------------------------------------------------------------------------
_STRPTIME = {"%Y": r"(?P<year>\d{4})", "%y": r"(?P<year2>\d{2})", "%m": r"(?P<month>\d{1,2})",
             "%d": r"(?P<day>\d{1,2})", "%j": r"(?P<doy>\d{3})", "%H": r"(?P<hour>\d{2})",
             "%M": r"(?P<minute>\d{2})", "%S": r"(?P<second>\d{2})", "%%": "%"}
_CODE = re.compile(r"%.")


class DatetimePattern:
    """``--datetime-pattern``: a regular expression with named groups (``year`` or ``year2``,
    ``month`` and ``day`` or ``doy``; optional ``hour``, ``minute``, ``second``), or a strptime
    format (``%Y%m%d``, ``%Y_%j``...) searched anywhere in a name.

    Raises:
        InvalidInput: neither kind, an unknown strptime code, or no year/date groups.
    """

    def __init__(self, text: str):
        self.text = text
        if "(?P<" in text:
            source = text
        elif "%" in text:
            parts, pos = [], 0
            for m in _CODE.finditer(text):
                if m.group(0) not in _STRPTIME:
                    raise InvalidInput(f"--datetime-pattern {text!r}: unsupported code {m.group(0)} "
                                       f"(use {' '.join(k for k in _STRPTIME if k != '%%')})")
                parts.append(re.escape(text[pos:m.start()]))
                parts.append(_STRPTIME[m.group(0)])
                pos = m.end()
            parts.append(re.escape(text[pos:]))
            source = "".join(parts)
        else:
            raise InvalidInput(f"--datetime-pattern {text!r}: give a regular expression with named groups "
                               "(?P<year>..)(?P<month>..)(?P<day>..) or strptime codes such as %Y%m%d")
        try:
            self.regex = re.compile(source)
        except re.error as exc:
            raise InvalidInput(f"--datetime-pattern {text!r}: {exc}") from exc
        groups = set(self.regex.groupindex)
        if not groups & {"year", "year2"} or not ({"month", "day"} <= groups or "doy" in groups):
            raise InvalidInput(f"--datetime-pattern {text!r}: needs a year and month+day or day of year "
                               "(groups year, month, day or doy; codes %Y %m %d or %j)")

    def search(self, text: str) -> datetime | None:
        """The time the first match in ``text`` describes (UTC), or None."""
        for m in self.regex.finditer(text):
            g = {k: v for k, v in m.groupdict().items() if v is not None}
            try:
                year = int(g["year"]) if "year" in g else 2000 + int(g["year2"]) - (100 if int(g["year2"]) > 68 else 0)
                hh, mm, ss = int(g.get("hour", 0)), int(g.get("minute", 0)), int(g.get("second", 0))
                if "doy" in g:
                    when = datetime(year, 1, 1, hh, mm, ss, tzinfo=timezone.utc) + timedelta(days=int(g["doy"]) - 1)
                    if when.year != year:
                        continue
                else:
                    when = _utc(year, int(g["month"]), int(g["day"]), hh, mm, ss)
            except (KeyError, ValueError):
                continue
            if when:
                return when
        return None


# -- GeoTIFF tags -------------------------------------------------------------------------------
#: Tags read for the acquisition time, in order: (domain, name).
TIME_TAGS = (("IMAGERY", "ACQUISITIONDATETIME"), ("", "ACQUISITIONDATETIME"), ("", "ACQUISITION_DATETIME"),
             ("", "DATETIME"), ("", "DATE_ACQUIRED"), ("", "SENSING_TIME"), ("", "TIFFTAG_DATETIME"))
_TIFF_TIME = re.compile(r"^(\d{4})[:/-](\d{2})[:/-](\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2}))?")


def parse_tag_time(text: str) -> datetime | None:
    """A tag value as a UTC datetime: ISO 8601 / RFC 3339 or TIFF's ``YYYY:MM:DD HH:MM:SS``;
    None when it is neither."""
    text = str(text).strip()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except ValueError:
        pass
    m = _TIFF_TIME.match(text)
    if not m:
        return None
    y, mo, d, hh, mm, ss = (int(v) if v else 0 for v in m.groups())
    return _utc(y, mo, d, hh, mm, ss)


def tag_datetime(path: str | Path) -> tuple[datetime, str] | None:
    """The acquisition time written in a GeoTIFF's tags (:data:`TIME_TAGS`, first readable one)
    and the tag's name, or None.

    Raises:
        InvalidInput: the file cannot be opened as a raster.
    """
    import rasterio

    try:
        with rasterio.open(path) as src:
            tags = {"": src.tags(), "IMAGERY": src.tags(ns="IMAGERY")}
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidInput(f"{path}: not a readable raster ({exc})") from exc
    for domain, name in TIME_TAGS:
        value = tags[domain].get(name)
        if not value:
            continue
        if name == "DATE_ACQUIRED" and tags[""].get("SCENE_CENTER_TIME"):
            value = f"{value}T{tags[''].get('SCENE_CENTER_TIME').strip(chr(34)).rstrip('Z')[:8]}"
        when = parse_tag_time(value)
        if when:
            return when, name
    return None


# -- the acquisition time of a scene -------------------------------------------------------------
def acquisition_time(where: str | Path, names: list[str], files: list[Path], *,
                     pattern: DatetimePattern | None = None) -> tuple[datetime, str]:
    """The acquisition time of the scene in folder ``where``, and how it was found.

    Tried in order: ``pattern`` in ``names`` (an explicit ``--datetime-pattern`` beats any
    guess), the files' GeoTIFF tags, scene/product IDs in ``names``, ISO dates in ``names``.

    Args:
        where: the scene's folder (named in the error).
        names: names to read, most specific first (folder name, file stems, parent folders).
        files: the scene's GeoTIFFs.

    Returns:
        ``(UTC datetime, "how")`` e.g. ``(..., "Landsat scene ID LE70350322008118EDC00")``.

    Raises:
        InvalidInput: no rule gives a time (the message names ``where`` and what was tried); a
            file cannot be read.
    """
    if pattern is not None:
        for name in names:
            when = pattern.search(name)
            if when:
                return when, f"--datetime-pattern in {name!r}"
    for path in files:
        found = tag_datetime(path)
        if found:
            return found[0], f"GeoTIFF tag {found[1]} of {path.name}"
    for name in names:
        scene = find_scene_id(name)
        if scene:
            return scene.datetime, f"{scene.convention} {scene.id}"
    for name in names:
        when = iso_date_in(name)
        if when:
            return when, f"date in {name!r}"
    tried = [f"GeoTIFF tags ({', '.join(dict.fromkeys(n for _, n in TIME_TAGS))})",
             "Landsat and Sentinel-2 scene/product IDs and ISO dates (YYYY-MM-DD, YYYYMMDD) in "
             + ", ".join(repr(n) for n in dict.fromkeys(names))]
    if pattern is not None:
        tried.insert(0, f"--datetime-pattern {pattern.text!r}")
    raise InvalidInput(f"{where}: cannot tell when this scene was acquired; tried {'; '.join(tried)}. "
                       "Pass --datetime-pattern (e.g. '%Y%m%d') or --datetime")


# -- band names of known sensors ------------------------------------------------------------------
#: Band number -> STAC common name, per sensor (USGS Landsat band designations; ESA Sentinel-2 MSI).
SENSOR_BANDS: dict[str, dict[str, str]] = {
    "oli-tirs": {"1": "coastal", "2": "blue", "3": "green", "4": "red", "5": "nir08", "6": "swir16",
                 "7": "swir22", "8": "pan", "9": "cirrus", "10": "lwir11", "11": "lwir12"},
    "etm+": {"1": "blue", "2": "green", "3": "red", "4": "nir08", "5": "swir16", "6": "lwir",
             "61": "lwir", "62": "lwir", "7": "swir22", "8": "pan"},
    "tm": {"1": "blue", "2": "green", "3": "red", "4": "nir08", "5": "swir16", "6": "lwir", "7": "swir22"},
    "msi": {"1": "coastal", "2": "blue", "3": "green", "4": "red", "5": "rededge071", "6": "rededge075",
            "7": "rededge078", "8": "nir", "8A": "nir08", "9": "nir09", "10": "cirrus", "11": "swir16",
            "12": "swir22"},
}
#: Platform -> sensor of :data:`SENSOR_BANDS` (``--platform`` names the band layout too).
PLATFORM_SENSORS = {"landsat-4": "tm", "landsat-5": "tm", "landsat-7": "etm+", "landsat-8": "oli-tirs",
                    "landsat-9": "oli-tirs", "sentinel-2a": "msi", "sentinel-2b": "msi",
                    "sentinel-2c": "msi", "sentinel-2d": "msi"}
PLATFORM_INSTRUMENTS = {"landsat-4": ("tm",), "landsat-5": ("tm",), "landsat-7": ("etm+",),
                        "landsat-8": ("oli", "tirs"), "landsat-9": ("oli", "tirs")}
_BAND_KEY = re.compile(r"^(?:SR_|ST_|TOA_|TOAR_)?(?:B|BAND)0*(\d{1,2}A?)(?:_VCID_([12]))?$", re.IGNORECASE)
#: Quality band names of known products -> quality preset (:mod:`stacube.catalog.quality`).
QUALITY_PRESETS = {"BQA": "landsat-c1-bqa", "QA_PIXEL": "landsat-c2-qa-pixel", "SCL": "sentinel-2-scl",
                   "FMASK": "fmask"}


def mission_common_name(sensor: str | None, key: str) -> str | None:
    """The STAC common name of band ``key`` (``B4``, ``SR_B4``, ``B04``, ``band4``, ``B6_VCID_1``,
    ``B8A``) of ``sensor`` (a key of :data:`SENSOR_BANDS`), or None."""
    table = SENSOR_BANDS.get(sensor or "")
    m = _BAND_KEY.match(key)
    if not table or not m:
        return None
    number = m.group(1).upper()
    return table.get(number + (m.group(2) or "")) or table.get(number)


def quality_preset_of(key: str) -> str | None:
    """The quality preset of a known quality band name (``BQA``, ``QA_PIXEL``, ``SCL``, ``Fmask``)."""
    return QUALITY_PRESETS.get(key.upper())
