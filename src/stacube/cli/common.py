"""Helpers shared by the CLI commands."""

from __future__ import annotations

import gc
import sys

from rich.console import Console

from stacube.errors import InvalidInput
from stacube.settings import Settings

# Wide tables when the output is a file or a pipe; the terminal's width otherwise.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def settings_from(**overrides) -> Settings:
    """Settings from the environment with the command's non-None options applied."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def split_list(value: str | None, what: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; empty items are an error."""
    if value is None:
        return []
    parts = [p.strip() for p in value.split(",")]
    if any(not p for p in parts):
        raise InvalidInput(f"{what}: empty entry in {value!r}")
    return parts


def int_list(value: str | None, what: str) -> list[int] | None:
    """``"0,1"`` -> ``[0, 1]`` (None stays None).

    Raises:
        InvalidInput: an entry is not an integer.
    """
    if value is None:
        return None
    try:
        return [int(v) for v in split_list(value, what)]
    except ValueError as exc:
        raise InvalidInput(f"{what} {value!r}: expected comma-separated integers") from exc


def when(value) -> str:
    """A timestamp to the second, or empty."""
    return str(value)[:19] if value else ""


#: the garbage collector's thresholds as the interpreter set them (CPython's defaults,
#: ``(700, 10, 10)``), before the command raised them for batch work
#: (:func:`stacube.cli.main.fewer_collections`)
INTERPRETER_GC_THRESHOLDS = gc.get_threshold()


def server_collections() -> None:
    """The interpreter's thresholds of the garbage collector again, for a server the command
    runs (:data:`INTERPRETER_GC_THRESHOLDS`)."""
    gc.set_threshold(*INTERPRETER_GC_THRESHOLDS)
