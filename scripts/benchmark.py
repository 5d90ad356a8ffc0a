#!/usr/bin/env python3
"""Benchmark wspractice side by side with peer servers: ``scripts/bench/``.

    python scripts/benchmark.py --quick      # a smoke test, under a minute
    python scripts/benchmark.py --help       # every option

The benchmark is the package beside this file (``scripts/bench/``; its
docstring describes it, docs/benchmarks.md defines every figure). This file
only runs it, so that the documented commands keep working.
"""

from __future__ import annotations

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
