"""Spectral index presets, with formulas from spyndex (Awesome Spectral Indices).

The presets NDVI, NDWI, NDBI, EVI and NBR are usable by name in tile requests and jobs. Each
formula comes from ``spyndex.indices[name].formula`` (Montero et al. 2023, *A standardized
catalogue of spectral indices to advance the use of remote sensing in Earth system research*,
Scientific Data 10, 197); spyndex band symbols are mapped to STAC common names through
``spyndex.bands[symbol].common_name`` and constants take ``spyndex.constants[c].default``.
Inputs are surface (or top-of-atmosphere) reflectance, unitless, after scale and offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from stacube.errors import InvalidInput

PRESETS = ("NDVI", "NDWI", "NDBI", "EVI", "NBR")
#: Colormap and rescale range a tile of each index is rendered with by default.
RENDER = {
    "NDVI": ("rdylgn", (-0.2, 0.9)),
    "NDWI": ("rdbu", (-0.8, 0.8)),
    "NDBI": ("rdbu_r", (-0.6, 0.6)),
    "EVI": ("rdylgn", (-0.2, 0.9)),
    "NBR": ("rdylgn", (-0.8, 0.8)),
}


@dataclass(frozen=True)
class SpectralIndex:
    """An index formula resolved to STAC common names.

    Attributes:
        name: index short name (``NDVI``).
        long_name: spyndex long name.
        formula: spyndex formula with its own symbols (``(N-R)/(N+R)``).
        bands: ``{spyndex symbol: STAC common name}`` of the inputs, in formula order.
        constants: ``{symbol: default value}``.
        reference: DOI or URL of the index's source.
    """

    name: str
    long_name: str
    formula: str
    bands: dict[str, str]
    constants: dict[str, float]
    reference: str

    def compute(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Evaluate on float arrays keyed by common name; returns float32 (NaN where undefined)."""
        import spyndex

        params = {sym: arrays[common] for sym, common in self.bands.items()}
        params.update(self.constants)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = spyndex.computeIndex(self.name, params=params)
        out = np.asarray(out, dtype=np.float32)
        out[~np.isfinite(out)] = np.nan
        return out

    def expression(self, band_order: list[str]) -> str:
        """The formula for a rio-tiler expression over bands ``b1..bn``.

        Args:
            band_order: common names in the order the bands are read (``b1`` is the first).
        """
        symbols = sorted([*self.bands, *self.constants], key=len, reverse=True)
        pattern = re.compile(r"\b(" + "|".join(re.escape(s) for s in symbols) + r")\b")

        def repl(match: re.Match) -> str:
            sym = match.group(1)
            if sym in self.constants:
                return repr(float(self.constants[sym]))
            return f"b{band_order.index(self.bands[sym]) + 1}"

        return pattern.sub(repl, self.formula.replace(" ", ""))


@lru_cache(maxsize=None)
def get_index(name: str) -> SpectralIndex:
    """Resolve an index by name (case-insensitive): a preset or any spyndex index whose inputs
    are all reflectance bands with a STAC common name.

    Raises:
        InvalidInput: unknown index, or one needing inputs other than bands and constants.
    """
    import spyndex

    key = next((k for k in spyndex.indices if k.lower() == str(name).lower()), None)
    if key is None:
        raise InvalidInput(f"unknown index {name!r}; presets: {', '.join(PRESETS)}")
    idx = spyndex.indices[key]
    bands: dict[str, str] = {}
    constants: dict[str, float] = {}
    for sym in idx.bands:
        if sym in spyndex.bands and spyndex.bands[sym].common_name:
            bands[sym] = spyndex.bands[sym].common_name
        elif sym in spyndex.constants and spyndex.constants[sym].default is not None:
            constants[sym] = float(spyndex.constants[sym].default)
        else:
            raise InvalidInput(f"index {key} needs input {sym!r}, which is not a band")
    return SpectralIndex(key, idx.long_name, idx.formula, bands, constants, idx.reference)


def required_bands(names: list[str]) -> list[str]:
    """Common names the given indices read, in first-use order."""
    out: list[str] = []
    for name in names:
        for common in get_index(name).bands.values():
            if common not in out:
                out.append(common)
    return out
