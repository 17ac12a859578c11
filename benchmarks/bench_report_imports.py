"""Start-up cost of `run_bench.py report`: the imports it does before it reads any result, for two
checkouts, interleaved (old, new, old, new, ...), each in a fresh interpreter.

    python3 benchmarks/bench_report_imports.py --old /path/to/old/checkout [--new .] [--pairs 5]

The imports are those of `main()`, `cmd_report` and `write_report`. A checkout whose `cli.main` still
imports mmkgbench.features for an option's choices (before this was fixed) gets that import too.
Prints each time, then min and median per checkout and their ratios (docs/performance.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

PROBE = """
import sys, time
t = time.perf_counter()
import mmkgbench.cli, mmkgbench.catalog, mmkgbench.text
if {features}:
    import mmkgbench.features
import mmkgbench.outputs, mmkgbench.results, mmkgbench.robustness, mmkgbench.significance
print(f"{{time.perf_counter() - t:.4f}} {{'torch' in sys.modules}} {{'scipy.stats' in sys.modules}}")
"""


def probe(tree: Path) -> tuple[float, str]:
    # the old main() imported it right before the text encoders, for --transform's choices
    old_main = "from mmkgbench.features import FEATURE_TRANSFORMS\n    from mmkgbench.text import DEFAULT_ENCODER"
    features = old_main in (tree / "mmkgbench/cli.py").read_text()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", PROBE.format(features=features)], cwd=tree, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), f"torch={out[1]} scipy.stats={out[2]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, type=Path)
    ap.add_argument("--new", default=Path(__file__).resolve().parent.parent, type=Path)
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    print("load average before:", os.getloadavg())
    times = {"old": [], "new": []}
    for _ in range(args.pairs):
        for name in ("old", "new"):
            t, what = probe(getattr(args, name).resolve())
            times[name].append(t)
            print(f"{name} {t:.3f} s  {what}")
    print("load average after:", os.getloadavg())
    for name, ts in times.items():
        print(f"{name}: min {min(ts):.3f} s, median {statistics.median(ts):.3f} s")
    print(f"new / old: {min(times['new']) / min(times['old']):.2f} (minima), "
          f"{statistics.median(times['new']) / statistics.median(times['old']):.2f} (medians)")


if __name__ == "__main__":
    main()
