#!/usr/bin/env bash
# Install what stacube needs on Debian/Ubuntu: PostgreSQL + PostGIS (apt, when missing) and a
# virtual environment with the pinned Python dependencies (constraints.txt). Idempotent: a
# second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${STACUBE_EXTRAS:-all}

need_apt=()
pg_ok=false
for bindir in /usr/lib/postgresql/*/bin; do
  v=$(basename "$(dirname "$bindir")")
  if [ -x "$bindir/initdb" ] && [ -f "/usr/share/postgresql/$v/extension/postgis.control" ]; then pg_ok=true; fi
done
$pg_ok || need_apt+=(postgresql-15 postgresql-15-postgis-3)
# PgBouncer: the transaction pooler of the serverless scale benchmark and its test
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)
"$PYTHON" -c "import ensurepip, venv" 2>/dev/null || need_apt+=(python3-venv)
# C and C++ compilers and Python's headers: the compositing loops are compiled ahead of time
# (numba.pycc builds numba's C helpers and its C++ reference counting runtime beside them)
command -v cc >/dev/null || need_apt+=(gcc)
command -v c++ >/dev/null || need_apt+=(g++)
"$PYTHON" -c "import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))" \
  2>/dev/null || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "stacube needs: ${need_apt[*]} (run as root, or: sudo apt-get install -y ${need_apt[*]})" >&2
    exit 1
  fi
  echo "installing system packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null; }
  # the packaged cluster is not used: stacube runs its own in .stacube/pg
  if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
    service postgresql stop >/dev/null 2>&1 || true
  fi
  # nor is the packaged PgBouncer service: the benchmark starts its own
  service pgbouncer stop >/dev/null 2>&1 || true
fi

stamp="$VENV/.stacube-installed"
inputs=$(ls pyproject.toml constraints.txt infra/package-lock.json 2>/dev/null || true)
want=$(cat $inputs | sha1sum | cut -c1-16)-$EXTRAS
# the compositing loops, compiled ahead of time for this source and CPU (a no-op when current;
# without them numba's JIT runs the same loops after ~0.35 s of set-up per process)
build_loops() { "$VENV/bin/python" -m stacube.algo.aot >/dev/null || true; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/stacube" ]; then
  # the console rebuilds itself when its sources changed (a no-op otherwise)
  if [ -x scripts/build-console.sh ]; then scripts/build-console.sh; fi
  build_loops
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
log="$VENV/install.log"
"$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24" > "$log" 2>&1 || { cat "$log"; exit 1; }
echo "installing Python dependencies into $VENV (pinned by constraints.txt; log in $log)"
"$VENV/bin/python" -m pip install -c constraints.txt -e ".[$EXTRAS]" >> "$log" 2>&1 \
  || { tail -40 "$log"; echo "pip install failed (full log: $log)" >&2; exit 1; }
"$VENV/bin/python" -c "import stacube, stacube_services"
echo "compiling the compositing loops ahead of time (numba.pycc, ~15 s)"
build_loops
# the AWS CDK command line (infra/), pinned by infra/package-lock.json
if command -v npm >/dev/null; then
  npm ci --prefix infra --no-audit --no-fund --loglevel=error >/dev/null
else
  echo "npm not found: \`cdk synth\` from the command line will be unavailable (the CDK app still synthesises in Python)"
fi
# the web console (front end built from the npm registry) and the browser its tests use
if [ -x scripts/build-console.sh ]; then scripts/build-console.sh; fi
echo "$want" > "$stamp"
