"""Cold start of the Lambda handlers: import time of each handler module in a fresh interpreter,
and the size of what each function ships.

Import time is the proxy for a cold start: Lambda imports the handler module during the init
phase of a new container (the HTTP handlers also build their FastAPI app then; database pools
and the secret are opened at the first request and are not counted). Each module is imported in
a new ``python`` process with the function's environment, ``N`` times; the median is printed next
to its target and as a ratio to a baseline measured in the same run: importing bare
``fastapi`` + ``mangum`` (what any FastAPI-on-Lambda function pays).

"first event" adds what a queue consumer imports only when its first message arrives (the
compositing code for planner, worker and finalize; rio-stac and pypgstac for ingest), so it is
the figure to compare for those functions.

Targets: ``stac_api`` <= 1.0 s, ``raster_api`` <= 2.0 s, ``worker`` <= 2.0 s (others reported).

Sizes: the zip bundles (``stac_api``, ``db_bootstrap``) are built as ``cdk deploy`` builds them
(pip ``--target`` with Linux wheels for Python 3.11 / manylinux2014, plus the sources) unless
``--no-bundles``; the images' Python dependencies are measured as installed in this environment
(``stacube[serve,s3]`` + mangum for the raster image, ``stacube[s3]`` + fastapi + mangum for
the worker image).

Run: ``.venv/bin/python benchmarks/cold_start.py [-n 7] [--no-bundles] [--arch aarch64]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: What a consumer imports on its first message (not at module import), counted in "first event".
FIRST_EVENT = {
    "worker": "import stacube.jobs.tasks",
    "planner": "import stacube.jobs.tasks",
    "finalize": "import stacube.jobs.tasks",
    "ingest": "import stacube.catalog.ingest, stacube.catalog.pgstac, rio_stac, pypgstac.load",
    "db_bootstrap": "import pypgstac.migrate, stacube.jobs.state",
}
HANDLERS = {  # module: (target seconds or None, extra environment)
    "stac_api": (1.0, {"STACUBE_ROOT_PATH": "/stac"}),
    "raster_api": (2.0, {"STACUBE_ROOT_PATH": "/raster"}),
    "worker": (2.0, {"STACUBE_FINALIZE_QUEUE_URL": "https://sqs.invalid/1/finalize"}),
    "jobs_api": (None, {"STACUBE_ROOT_PATH": "/jobs", "STACUBE_PLAN_QUEUE_URL": "https://sqs.invalid/1/plan"}),
    "ingest": (None, {}),
    "planner": (None, {"STACUBE_TILE_QUEUE_URL": "https://sqs.invalid/1/tile"}),
    "finalize": (None, {}),
    "db_bootstrap": (None, {}),
}
ENV = {  # what every function gets (no network is used at import)
    "STACUBE_DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:app",
    "STACUBE_DB_POOL_SIZE": "1", "STACUBE_OUTPUT": "s3://outputs/outputs", "STACUBE_STAGE": "bench",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "stacube-bench",  # what the Lambda runtime sets
}
TIMER = ("import sys, time; sys.path.insert(0, {root!r}); t = time.perf_counter(); {stmt}; "
         "print(time.perf_counter() - t)")


def import_time(stmt: str, env: dict, runs: int) -> float:
    """Median seconds of ``stmt`` in ``runs`` fresh interpreters."""
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", TIMER.format(root=str(ROOT), stmt=stmt)],
                             capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"{stmt} failed:\n{out.stderr[-2000:]}")
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def interpreter_start(runs: int) -> float:
    import time

    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import json"], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def slowest_imports(module: str, env: dict, top: int = 8) -> list[tuple[str, float]]:
    """The imported packages that took longest (``-X importtime``, cumulative), the handler
    module itself left out."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          f"import sys; sys.path.insert(0, {str(ROOT)!r}); import {module}"],
                         capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT)
    rows = []
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        if 1 <= depth <= 3 and not name.strip().startswith("lambdas"):
            rows.append((name.strip(), int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def zipped_size(path: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "bundle.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in path.rglob("*"):
                if f.is_file():
                    zf.write(f, f.relative_to(path))
        return target.stat().st_size


def build_bundle(name: str, arch: str, out: Path) -> Path:
    """The zip function's directory, built as infra/stacube_infra/bundling.py builds it (pip for
    Linux wheels into a directory, then the sources)."""
    target = out / f"{name}-{arch}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--target", str(target), "--implementation", "cp", "--python-version", "3.11",
         "--platform", f"manylinux2014_{arch}", "--platform", f"manylinux_2_17_{arch}",
         "--only-binary=:all:", "--upgrade", "-r", str(ROOT / "lambdas" / name / "requirements.txt")],
        check=True, capture_output=True, text=True)
    for source in ("src/stacube", "services/stacube_services", "lambdas"):
        shutil.copytree(ROOT / source, target / Path(source).name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "Dockerfile*"))
    return target


