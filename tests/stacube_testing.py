"""Shared test helpers: paths of the sample data and a way to run the CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
PRODUCTS = ROOT / "data" / "products"
#: the shared test data beside the repository (``STACUBE_SHARED_DATA`` overrides: a clone elsewhere,
#: or a path that does not exist to check that every test runs, or skips, without it)
SHARED = Path(os.environ.get("STACUBE_SHARED_DATA") or ROOT.parent / "shared" / "data")
STACUBE = str(Path(sys.executable).parent / "stacube")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the ``stacube`` command as a user would."""
    return subprocess.run([STACUBE, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, input=input, timeout=600)


def has_shared_data() -> bool:
    return (SHARED / "stac").exists()


def copy_stack(name: str, dest: Path) -> Path:
    """A private copy of a sample stack (tests that modify files)."""
    target = dest / name
    shutil.copytree(SAMPLES / name, target)
    return target
