#!/bin/sh
# Runs the CDK app with the first Python that can import aws_cdk:
# $STACUBE_CDK_PYTHON, the project's .venv, then python3 on PATH.
set -eu
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
for candidate in "${STACUBE_CDK_PYTHON:-}" "$root/.venv/bin/python" python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import aws_cdk' >/dev/null 2>&1; then
        exec "$candidate" "$root/infra/app.py" "$@"
    fi
done
echo "run-app.sh: no Python with aws-cdk-lib found; install the project (pip install -e '.[dev]' plus aws-cdk-lib) or set STACUBE_CDK_PYTHON" >&2
exit 1
