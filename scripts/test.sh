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

say "Tests"
exec python3 -m pytest "$@"
