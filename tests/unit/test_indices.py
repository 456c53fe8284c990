"""Spectral index presets come from spyndex and resolve to STAC common names."""

import numpy as np
import pytest
import spyndex

from stacube.core.indices import PRESETS, get_index, required_bands
from stacube.errors import InvalidInput


@pytest.mark.parametrize("name", PRESETS)
def test_formulas_are_spyndex_formulas(name):
    idx = get_index(name)
    assert idx.formula == spyndex.indices[name].formula
    assert set(idx.bands) | set(idx.constants) == set(spyndex.indices[name].bands)


def test_ndvi_values():
    out = get_index("NDVI").compute({"nir": np.array([0.5, 0.3, 0.0]), "red": np.array([0.1, 0.3, 0.0])})
    assert out[0] == pytest.approx(0.4 / 0.6)
    assert out[1] == 0.0
    assert np.isnan(out[2])  # 0/0 is undefined, not an error


def test_evi_uses_spyndex_constants():
    idx = get_index("EVI")
    assert idx.constants == {"g": 2.5, "C1": 6.0, "C2": 7.5, "L": 1.0}
    nir, red, blue = 0.4, 0.1, 0.05
    expected = 2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1)
    got = idx.compute({"nir": np.array([nir]), "red": np.array([red]), "blue": np.array([blue])})
    assert got[0] == pytest.approx(expected, rel=1e-6)


def test_expression_for_titiler():
    idx = get_index("NBR")
    assert idx.expression(["nir", "swir22"]) == "(b1-b2)/(b1+b2)"
    assert idx.expression(["swir22", "nir"]) == "(b2-b1)/(b2+b1)"
    assert "2.5*" in get_index("EVI").expression(["nir", "red", "blue"])


def test_required_bands_and_unknown_index():
    assert required_bands(["NDVI", "NDWI"]) == ["nir", "red", "green"]
    with pytest.raises(InvalidInput, match="unknown index"):
        get_index("NOPE")
