"""One tile of a user process: the tile's masked stack as an ``xarray.Dataset`` in, arrays out.

A *process* is a Python function ``execute(cube, **parameters)``. Per tile (and per output
period) it gets ``cube``, an ``xarray.Dataset`` built from the tile's :class:`~stacube.algo.load.Stack`
(:func:`stack_dataset`):

* one ``(time, y, x)`` float32 variable per band: physical values (``DN * scale + offset``),
  NaN where the pixel is not clear;
* ``clear`` and ``valid`` (bool, ``(time, y, x)``): clear by the collection's quality rule,
  and observed at all (not fill, not nodata);
* coordinates ``time`` (datetime64), ``item_id`` and ``collection`` (per time step), ``y``/``x``
  pixel centres in the output CRS and ``spatial_ref`` (so ``cube.odc.geobox`` and
  ``cube.rio.crs`` work).

With a halo of ``N`` pixels the cube covers the tile plus ``N`` pixels on every side (read from
the neighbouring area, as mapchete's metatiles), so focal operations are exact at tile edges;
the result is cropped back to the tile. ``execute`` returns an ``xarray.Dataset`` or a
``dict`` of ``(y, x)`` arrays on the cube's grid (a leading axis of length 1 is dropped), or
None for a tile with nothing to write (its outputs stay nodata).

Errors in the user's code do not escape as themselves: :func:`run_execute` turns them into
:class:`ProcessFailed`, which carries the one-line error and the traceback, so the caller can
record them per tile and go on with other tiles.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stacube.algo.load import Stack
from stacube.algo.tile import CompositeInputs, TileStats, clean_stack, load_tile, stack_stats
from stacube.errors import InvalidInput, StacubeError

if TYPE_CHECKING:
    import xarray as xr
    from odc.geo.geobox import GeoBox

#: Characters of a traceback kept (its end) in a tile's result and the report.
MAX_TRACEBACK = 8000
#: ``execute(cube, **parameters)`` of a process.
Execute = Callable[..., Any]


class ProcessFailed(StacubeError):
    """The process's own code raised, or returned something that is not an output.

    Attributes:
        message: ``<ExceptionType>: <first line>``.
        traceback: the formatted traceback of the user's code ('' for a bad result).
    """

    def __init__(self, message: str, tb: str = ""):
        super().__init__(message)
        self.traceback = tb


@dataclass(frozen=True)
class Output:
    """One declared output: its dtype and nodata (NaN for floats when not given)."""

    dtype: str = "float32"
    nodata: float | int | None = None

    @property
    def fill(self):
        if self.nodata is not None:
            return np.dtype(self.dtype).type(self.nodata).item()
        return np.nan if np.dtype(self.dtype).kind == "f" else None


def stack_dataset(stack: Stack, geobox: GeoBox) -> xr.Dataset:
    """The process's ``cube``: ``stack`` on ``geobox`` as an ``xarray.Dataset`` (see the module
    docstring for its variables and coordinates)."""
    import xarray as xr  # lazy: only process jobs build Datasets (start-up of composite jobs)
    from odc.geo.xr import xr_coords

    coords = dict(xr_coords(geobox, crs_coord_name="spatial_ref", always_yx=True))
    coords["time"] = ("time", np.asarray(stack.times).astype("datetime64[ns]"))
    coords["item_id"] = ("time", list(stack.item_ids))
    coords["collection"] = ("time", list(stack.collections))
    dims = ("time", "y", "x")
    data = {name: (dims, np.where(stack.clear, values, np.float32(np.nan)).astype("float32", copy=False),
                   {"units": "1", "grid_mapping": "spatial_ref"})
            for name, values in stack.bands.items()}
    data["clear"] = (dims, stack.clear, {"long_name": "clear by the quality rule"})
    data["valid"] = (dims, stack.observed, {"long_name": "observed (not fill, not nodata)"})
    return xr.Dataset(data, coords=coords)


def _arrays(result, shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
    if result is None or (isinstance(result, str) and result == "empty"):
        return None
    import xarray as xr  # lazy: as in stack_dataset

    if isinstance(result, xr.Dataset):
        items = {str(k): v.values for k, v in result.data_vars.items()}
    elif isinstance(result, dict):
        items = {str(k): np.asarray(v.values if isinstance(v, xr.DataArray) else v) for k, v in result.items()}
    else:
        raise ProcessFailed(f"execute returned {type(result).__name__}; expected an xarray.Dataset, a dict of "
                            "(y, x) arrays, or None")
    out = {}
    for name, value in items.items():
        if value.ndim == 3 and value.shape[0] == 1:
            value = value[0]
        if value.shape != shape:
            raise ProcessFailed(f"output {name!r} has shape {value.shape}; expected (y, x) = {shape}, "
                                "the cube's grid")
        out[name] = value
    return out


def run_execute(execute: Execute, cube: xr.Dataset, parameters: dict) -> dict[str, np.ndarray] | None:
    """``execute(cube, **parameters)`` as ``{name: (y, x) array}`` (None: nothing to write).

    Raises:
        ProcessFailed: the code raised (with its traceback), or returned something else than
            a Dataset, a dict of arrays on the cube's grid, or None.
    """
    try:
        result = execute(cube, **parameters)
    except MemoryError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        message = f"{type(exc).__name__}: {first[:500]}" if first else type(exc).__name__
        text = "".join(traceback.format_exception(exc))
        if len(text) > MAX_TRACEBACK:  # the end says where it failed
            text = "...\n" + text[-MAX_TRACEBACK:]
        raise ProcessFailed(message, text) from exc
    return _arrays(result, (cube.sizes["y"], cube.sizes["x"]))


def infer_outputs(arrays: dict[str, np.ndarray]) -> dict[str, Output]:
    """Output declarations read off one result: floats become float32 (nodata NaN), booleans
    uint8 (nodata 255), integers keep their dtype with its largest value (signed: smallest) as
    nodata."""
    out = {}
    for name, value in arrays.items():
        kind = value.dtype.kind
        if kind == "f":
            out[name] = Output("float32")
        elif kind == "b":
            out[name] = Output("uint8", 255)
        elif kind in "iu":
            info = np.iinfo(value.dtype)
            out[name] = Output(value.dtype.name, int(info.max if kind == "u" else info.min))
        else:
            raise ProcessFailed(f"output {name!r} has dtype {value.dtype}; outputs are numbers")
    return out


def cast_output(value: np.ndarray, output: Output) -> np.ndarray:
    """``value`` in the output's dtype; non-finite values become its nodata."""
    dtype = np.dtype(output.dtype)
    value = np.asarray(value)
    if dtype.kind == "f":
        out = value.astype(dtype)
        if output.nodata is not None:
            out[~np.isfinite(out)] = output.fill
        return out
    if value.dtype.kind == "f":
        missing = ~np.isfinite(value)
        out = np.where(missing, 0, value).astype(dtype)
        out[missing] = output.fill
        return out
    return value.astype(dtype)


