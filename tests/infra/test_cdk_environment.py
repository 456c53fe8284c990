"""The CDK toolchain the infrastructure tests need, reported as a skip when absent."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MIN_CDK_LIB = (2, 275, 0)


def _installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def test_aws_cdk_lib_installed() -> None:
    installed = _installed("aws-cdk-lib")
    if installed is None:
        pytest.skip(
            "aws-cdk-lib is not installed: tests/infra/test_infra_*.py were not collected "
            "(pip install aws-cdk-lib==2.275.0 constructs cdk-nag)"
        )
    assert tuple(int(part) for part in installed.split(".")[:3]) >= MIN_CDK_LIB
    assert _installed("constructs") is not None


def test_cdk_json_runs_the_app_wrapper() -> None:
    config = json.loads((REPO_ROOT / "cdk.json").read_text())
    assert config["app"] == "sh infra/run-app.sh"
    assert (REPO_ROOT / "infra" / "run-app.sh").is_file()
    assert (REPO_ROOT / "infra" / "app.py").is_file()
    assert config["context"]["@aws-cdk/core:explicitStackTags"] is True
