#!/usr/bin/env python
"""Entry point of mmkgbench: `python run_bench.py [run|report|list] ...` (see mmkgbench/cli.py).

With no arguments it runs the default comparison (scenarios/default.toml) and prints its report.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # run from a clone without installing

from mmkgbench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