def execute_on(inputs: CompositeInputs, geobox: GeoBox, execute: Execute, parameters: dict, *,
               margin: int = 0, pool: int | None = None) -> dict[str, np.ndarray] | None:
    """``execute`` on every scene over ``geobox`` (grown by ``margin`` pixels, the result
    cropped back): ``{name: (y, x) array}``, or None when no scene covers it or the process
    wrote nothing (the output probe, previews).

    Raises:
        ProcessFailed: the process raised.
    """
    padded = geobox.pad(margin) if margin else geobox
    stack = load_tile(inputs, padded, inputs.load_bands, None, pool)
    if not stack.item_ids:
        return None
    arrays = run_execute(execute, stack_dataset(stack, padded), parameters)
    if not arrays:
        return None
    inner = (slice(margin, margin + geobox.shape.y), slice(margin, margin + geobox.shape.x))
    return {name: value[inner] for name, value in arrays.items()}


def probe_outputs(inputs: CompositeInputs, geobox: GeoBox, execute: Execute, parameters: dict, *,
                  margin: int = 0, edge: int = 64) -> dict[str, Output]:
    """The outputs of a process that declares none, read off its result on an ``edge`` px
    window at the centre of ``geobox`` (every scene over it, the halo around it).

    Raises:
        ProcessFailed: the process raised there.
        InvalidInput: no scene covers the window, or the process wrote nothing there.
    """
    ny, nx = min(edge, geobox.shape.y), min(edge, geobox.shape.x)
    y0, x0 = (geobox.shape.y - ny) // 2, (geobox.shape.x - nx) // 2
    arrays = execute_on(inputs, geobox[y0:y0 + ny, x0:x0 + nx], execute, parameters, margin=margin)
    if not arrays:
        raise InvalidInput("the process wrote nothing at the centre of the area (or no scene covers it), "
                           "where the outputs are probed: declare the outputs")
    return infer_outputs(arrays)


