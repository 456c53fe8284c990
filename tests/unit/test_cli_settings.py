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
