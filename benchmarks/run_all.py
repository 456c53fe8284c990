"""Run every benchmark in turn and print their figures (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["composite_kernels.py", "composite_job.py", "registration.py", "tile_latency.py", "fanout.py"]


def main() -> None:
    scripts = [HERE / name for name in ORDER if (HERE / name).exists()]
    helpers = ("common.py", "run_all.py", "plain_composite.py")  # not benchmarks themselves
    scripts += sorted(p for p in HERE.glob("*.py") if p.name not in ORDER and p.name not in helpers)
    failed = 0
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        failed += subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
