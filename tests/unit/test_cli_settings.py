"""A STACUBE_* variable the settings refuse: one line naming it, exit 2, no traceback."""

import pytest

from stacube_testing import run_cli


@pytest.mark.parametrize("variable, value, fragment", [
    ("STACUBE_WORKERS", "abc", "valid integer"),
    ("STACUBE_EXECUTOR", "fibres", "'threads' or 'processes'"),
])
def test_an_invalid_setting_is_one_line(variable, value, fragment):
    done = run_cli("job", "list", env={variable: value})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: invalid setting {variable}={value!r}: "), done.stderr
    assert fragment in lines[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize("preset, expected", [(None, "False"), ("1", "True")])
def test_the_command_turns_numpys_huge_pages_off_unless_asked(preset, expected):
    """numpy imported after the command starts allocates in ordinary pages, unless
    NUMPY_MADVISE_HUGEPAGE says otherwise."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom stacube.cli.main import run\ntry:\n    run(['--version'])\nexcept SystemExit:\n    pass\n"
            "assert 'numpy' not in sys.modules or sys.exit('numpy imported too early')\n"
            "import numpy\nprint(numpy._core.multiarray._get_madvise_hugepage())")
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if preset is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = preset
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.split()[-1] == expected


def test_a_command_collects_less_often_and_leaves_its_heap_to_the_exit():
    """The command raises the collector's thresholds for its batch work and freezes its heap
    when it returns (no full pass at shutdown), also when it fails; a server it runs goes back
    to CPython's defaults."""
    import subprocess
    import sys

    code = ("import gc\nfrom stacube.cli.main import BATCH_GC_THRESHOLDS, run\n"
            "from stacube.cli.common import server_collections\n"
            "for argv in (['--version'], ['no-such-command']):\n"
            "    gc.unfreeze()\n"
            "    try:\n        run(argv)\n    except SystemExit:\n        pass\n"
            "    print(gc.get_threshold() == BATCH_GC_THRESHOLDS, gc.get_freeze_count() > 1000)\n"
            "server_collections()\nprint(gc.get_threshold())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip().splitlines()[-3:] == ["True True", "True True", "(700, 10, 10)"]
