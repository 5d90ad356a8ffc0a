#!/usr/bin/env python3
"""Soak wspractice: thousands of hostile connections while measured clients move.

    python scripts/soak.py                          # 60 s, as written up
    python scripts/soak.py --duration 300 --connect-rate 80
    python scripts/soak.py --duration 5 -- --compression --max-message-size 8192

The soak test is the package beside this file (``scripts/soaktest/``; its
docstring, shown by ``--help``, describes the run, docs/reliability.md its
results). This file only runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This checkout's wspractice (its option parser), before any installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soaktest.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
