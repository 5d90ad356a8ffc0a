#!/usr/bin/env bash
# Install what the tests need, then run them. The README's test command.
#
#   bash scripts/test.sh [PYTEST ARGS...]
#
# Python packages go into the virtual environment python3 runs in, or else
# into .venv/ in the checkout (see scripts/env.sh); never into a system
# Python. Safe to run again: each step skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

say() { printf '\n==> %s\n' "$*"; }

wspractice_env
# The dependency groups (pyproject.toml) of the tests, the browser tests and
# the benchmark, whose tools the tests drive.
wspractice_install test browser bench

# The browser tests drive Debian's Chromium through Playwright; never
# `playwright install`, which downloads a browser build of its own.
chromium="${WSPRACTICE_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    if command -v apt-get >/dev/null 2>&1; then
        say "Chromium for the browser tests (apt-get install chromium; a few minutes the first time)"
        sudo=""
        if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
        echo "installed: $("$chromium" --version 2>/dev/null || echo "$chromium")"
    else
        say "No $chromium and no apt-get: install Chromium and set WSPRACTICE_CHROMIUM"
    fi
fi

# The shared-room tests start Debian's redis-server (--redis, --workers).
if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    say "redis-server for the shared-room tests (apt-get install redis-server)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
    echo "installed: $(redis-server --version)"
fi

# Node's ws and uuid, the tutorial's own libraries: a client of wspractice,
# and the tutorial's server for the side-by-side handshake test.
if command -v npm >/dev/null 2>&1 \
    && { [ ! -d tests/node/node_modules/ws ] || [ ! -d tests/node/node_modules/uuid ]; }; then
    say "Node's ws and uuid for the Node tests (npm ci in tests/node)"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi

# The benchmark's load generator (ws and uuid, pinned in its lockfile), which
# the benchmark tools' tests drive.
if command -v npm >/dev/null 2>&1 \
    && { [ ! -d scripts/bench/node_modules/ws ] || [ ! -d scripts/bench/node_modules/uuid ]; }; then
    say "Node's ws and uuid for the benchmark's load generator (npm ci in scripts/bench)"
    (cd scripts/bench && npm ci --no-audit --no-fund --loglevel=error)
fi

say "Tests ($(python --version) in $VIRTUAL_ENV)"
exec python -m pytest "$@"
