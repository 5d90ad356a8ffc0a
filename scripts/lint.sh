#!/usr/bin/env bash
# Types, lint and formatting: mypy --strict, flake8 and black --check.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[lint]'
echo "==> mypy --strict (configured in setup.cfg)"
python3 -m mypy
echo "==> flake8"
python3 -m flake8 wspractice tests scripts
echo "==> black --check"
python3 -m black --check --quiet wspractice tests scripts
echo "types, lint and format: OK"
