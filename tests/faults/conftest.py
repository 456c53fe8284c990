"""Fault tests: a real server, real PostgreSQL, a real S3-compatible server, real filesystems."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "conformance"))  # live_server
sys.path.insert(0, str(HERE.parent.parent / "benchmarks"))  # load

from live_server import LiveServer  # noqa: E402


@pytest.fixture
def live_server(samples, tmp_path):
    """``stacube up`` over the session catalog (read-only use), stopped after the test."""
    server = LiveServer({"STACUBE_OUTPUT": (tmp_path / "outputs").as_uri()}, tmp_path / "server.log")
    server.start()
    yield server
    server.stop()
