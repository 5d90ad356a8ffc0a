#!/usr/bin/env bash
# Install wspractice and start the server. The README's first command.
#
#   bash scripts/serve.sh [OPTIONS...]      e.g. --port 9000 (see --help)
#
# wspractice goes into the virtual environment python3 runs in, or else into
# .venv/ in the checkout (see scripts/env.sh); never into a system Python.
# The second time, nothing is installed and the server starts at once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

wspractice_env
wspractice_install
exec python -m wspractice "$@"