@dataclass
class ProcessTile:
    """A tile's outputs ``{name: (steps, y, x)}``, its scenes' pixel counts, and the error of
    the process when it failed (``{"error", "traceback"}``; the outputs are then nodata)."""

    arrays: dict[str, np.ndarray]
    stats: TileStats
    error: dict | None = None


def process_tile(inputs: CompositeInputs, geobox: GeoBox, execute: Execute, parameters: dict,
                 outputs: dict[str, Output], used: set[str], period_index: dict[str, int], n_steps: int,
                 *, margin: int = 0, pool: int | None = None) -> ProcessTile:
    """Run a process on one tile, once per output period that has observations there.

    Args:
        inputs: what to read (sources, bands; ``method`` is not used).
        geobox: the tile's GeoBox.
        execute: the process function.
        parameters: keyword arguments of ``execute``.
        outputs: the declared outputs (dtypes and nodata).
        used: ids of the scenes to read.
        period_index: ``{item id: output time step}``.
        n_steps: output time steps.
        margin: halo in pixels: the cube covers the tile grown by it; results are cropped back.
        pool: threads the files are read with.

    Returns:
        A :class:`ProcessTile`; a period without observations on the tile stays nodata (the
        process is not called for it).

    Raises:
        StorageError: an input cannot be read (the tile is retried by the job).
    """
    ny, nx = geobox.shape.y, geobox.shape.x
    out = {name: np.full((n_steps, ny, nx), o.fill if o.fill is not None else 0, dtype=o.dtype)
           for name, o in outputs.items()}
    padded = geobox.pad(margin) if margin else geobox
    stack = load_tile(inputs, padded, inputs.load_bands, used, pool)
    stats = stack_stats(clean_stack(stack, None, margin) if margin else stack)
    steps = np.array([period_index[i] for i in stack.item_ids], dtype=int)
    inner = (slice(margin, margin + ny), slice(margin, margin + nx))
    try:
        for step in range(n_steps):
            sub = stack.select(steps == step)
            if not sub.item_ids:
                continue
            arrays = run_execute(execute, stack_dataset(sub, padded), parameters)
            if arrays is None:
                continue
            if set(arrays) != set(outputs):
                raise ProcessFailed(f"execute returned {', '.join(sorted(arrays)) or 'nothing'}; the process "
                                    f"declares the outputs {', '.join(outputs)}")
            for name, value in arrays.items():
                out[name][step] = cast_output(value[inner], outputs[name])
    except ProcessFailed as exc:
        for name, o in outputs.items():
            out[name][:] = o.fill if o.fill is not None else 0
        return ProcessTile(out, stats, {"error": exc.message, "traceback": exc.traceback})
    return ProcessTile(out, stats)
