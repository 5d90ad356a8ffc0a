#!/usr/bin/env bash
# Install what the tests need, then run them. The README's test command.
#
#   bash scripts/test.sh [PYTEST ARGS...]
#
# Safe to run again: each step skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

say "Python packages (wspractice and its test extra)"
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

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

# One test uses Node's ws, the tutorial's own library, as a client.
if command -v npm >/dev/null 2>&1 && [ ! -d tests/node/node_modules/ws ]; then
    say "Node's ws for the Node client test (npm ci in tests/node)"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi

say "Tests"
exec python3 -m pytest "$@"
