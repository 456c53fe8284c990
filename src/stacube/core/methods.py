"""Compositing method names: the one list every entry point (CLI, HTTP, cubes) accepts.

* selection: ``most-recent``, ``least-recent``, ``best-pixel`` (one observation per pixel, with
  ``provenance``), and ``max-ndvi``, ``medoid`` (chosen by a criterion over several bands);
* statistics: ``median``, ``mean``, ``geomedian`` and percentiles ``p0``..``p100``.

The algorithms and their sources are in :mod:`stacube.algo.composite` and
:mod:`stacube.algo.methods`.
"""

from __future__ import annotations

import re

from stacube.errors import InvalidInput

#: Methods that pick one observation per pixel, chosen by date or rank.
SELECTION = ("most-recent", "least-recent", "best-pixel")
#: Statistics over the clear observations computed from one sort (or sum) of each pixel's series.
STATISTICAL = ("median", "mean")
#: Methods that pick one observation per pixel by a criterion over several bands.
MULTIBAND_SELECTION = ("max-ndvi", "medoid")
#: Every named method (percentiles ``pNN`` come on top).
METHODS: tuple[str, ...] = (*SELECTION, *STATISTICAL, "geomedian", *MULTIBAND_SELECTION)
#: Methods whose outputs carry ``provenance`` (the day of year of the chosen observation).
SELECTION_METHODS: tuple[str, ...] = (*SELECTION, *MULTIBAND_SELECTION)
#: ``p0``..``p100``: the q-th percentile of the clear observations.
PERCENTILE = re.compile(r"^p(100|\d{1,2})$")


def percentile_of(method: str) -> float | None:
    """``"p25"`` -> 25.0; None when ``method`` is not a percentile."""
    match = PERCENTILE.match(str(method))
    return float(match.group(1)) if match else None


def check_method(value: str) -> str:
    """A method name as given, when it is one of :data:`METHODS` or a percentile.

    Raises:
        InvalidInput: unknown method.
    """
    if value in METHODS or percentile_of(value) is not None:
        return value
    raise InvalidInput(f"unknown method {value!r}; choose one of {', '.join(METHODS)} "
                       "or pNN (a percentile, e.g. p25)")


def output_variables(bands: list[str], indices: list[str], method: str) -> list[str]:
    """The variables a composite writes: bands, indices, ``provenance`` (selection methods),
    ``clear_count`` and ``valid_count``."""
    extra = ["provenance"] if method in SELECTION_METHODS else []
    return [*bands, *indices, *extra, "clear_count", "valid_count"]
