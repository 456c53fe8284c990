#!/usr/bin/env bash
# Build the web console (services/console -> services/stacube_services/console_dist) and, when
# run as root, install the browser its end-to-end tests drive (Debian's chromium).
#
# Idempotent and quiet: `npm ci` runs only when package-lock.json changed, the build only when a
# source is newer than the bundle (or with --force). Fails loudly (exit 1, log shown) on a real
# error. Called by scripts/install.sh; the end-to-end tests call it too, so the bundle they test
# is never stale.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=services/console
DIST=services/stacube_services/console_dist
force=false
[ "${1:-}" = "--force" ] && force=true

fail() { echo "build-console: $*" >&2; exit 1; }

# the browser of the end-to-end tests (root only; otherwise the tests say how to get it)
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (browser of the console tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; } \
    || fail "apt-get install chromium failed"
fi

if ! command -v npm >/dev/null; then
  # stacube works without it: "/" then lists the APIs and says how to build the console
  echo "npm not found: the web console is not built (install Node.js 20+ and run $0)" >&2
  exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# dependencies, pinned by package-lock.json
if [ ! -f "$SRC/node_modules/.package-lock.json" ] || [ "$SRC/package-lock.json" -nt "$SRC/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$SRC" --no-audit --no-fund --loglevel=error >"$log" 2>&1 \
    || { cat "$log" >&2; fail "npm ci failed"; }
  touch "$SRC/node_modules/.package-lock.json"
fi

# the bundle, rebuilt when a source is newer
stale=$force
if [ ! -f "$DIST/index.html" ]; then
  stale=true
elif [ -n "$(find "$SRC/src" "$SRC/index.html" "$SRC/vite.config.js" "$SRC/package-lock.json" -newer "$DIST/index.html" -print -quit)" ]; then
  stale=true
fi
if $stale; then
  (cd "$SRC" && npx --no-install vite build --logLevel error) >"$log" 2>&1 \
    || { cat "$log" >&2; fail "vite build failed"; }
  [ -f "$DIST/index.html" ] || fail "vite build wrote no $DIST/index.html"
  touch "$DIST/index.html"
fi
