"""Quality (mask) rules: which mask values mean *clear* and which mean *no observation*.

A product declares one quality asset and a rule that decodes it. The rule is stored in the STAC
Collection under ``stacube:quality`` and mirrored, for other clients, in the classification
extension (``classification:classes`` / ``classification:bitfields``) of the mask asset in
``item_assets``. Three kinds share one model:

* **categorical** - the whole mask value is a class (Fmask, Sentinel-2 SCL);
* **binary** - a categorical mask with two classes (s2cloudless CLM 0 clear / 1 cloud);
* **bitfield** - bit ranges with flags or 2-bit confidences (Landsat Collection 1 ``BQA``,
  Collection 2 ``QA_PIXEL``).

A rule holds two lists of :class:`FieldCondition` (a bit range and the values it may take):

* ``fill``: a pixel is *no observation* if **any** fill condition holds, or if the mask value is
  the mask's nodata;
* ``clear``: an observed pixel is *clear* if **all** clear conditions hold.

Decoding uses bit arithmetic in the mask's own dtype when a rule has few conditions, and otherwise,
for 8- and 16-bit masks, a lookup table over every possible mask value (one gather per pixel). Sources of the presets: USGS Landsat 8 Collection 1
Level-1 QA band (LSDS-1656), Landsat 8-9 Collection 2 Level-2 Science Product Guide (LSDS-1619,
table 6-3), ESA Sentinel-2 L2A Product Specification (SCL classes), Fmask (Zhu & Woodcock 2012,
RSE 118: 0 land, 1 water, 2 shadow, 3 snow, 4 cloud, 255 fill), s2cloudless (Sentinel Hub).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stacube.errors import InvalidInput

QUALITY_KEY = "stacube:quality"


class FieldCondition(BaseModel):
    """``((value >> offset) & (2**length - 1)) in values``; ``length=None`` means the whole value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offset: int = Field(0, ge=0, le=63)
    length: int | None = Field(None, ge=1, le=64)
    values: tuple[int, ...] = Field(min_length=1)
    name: str | None = None

    def field_of(self, values: np.ndarray) -> np.ndarray:
        """The bit range of each value (integer array in, same integer dtype out)."""
        if self.length is None:
            return values
        if values.dtype.kind == "i":
            values = values.astype(np.int64, copy=False)
        dtype = values.dtype.type
        return (values >> dtype(self.offset)) & dtype((1 << self.length) - 1)

    def holds(self, values: np.ndarray) -> np.ndarray:
        """Boolean array: where the condition holds."""
        field = self.field_of(values)
        if len(self.values) <= 3:  # a few comparisons beat a set lookup
            out = field == self.values[0]
            for v in self.values[1:]:
                out |= field == v
            return out
        return np.isin(field, np.asarray(self.values))


class QualityClass(BaseModel):
    """A documented class (classification extension ``Class`` object)."""

    model_config = ConfigDict(extra="allow")

    value: int
    name: str
    description: str | None = None


class QualityBitfield(BaseModel):
    """A documented bit field (classification extension ``Bit Field`` object)."""

    model_config = ConfigDict(extra="allow")

    offset: int
    length: int
    name: str | None = None
    description: str | None = None
    classes: list[QualityClass] = Field(default_factory=list)


