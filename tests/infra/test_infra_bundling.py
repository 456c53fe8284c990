"""Zip packaging without Docker, and image sources, on a throw-away repository tree."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template
from infra_helpers import cdk_context, functions_by_name
from stacube_infra.bundling import BundlingError, LocalPythonBundling
from stacube_infra.config import StageConfig
from stacube_infra.functions import MissingSourceError
from stacube_infra.stack import StacubeStack


def make_repo(root: Path, *, dockerfiles: bool = True) -> Path:
    """A minimal repository: project metadata, library, services, handlers with empty requirements."""
    (root / "src/stacube").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "stacube"\nversion = "9.9.9"\n\n'
        '[project.entry-points."stacube.tables"]\njobs = "stacube.jobs.state:TABLES"\n')
    (root / "src/stacube/__init__.py").write_text("")
    (root / "src/stacube/__pycache__").mkdir()
    (root / "src/stacube/__pycache__/x.cpython-311.pyc").write_text("")
    (root / "src/stacube/algo").mkdir()
    (root / "src/stacube/algo/_aot_0123456789abcdef.cpython-311-x86_64-linux-gnu.so").write_text("")
    (root / "services/stacube_services").mkdir(parents=True)
    (root / "services/stacube_services/__init__.py").write_text("")
    for name in ("stac_api", "db_bootstrap", "worker", "raster_api"):
        folder = root / "lambdas" / name
        folder.mkdir(parents=True)
        (folder / "handler.py").write_text(
            f"NAME = {name!r}\ndef handler(event, context):\n    return NAME\n"
        )
        (folder / "requirements.txt").write_text("# nothing to install\n")
        if dockerfiles and name in ("worker", "raster_api"):
            (folder / "Dockerfile").write_text("FROM public.ecr.aws/lambda/python:3.11\n")
    return root


def make_wheel(folder: Path, name: str = "demo") -> Path:
    """A tiny pure-Python wheel, so pip can run without any index."""
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 1\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(
            f"{info}/RECORD", "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
        )
    return wheel


def bundler(root: Path, **kwargs: str) -> LocalPythonBundling:
    return LocalPythonBundling(
        root,
        "lambdas/stac_api/requirements.txt",
        wheel_platforms=("manylinux2014_aarch64", "manylinux_2_17_aarch64"),
        python_version="3.11",
        **kwargs,
    )


def test_pip_command_targets_lambda_platform(tmp_path: Path) -> None:
    command = bundler(tmp_path).pip_command("/out")
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    joined = " ".join(command)
    assert "--target /out" in joined
    assert "--platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64" in joined
    assert "--only-binary=:all:" in command
    assert "--python-version 3.11" in joined
    assert command[-2:] == ["-r", str(tmp_path / "lambdas/stac_api/requirements.txt")]


def test_bundle_copies_sources_without_caches(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    out = tmp_path / "out"
    out.mkdir()
    # The requirements list nothing, so pip is not run (python would fail anyway).
    assert bundler(repo, python="/nonexistent/python").try_bundle(str(out)) is True
    assert (out / "stacube/__init__.py").is_file()
    assert (out / "stacube_services/__init__.py").is_file()
    assert (out / "lambdas/stac_api/handler.py").is_file()
    assert not (out / "stacube/__pycache__").exists()
    assert (out / "stacube/algo").is_dir() and not list((out / "stacube/algo").glob("_aot_*"))
    assert not (out / "lambdas/worker/Dockerfile").exists()
    # the package metadata an install writes: importlib.metadata finds its entry points in the zip
    from importlib.metadata import distributions

    dist = next(d for d in distributions(path=[str(out)]) if d.metadata["Name"] == "stacube")
    assert dist.version == "9.9.9"
    assert [(e.group, e.name, e.value) for e in dist.entry_points] == [
        ("stacube.tables", "jobs", "stacube.jobs.state:TABLES")]


def test_bundle_fails_loudly(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(BundlingError, match=r"requirements\.txt not found"):
        LocalPythonBundling(
            repo, "lambdas/missing/requirements.txt", wheel_platforms=("x",), python_version="3.11"
        ).try_bundle(str(tmp_path))
    (repo / "lambdas/stac_api/requirements.txt").write_text("orjson\n")
    with pytest.raises(BundlingError, match="exited"):
        bundler(repo, python="false").try_bundle(str(tmp_path / "out"))


def bundled_stack(repo: Path, outdir: Path) -> StacubeStack:
    """The stack built from ``repo`` with bundling on (as for a deploy)."""
    context = cdk_context()
    del context["aws:cdk:bundling-stacks"]
    app = App(context=context, outdir=str(outdir))
    return StacubeStack(app, "stacube-test", config=StageConfig.from_node(app.node), repo_root=repo)


def test_bundled_synth_builds_distinct_zips_without_docker(tmp_path: Path, no_docker: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    # Only the STAC API needs a package: its zip must differ from the bootstrap's.
    wheel = make_wheel(tmp_path)
    (repo / "lambdas/stac_api/requirements.txt").write_text(f"{wheel}\n")
    outdir = tmp_path / "cdk.out"
    stack = bundled_stack(repo, outdir)
    functions = functions_by_name(Template.from_stack(stack).to_json())
    assets = {
        name: outdir / f"asset.{functions[name]['Code']['S3Key'].removesuffix('.zip')}"
        for name in ("stac-api", "db-bootstrap")
    }
    assert assets["stac-api"] != assets["db-bootstrap"]
    assert (assets["stac-api"] / "demo/__init__.py").is_file()
    assert not (assets["db-bootstrap"] / "demo").exists()
    for name, asset in assets.items():
        handler = asset / "lambdas" / name.replace("-", "_") / "handler.py"
        assert handler.is_file(), name
        assert (asset / "stacube/__init__.py").is_file()
    # The raster API has its own image; the other container functions share one.
    images = {name: str(props["Code"].get("ImageUri")) for name, props in functions.items()}
    assert images["raster-api"] != images["worker"] == images["jobs-api"]
    assert not no_docker.exists(), no_docker.read_text() if no_docker.exists() else ""


def test_missing_dockerfile_blocks_a_deployable_synth(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", dockerfiles=False)
    with pytest.raises(MissingSourceError, match="Dockerfile not found"):
        bundled_stack(repo, tmp_path / "cdk.out")
