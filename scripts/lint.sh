#!/usr/bin/env bash
# Types, lint and formatting: mypy --strict, flake8 and black --check, in the
# environment scripts/test.sh uses (see scripts/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

wspractice_env
wspractice_install lint
echo "==> mypy --strict (configured in setup.cfg)"
python -m mypy
echo "==> flake8"
python -m flake8 wspractice tests scripts
echo "==> black --check"
python -m black --check --quiet wspractice tests scripts
echo "types, lint and format: OK"
