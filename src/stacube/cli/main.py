"""Entry point of the ``stacube`` command: sub-commands and error reporting.

One rule for the command groups, as Open Data Cube's own CLI (``datacube product add``): a
singular noun per group, a verb per command, every group's help listing all its commands:
``product``, ``dataset``, ``composite``, ``job``, ``process``, ``key``, ``workspace``, ``cube``, ``db``,
``plot``, ``timeseries``, ``up``.

Errors: anything stacube reports on purpose (:class:`stacube.errors.StacubeError`), usage
errors and interrupts print one line on stderr and exit non-zero, without a traceback.
``STACUBE_DEBUG=1`` shows tracebacks. Commands import what they run inside their own function
(marked ``# lazy: start-up``): ``stacube --help`` and every command start in a fraction of a
second.
"""

from __future__ import annotations

import gc
import os
import sys

import pydantic
import typer

try:  # typer ships its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_exceptions

from stacube import __version__
from stacube.cli import composite, cube, dataset, db, job, key, plot, process, product, tiles, timeseries, up, workspace
from stacube.errors import StacubeError
from stacube.settings import invalid_settings_message


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


app = typer.Typer(
    name="stacube",
    help="A STAC-catalog-backed Earth-observation data cube: catalog, APIs, composites, Zarr cubes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                      help="Print the stacube version and exit.")) -> None:
    """A STAC-catalog-backed Earth-observation data cube: catalog, APIs, composites, Zarr cubes."""


app.add_typer(product.app, name="product")
app.add_typer(dataset.app, name="dataset")
app.command("composite")(composite.composite)
app.add_typer(job.app, name="job")
app.add_typer(process.app, name="process")
app.add_typer(key.app, name="key")
app.add_typer(workspace.app, name="workspace")
app.add_typer(cube.app, name="cube")
app.add_typer(db.app, name="db")
app.add_typer(plot.app, name="plot")
app.add_typer(tiles.app, name="tiles")
app.command("timeseries")(timeseries.timeseries)
app.command("up")(up.up)


def small_pages_for_numpy() -> None:
    """Make numpy, imported later by the command, allocate large arrays in ordinary pages.

    numpy asks Linux for transparent huge pages on every array of 4 MB or more
    (``madvise(MADV_HUGEPAGE)``; its documented switch is ``NUMPY_MADVISE_HUGEPAGE``). A job
    fills each tile's stack once, so first touches dominate, and there huge pages cost more
    than they save: writing 272 MB of new arrays took 0.24-0.41 s with them, 0.10-0.12 s
    without, on a 2-core KVM guest (kernel 6.18, THP ``madvise``); a 68-date composite job of
    one 1000 px tile went from 2.59-2.95 s to 2.43-2.73 s, of nine 1024 px tiles from 7.7-8.1 s
    to 7.0-7.9 s. Set ``NUMPY_MADVISE_HUGEPAGE=1`` to keep numpy's default. No effect once numpy
    is imported (commands import it lazily, after this).
    """
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


def _fail(message: str, code: int) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def run(argv: list[str] | None = None) -> None:
    """Run the CLI, turning errors into one line on stderr and a non-zero exit."""
    try:
        _run(argv)
    finally:
        leave_the_heap_to_the_exit()


def leave_the_heap_to_the_exit() -> None:
    """Spare the interpreter's shutdown a full pass of the garbage collector over everything
    the command imported and built (``gc.freeze``: those objects are never scanned again).

    At shutdown CPython collects all generations, and a job's process holds ~200,000 tracked
    objects (numba, pydantic, GDAL bindings, zarr...): that pass took 0.3 s after a composite
    job of one 1000 px tile had finished its work (2.3 s), measured with the collector's
    callbacks and py-spy (``gc_collect_main`` alone on the main thread). The process ends
    right after, and the operating system takes its memory back whatever is frozen (cyclic
    garbage made before this point is no longer collected: call :func:`run` last in a process).
    """
    gc.freeze()


def fewer_collections() -> None:
    """Run the garbage collector's passes less often in a command (``gc.set_threshold``:
    :data:`BATCH_GC_THRESHOLDS`; the servers, ``stacube up`` and ``stacube process serve``,
    go back to CPython's defaults).

    A command's imports create ~200,000 objects that live to its end, and CPython's default
    thresholds (700, 10, 10) rescan them in full passes again and again while they are made
    (0.2 s of a composite job of one 1000 px tile, in 314 collections). Arrays, the memory of a
    job, are freed by reference counting, not by the collector; peak memory of a job of nine
    1024 px tiles was the same (1,554-1,579 MB) with these thresholds and the defaults, and the
    job of one tile took 2.08-2.20 s instead of 2.33-2.55 s. mypy's command raises them too.
    """
    gc.set_threshold(*BATCH_GC_THRESHOLDS)


#: the collector's thresholds in a command: young objects every 50,000 allocations (700 by
#: default), older generations after 20 passes of the younger one (10)
BATCH_GC_THRESHOLDS = (50_000, 20, 20)


def _run(argv: list[str] | None) -> None:
    debug = os.environ.get("STACUBE_DEBUG", "") not in ("", "0")
    small_pages_for_numpy()
    fewer_collections()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="stacube", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except StacubeError as exc:
        if debug:
            raise
        _fail(exc.message, exc.exit_code)
    except typer.Abort:
        _fail("interrupted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except click_exceptions.ClickException as exc:
        if debug:
            raise
        _fail(exc.format_message(), exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: still one line, the traceback on request
        if isinstance(exc, pydantic.ValidationError) and exc.title == "Settings" and not debug:
            _fail(invalid_settings_message(exc), 2)  # a STACUBE_* variable the settings refuse
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # any click flavour
            _fail(exc.format_message(), exc.exit_code)
        if debug:
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (set STACUBE_DEBUG=1 for a traceback)", 70)


if __name__ == "__main__":
    run()
