"""Shared fixtures: the stacube CDK app synthesized once per test run, offline.

Bundling is skipped (context ``aws:cdk:bundling-stacks=[]``), so no pip, no
Docker and no network are needed. The feature flags of ``cdk.json`` are applied
so the in-process synthesis matches ``cdk synth``. Without aws-cdk-lib the
template tests are not collected and ``test_cdk_environment.py`` reports the skip.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (_HERE.parents[1] / "infra", _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

HAS_CDK = importlib.util.find_spec("aws_cdk") is not None
if not HAS_CDK:
    collect_ignore_glob = ["test_infra_*.py"]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The default stage (no NAT, retained data), synthesized once."""
    from infra_helpers import synth_stack

    return synth_stack(tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def template(stack: Any) -> Any:
    """Template (``aws_cdk.assertions.Template``) of the default stage."""
    from aws_cdk.assertions import Template

    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def template_json(template: Any) -> dict[str, Any]:
    """The default template as a plain dict."""
    return template.to_json()


@pytest.fixture(scope="session")
def functions(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Properties of the stacube functions by short name (``worker``, ``stac-api``...)."""
    from infra_helpers import functions_by_name

    return functions_by_name(template_json)


@pytest.fixture(scope="session")
def variant_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A stage with every optional context key turned on."""
    from infra_helpers import synth_stack

    return synth_stack(
        tmp_path_factory.mktemp("cdk-variant"),
        nat="true",
        destroy="true",
        jobs_auth="jwt",
        jwt_issuer="https://login.example.org",
        jwt_audience="stacube",
        pooler="pgbouncer",
        cdn="false",
        raster_provisioned="5",
        stac_concurrency="0",
        db_instance_class="r6g.large",
        finalize_task="true",
        alarm_email="ops@example.org",
        requester_pays="true",
        read_buckets="usgs-landsat,sentinel-cogs",
        architecture="x86_64",
        versioned="true",
        worker_concurrency="40",
    )


@pytest.fixture(scope="session")
def variant_template(variant_stack: Any) -> Any:
    """Template of the variant stage."""
    from aws_cdk.assertions import Template

    return Template.from_stack(variant_stack)


@pytest.fixture
def no_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Put a fake ``docker`` first on PATH that records every call and fails.

    Yields the log file; it stays absent as long as nothing called docker.
    """
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    log = tmp_path / "docker-calls.log"
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\necho "docker $*" >> "{log}"\nexit 1\n')
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    yield log