def installed_size(requirements: list[str]) -> tuple[int, int]:
    """Bytes and number of distributions installed here for ``requirements`` and their deps."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    seen: dict[str, int] = {}
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux",
           "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}

    def walk(name: str, extras: tuple[str, ...]) -> None:
        key = re.sub(r"[-_.]+", "-", name).lower()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            return
        first = key not in seen
        if first:
            seen[key] = sum((dist.locate_file(f).stat().st_size for f in dist.files or []
                             if dist.locate_file(f).is_file()), 0)
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = req.marker is None or any(req.marker.evaluate({**env, "extra": e})
                                               for e in ("", *extras))
            if wanted and (first or extras):
                walk(req.name, tuple(req.extras))

    for text in requirements:
        req = Requirement(text)
        walk(req.name, tuple(req.extras))
    source = dir_size(ROOT / "src" / "stacube") + dir_size(ROOT / "services" / "stacube_services")
    return sum(seen.values()) + source, len(seen)


def mb(n: int) -> str:
    return f"{n / 1e6:7.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=7)
    parser.add_argument("--no-bundles", action="store_true", help="skip building the zip bundles")
    parser.add_argument("--arch", default="aarch64", choices=["aarch64", "x86_64"])
    args = parser.parse_args()

    print(f"cold start: median of {args.runs} fresh interpreters, {sys.executable} "
          f"(Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f})")
    start = interpreter_start(args.runs)
    base = import_time("import fastapi, mangum", ENV, args.runs)
    label = 'interpreter start (python -c "import json")'
    print(f"{label:<44} {start:6.3f} s")
    print(f"{'baseline: import fastapi, mangum':<44} {base:6.3f} s")
    print()
    print(f"{'handler module':<28} {'import':>8} {'target':>8}  {'met':<4} {'x baseline':>10} "
          f"{'first event':>12}")
    missed = []
    for name, (target, extra) in HANDLERS.items():
        seconds = import_time(f"import lambdas.{name}.handler", {**ENV, **extra}, args.runs)
        met = "" if target is None else ("yes" if seconds <= target else "NO")
        shown = f"{target:6.1f} s" if target else "     -  "
        first = ""
        if name in FIRST_EVENT:
            total = import_time(f"import lambdas.{name}.handler; {FIRST_EVENT[name]}", {**ENV, **extra},
                                args.runs)
            first = f"{total:9.3f} s"
        print(f"{'lambdas.' + name:<28} {seconds:6.3f} s {shown}  {met:<4} {seconds / base:9.2f}x {first:>12}")
        if target is not None and seconds > target:
            missed.append((name, extra))
    for name, extra in missed:
        print(f"\n{name} misses its target; slowest top-level imports (cumulative):")
        for module, seconds in slowest_imports(f"lambdas.{name}.handler", {**ENV, **extra}):
            print(f"    {module:<40} {seconds:6.3f} s")

    print("\npackage sizes")
    if not args.no_bundles:
        out = Path(tempfile.gettempdir()) / "stacube-bundles"
        for name in ("stac_api", "db_bootstrap"):
            try:
                path = build_bundle(name, args.arch, out)
            except Exception as exc:  # noqa: BLE001 - no network, say so
                print(f"zip {name:<14} could not be built: {str(exc).splitlines()[0][:200]}")
                continue
            print(f"zip {name:<14} ({args.arch}) unzipped {mb(dir_size(path))}, zipped "
                  f"{mb(zipped_size(path))}  (limits: 250 MB unzipped, 50 MB zipped upload)")
    for image, reqs in (("raster_api", ["stacube[serve,s3]", "mangum"]),
                        ("worker", ["stacube[s3]", "fastapi", "mangum"])):
        size, count = installed_size(reqs)
        print(f"image {image:<12} Python packages installed here: {mb(size)} in {count} distributions")


if __name__ == "__main__":
    main()
