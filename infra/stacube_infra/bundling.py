"""Local (Docker-free) bundling of the zip-packaged Python functions.

The package holds the function's requirements installed as Linux wheels for the
Lambda runtime, the ``stacube`` library (and ``stacube_services`` when present)
and the ``lambdas`` tree, so a handler is addressed as
``lambdas.<name>.handler.handler``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import jsii
from aws_cdk import DockerImage, ILocalBundling

#: Source packages copied into every zip, relative to the repository root.
SOURCE_PACKAGES: tuple[str, ...] = ("src/stacube", "services/stacube_services")
#: The handlers' tree, copied whole (small Python modules).
LAMBDAS_DIR = "lambdas"
#: Caches, and the loops compiled ahead of time for the build machine's CPU and Python
#: (``stacube.algo.aot``): the function runs numba's JIT, cached in ``$NUMBA_CACHE_DIR``.
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "_aot_*", "Dockerfile*", ".dockerignore")


class BundlingError(RuntimeError):
    """Local bundling failed; raised instead of falling back to Docker."""


def has_requirements(requirements: Path) -> bool:
    """True when the requirements file names at least one package."""
    for line in requirements.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            return True
    return False


def write_metadata(pyproject: Path, output_dir: Path) -> Path:
    """A ``<name>-<version>.dist-info`` directory (``METADATA``, ``entry_points.txt``) for the
    copied sources, so ``importlib.metadata`` finds the package's entry points in the zip."""
    project = tomllib.loads(pyproject.read_text())["project"]
    name, version = project["name"], project["version"]
    info = output_dir / f"{name}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in (project.get("entry-points") or {}).items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in entries.items())
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return info


@jsii.implements(ILocalBundling)
class LocalPythonBundling:
    """Builds a Lambda zip directory with pip and file copies, never with Docker.

    Args:
        repo_root: repository root (the asset source).
        requirements: requirements file relative to ``repo_root``.
        wheel_platforms: pip ``--platform`` tags, e.g. ``("manylinux2014_aarch64",)``.
        python_version: target Python version, e.g. ``3.11``.
        python: interpreter whose pip installs the requirements.
    """

    def __init__(
        self,
        repo_root: Path,
        requirements: str,
        *,
        wheel_platforms: Sequence[str],
        python_version: str,
        python: str = sys.executable,
    ) -> None:
        self.repo_root = Path(repo_root)
        self.requirements = requirements
        self.wheel_platforms = tuple(wheel_platforms)
        self.python_version = python_version
        self.python = python

    def pip_command(self, output_dir: str) -> list[str]:
        """The pip command installing the requirements as Linux wheels into ``output_dir``."""
        platforms = [arg for tag in self.wheel_platforms for arg in ("--platform", tag)]
        return [
            self.python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            output_dir,
            "--implementation",
            "cp",
            "--python-version",
            self.python_version,
            *platforms,
            "--only-binary=:all:",
            "--upgrade",
            "-r",
            str(self.repo_root / self.requirements),
        ]

    def try_bundle(self, output_dir: str, *, image: DockerImage | None = None) -> bool:
        """Bundle into ``output_dir``; raise :class:`BundlingError` on any failure.

        Returning ``False`` would make CDK fall back to Docker, which this
        project never uses for zip functions, so failures raise instead.
        """
        requirements = self.repo_root / self.requirements
        if not requirements.is_file():
            raise BundlingError(f"{requirements} not found: cannot package the function")
        if has_requirements(requirements):
            self._run(self.pip_command(output_dir))
        self.copy_sources(Path(output_dir))
        return True

    def copy_sources(self, output_dir: Path) -> None:
        """Copy the source packages and the ``lambdas`` tree into ``output_dir``, with the
        package metadata (its entry points: ``stacube.tables``...) that an install would write."""
        for relative in (*SOURCE_PACKAGES, LAMBDAS_DIR):
            source = self.repo_root / relative
            if source.is_dir():
                target = output_dir / source.name
                shutil.copytree(source, target, ignore=_IGNORED, dirs_exist_ok=True)
        write_metadata(self.repo_root / "pyproject.toml", output_dir)

    @staticmethod
    def _run(command: Sequence[str]) -> None:
        """Run ``command``, turning a non-zero exit into :class:`BundlingError`."""
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BundlingError(
                f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-4000:]}"
            )