class QualityRule(BaseModel):
    """How a product's quality asset is decoded into *observed* and *clear* pixels."""

    model_config = ConfigDict(extra="forbid")

    asset: str = Field(description="Asset key (measurement name) of the quality band.")
    kind: Literal["categorical", "binary", "bitfield"]
    fill: list[FieldCondition] = Field(default_factory=list)
    clear: list[FieldCondition] = Field(min_length=1)
    nodata: int | None = Field(None, description="Mask nodata value: also no observation.")
    preset: str | None = Field(None, description="Name of the preset this rule came from.")
    classes: list[QualityClass] = Field(default_factory=list)
    bitfields: list[QualityBitfield] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> QualityRule:
        for cond in [*self.fill, *self.clear]:
            if self.kind != "bitfield" and cond.length is not None:
                raise ValueError(f"a {self.kind} rule compares whole values; drop offset/length")
            if self.kind == "bitfield" and cond.length is None:
                raise ValueError("a bitfield rule needs offset and length on every condition")
        return self

    # -- decoding ----------------------------------------------------------------------------
    def decode(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode a mask array.

        Args:
            mask: integer array of any shape (the quality asset's raw values).

        Returns:
            ``(observed, clear)``: boolean arrays of ``mask.shape``; ``clear`` implies ``observed``.
        """
        mask = np.asarray(mask)
        if mask.dtype.kind == "f":
            finite = np.isfinite(mask)
            ints = np.where(finite, mask, 0).astype(np.int64)
            observed, clear = self._decode_direct(ints)
            return observed & finite, clear & finite
        if mask.dtype.kind in "ui" and mask.dtype.itemsize <= 2 and not self._cheap():
            lut = _lookup_table(self.model_dump_json(), mask.dtype.str)
            offset = -int(np.iinfo(mask.dtype).min)
            index = mask.astype(np.int32) + offset if offset else mask
            codes = lut[index]
            return (codes & 1).astype(bool), (codes & 2).astype(bool)
        return self._decode_direct(mask)

    def _cheap(self) -> bool:
        """Few enough comparisons that bit arithmetic beats a lookup table gather."""
        conditions = [*self.fill, *self.clear]
        return sum(min(len(c.values), 4) for c in conditions) + len(conditions) <= 8

    def _decode_direct(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fill = np.zeros(mask.shape, dtype=bool)
        if self.nodata is not None:
            fill |= mask == self.nodata
        for cond in self.fill:
            fill |= cond.holds(mask)
        observed = ~fill
        clear = observed.copy()
        for cond in self.clear:
            clear &= cond.holds(mask)
        return observed, clear

    def clear_values(self, dtype: str = "uint16") -> list[int]:
        """Every mask value (of an 8/16-bit dtype) that decodes as clear."""
        lut = _lookup_table(self.model_dump_json(), np.dtype(dtype).str)
        offset = -int(np.iinfo(np.dtype(dtype)).min)
        return [int(i) - offset for i in np.flatnonzero(lut & 2)]

    # -- why a pixel is not clear ---------------------------------------------------------------
    def reason_names(self) -> list[str]:
        """Names of the not-clear statuses the mask distinguishes (code ``k`` of
        :meth:`reason_table` is ``reason_names()[k - 1]``): categorical and binary masks name their not-clear classes
        (Fmask ``cloud_shadow``, ``snow``, ``cloud``); bit-field masks name the clear condition
        that fails (``cloud``, ``cloud_shadow``: ``_confidence`` dropped); ``not_clear`` when
        the rule documents nothing."""
        if self.kind == "bitfield":
            return [_status_name(c.name) or f"bits_{c.offset}_{c.offset + (c.length or 1) - 1}"
                    for c in self.clear]
        fill = self.fill_values()
        clear = {v for c in self.clear for v in c.values}
        names = [_status_name(c.name) or f"value_{c.value}" for c in self.classes
                 if c.value not in fill and c.value not in clear]
        return list(dict.fromkeys(names)) or ["not_clear"]

    def reason_table(self, mask: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Why each pixel is not clear.

        Args:
            mask: integer array of the quality asset's raw values.

        Returns:
            ``(codes, names)``: uint8 codes of ``mask.shape`` (0: clear or not observed; ``k``:
            ``names[k - 1]``) and the names, :meth:`reason_names` plus ``not_clear`` when a
            not-clear value is documented by no class or condition.
        """
        mask = np.asarray(mask)
        observed, clear = self.decode(mask)
        todo = observed & ~clear
        codes = np.zeros(mask.shape, dtype=np.uint8)
        names = self.reason_names()
        if self.kind == "bitfield":
            for k, cond in reversed(list(enumerate(self.clear, start=1))):  # the first failing wins
                codes[todo & ~cond.holds(mask)] = k
            codes[todo & (codes == 0)] = _append(names, "not_clear")
            return codes, names
        by_value = {c.value: names.index(_status_name(c.name) or f"value_{c.value}") + 1
                    for c in self.classes if (_status_name(c.name) or f"value_{c.value}") in names}
        for value in np.unique(mask[todo]) if todo.any() else []:
            code = by_value.get(int(value)) or _append(names, "not_clear")
            codes[todo & (mask == value)] = code
        return codes, names

    # -- STAC --------------------------------------------------------------------------------
    def fill_values(self) -> set[int]:
        """Whole mask values that mean no observation (categorical rules and the nodata)."""
        values = {v for c in self.fill if c.length is None for v in c.values}
        if self.nodata is not None:
            values.add(self.nodata)
        return values

    def classification_fields(self) -> dict:
        """Classification-extension fields describing the mask asset, for ``item_assets``."""
        fill_values = self.fill_values()
        clear_values = {v for c in self.clear if c.length is None for v in c.values}
        if self.kind == "bitfield":
            return {
                "classification:bitfields": [
                    bf.model_dump(exclude_none=True) for bf in self.bitfields
                ]
            } if self.bitfields else {}
        classes = []
        for cls in self.classes:
            doc = cls.model_dump(exclude_none=True)
            if cls.value in fill_values:
                doc["nodata"] = True
            doc.setdefault("description", "clear" if cls.value in clear_values else doc.get("name"))
            classes.append(doc)
        return {"classification:classes": classes} if classes else {}

    def to_stac(self) -> dict:
        """The ``stacube:quality`` document stored in the collection."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def _status_name(name: str | None) -> str | None:
    """A condition or class name as a status: ``cloud_shadow_confidence`` -> ``cloud_shadow``."""
    if not name:
        return None
    name = re.sub(r"\W+", "_", name.strip().lower()).strip("_")
    return name.removesuffix("_confidence") or None


def _append(names: list[str], name: str) -> int:
    """The 1-based code of ``name`` in ``names``, appending it when missing."""
    if name not in names:
        names.append(name)
    return names.index(name) + 1


@lru_cache(maxsize=64)
def _lookup_table(rule_json: str, dtype_str: str) -> np.ndarray:
    """Bit 0: observed, bit 1: clear, for every value of an 8/16-bit integer dtype."""
    rule = QualityRule.model_validate_json(rule_json)
    dtype = np.dtype(dtype_str)
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1, dtype=np.int64)
    observed, clear = rule._decode_direct(values)
    return (observed.astype(np.uint8) | (clear.astype(np.uint8) << 1)).astype(np.uint8)


# -- presets ---------------------------------------------------------------------------------
def _bits(offset: int, length: int, values, name: str | None = None) -> FieldCondition:
    return FieldCondition(offset=offset, length=length, values=tuple(values), name=name)


def _whole(values, name: str | None = None) -> FieldCondition:
    return FieldCondition(values=tuple(values), name=name)


def _confidence(offset: int, name: str) -> QualityBitfield:
    return QualityBitfield(
        offset=offset, length=2, name=name,
        classes=[QualityClass(value=v, name=n) for v, n in
                 [(0, "not_determined"), (1, "low"), (2, "medium"), (3, "high")]],
    )


def _flag(offset: int, name: str) -> QualityBitfield:
    return QualityBitfield(
        offset=offset, length=1, name=name,
        classes=[QualityClass(value=0, name="no"), QualityClass(value=1, name="yes")],
    )


def _preset_rules(asset: str) -> dict[str, QualityRule]:
    return {
        "fmask": QualityRule(
            asset=asset, kind="categorical", preset="fmask",
            fill=[_whole([255], "fill")], clear=[_whole([0, 1], "land or water")], nodata=255,
            classes=[QualityClass(value=v, name=n) for v, n in
                     [(0, "land"), (1, "water"), (2, "cloud_shadow"), (3, "snow"), (4, "cloud"),
                      (255, "fill")]],
        ),
        "sentinel-2-scl": QualityRule(
            asset=asset, kind="categorical", preset="sentinel-2-scl",
            fill=[_whole([0], "no_data")],
            clear=[_whole([4, 5, 6, 7], "vegetation, not vegetated, water, unclassified")],
            nodata=0,
            classes=[QualityClass(value=v, name=n) for v, n in
                     [(0, "no_data"), (1, "saturated_or_defective"), (2, "dark_area_pixels"),
                      (3, "cloud_shadows"), (4, "vegetation"), (5, "not_vegetated"),
                      (6, "water"), (7, "unclassified"), (8, "cloud_medium_probability"),
                      (9, "cloud_high_probability"), (10, "thin_cirrus"), (11, "snow")]],
        ),
        "binary-cloud": QualityRule(
            asset=asset, kind="binary", preset="binary-cloud",
            fill=[_whole([255], "no_data")], clear=[_whole([0], "clear")], nodata=255,
            classes=[QualityClass(value=0, name="clear"), QualityClass(value=1, name="cloud"),
                     QualityClass(value=255, name="no_data")],
        ),
        "binary-valid": QualityRule(
            asset=asset, kind="binary", preset="binary-valid",
            fill=[_whole([255], "no_data")], clear=[_whole([1], "valid")], nodata=255,
            classes=[QualityClass(value=1, name="valid"), QualityClass(value=0, name="masked"),
                     QualityClass(value=255, name="no_data")],
        ),
        "landsat-c1-bqa": QualityRule(
            asset=asset, kind="bitfield", preset="landsat-c1-bqa",
            fill=[_bits(0, 1, [1], "designated_fill")],
            clear=[_bits(4, 1, [0], "cloud"), _bits(7, 2, [0, 1, 2], "cloud_shadow_confidence")],
            bitfields=[
                _flag(0, "designated_fill"), _flag(1, "terrain_occlusion"),
                QualityBitfield(offset=2, length=2, name="radiometric_saturation"),
                _flag(4, "cloud"), _confidence(5, "cloud_confidence"),
                _confidence(7, "cloud_shadow_confidence"), _confidence(9, "snow_ice_confidence"),
                _confidence(11, "cirrus_confidence"),
            ],
        ),
        "landsat-c2-qa-pixel": QualityRule(
            asset=asset, kind="bitfield", preset="landsat-c2-qa-pixel",
            fill=[_bits(0, 1, [1], "fill")],
            clear=[_bits(1, 1, [0], "dilated_cloud"), _bits(2, 1, [0], "cirrus"),
                   _bits(3, 1, [0], "cloud"), _bits(4, 1, [0], "cloud_shadow")],
            bitfields=[
                _flag(0, "fill"), _flag(1, "dilated_cloud"), _flag(2, "cirrus"), _flag(3, "cloud"),
                _flag(4, "cloud_shadow"), _flag(5, "snow"), _flag(6, "clear"), _flag(7, "water"),
                _confidence(8, "cloud_confidence"), _confidence(10, "cloud_shadow_confidence"),
                _confidence(12, "snow_ice_confidence"), _confidence(14, "cirrus_confidence"),
            ],
        ),
    }


PRESETS = tuple(_preset_rules("mask"))


def preset(name: str, asset: str) -> QualityRule:
    """A named rule (one of :data:`PRESETS`) bound to an asset key.

    Raises:
        InvalidInput: unknown preset name.
    """
    rules = _preset_rules(asset)
    if name not in rules:
        raise InvalidInput(f"unknown quality preset {name!r}; known: {', '.join(PRESETS)}")
    return rules[name]


def clear_values_rule(asset: str, clear: list[int], nodata: int | None) -> QualityRule:
    """A categorical rule from a list of clear values (``--mask-asset A --clear 0,1``)."""
    if not clear:
        raise InvalidInput("--clear needs at least one value")
    return QualityRule(
        asset=asset, kind="categorical", clear=[_whole(clear, "clear")], nodata=nodata,
        fill=[_whole([nodata], "no_data")] if nodata is not None else [],
    )


def parse_rule(doc: dict, *, where: str = "stacube:quality") -> QualityRule:
    """Validate a rule document (from a collection or a product file).

    A document may name a preset (``{"asset": "BQA", "preset": "landsat-c1-bqa"}``), optionally
    overriding fields, or spell the rule out.

    Raises:
        InvalidInput: with the first validation problem and where it is.
    """
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where}: expected a mapping, got {type(doc).__name__}")
    try:
        if doc.get("preset") and "clear" not in doc:
            if "asset" not in doc:
                raise InvalidInput(f"{where}: 'asset' is required")
            base = preset(doc["preset"], doc["asset"]).model_dump()
            base.update({k: v for k, v in doc.items() if k != "preset"})
            return QualityRule.model_validate(base)
        return QualityRule.model_validate(doc)
    except InvalidInput:
        raise
    except ValueError as exc:
        err = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
        loc = ".".join(str(p) for p in err.get("loc", ()))
        raise InvalidInput(f"{where}{'.' + loc if loc else ''}: {err['msg']}") from exc


def rule_of(collection: dict) -> QualityRule | None:
    """The quality rule stored in a STAC Collection document, or None."""
    doc = collection.get(QUALITY_KEY)
    if not doc:
        return None
    return parse_rule(doc, where=f"collection {collection.get('id')}: {QUALITY_KEY}")
