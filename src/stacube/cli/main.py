"""Entry point of the ``stacube`` command: sub-commands and error reporting.

Errors: anything stacube reports on purpose (:class:`stacube.errors.StacubeError`), usage
errors and interrupts print one line on stderr and exit non-zero, without a traceback.
``STACUBE_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import os
import sys

import typer

try:  # typer ships its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_exceptions

from stacube.cli import access, catalog, composite, cube, db, jobs, plot, serve
from stacube.errors import StacubeError

app = typer.Typer(
    name="stacube",
    help="A STAC-catalog-backed Earth-observation data cube: catalog, APIs, composites.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(catalog.product_app, name="product")
app.add_typer(catalog.dataset_app, name="dataset")
app.add_typer(jobs.app, name="jobs")
app.add_typer(access.cubes_app, name="cubes")
app.add_typer(access.keys_app, name="keys")
catalog.product_app.command("share")(access.product_share)
app.add_typer(cube.app, name="cube")
app.add_typer(plot.app, name="plot")
app.command("timeseries")(cube.timeseries)
app.command("composite")(composite.composite)
app.command("up")(serve.up)
app.command("indices")(composite.indices)


@app.command("version")
def version() -> None:
    """Print the stacube version."""
    from stacube import __version__

    typer.echo(__version__)


def _fail(message: str, code: int) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def run(argv: list[str] | None = None) -> None:
    """Run the CLI, turning errors into one line on stderr and a non-zero exit."""
    debug = os.environ.get("STACUBE_DEBUG", "") not in ("", "0")
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
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # any click flavour
            _fail(exc.format_message(), exc.exit_code)
        if debug:
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (set STACUBE_DEBUG=1 for a traceback)", 70)


if __name__ == "__main__":
    run()
