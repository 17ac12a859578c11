#!/usr/bin/env python
"""Cost of the synthetic generator against graph size: seconds and peak memory, one process per size.

    python benchmarks/bench_synthetic.py [--entities 10000 100000 1000000] [--per-entity 4]
                                         [--exact 10000 20000] [--repeats 1]

Each size is generated in a fresh child process (so its peak resident memory is its own) with
num_triples = per-entity x entities and 32 relations, as `synthetic_large` (the registered 10^6
entity set) has them. "window" is the linear-cost tail rule `synthetic_large` uses; `--exact`
sizes are also run with the "exact" rule (cost triples x entities) for contrast. Prints one row per
size: seconds, peak RSS, and microseconds per (triple + entity), which stays flat when the cost is
linear.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from mmkgbench.synthetic import synthetic_mmkg
t = time.perf_counter()
d = synthetic_mmkg(num_entities={E}, num_relations=32, num_triples={T}, tails={rule!r})
secs = time.perf_counter() - t
print(json.dumps(dict(seconds=secs, rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      train=len(d.train), valid=len(d.valid), test=len(d.test))))
"""


def one(E: int, T: int, rule: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), E=E, T=T, rule=rule)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entities", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--per-entity", type=int, default=4, help="triples drawn per entity (synthetic_large: 4)")
    p.add_argument("--exact", type=int, nargs="*", default=[10_000, 20_000],
                   help="sizes also generated with the exact rule (cost triples x entities)")
    p.add_argument("--repeats", type=int, default=1, help="runs per size; the fastest is shown")
    args = p.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"{'rule':<7} {'entities':>10} {'triples':>10} {'train':>10} {'seconds':>8} {'peak RSS':>9} "
          f"{'us per (triple+entity)':>23}")
    for rule, sizes in (("window", args.entities), ("exact", args.exact)):
        for E in sizes:
            T = args.per_entity * E
            runs = [one(E, T, rule) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["seconds"])
            print(f"{rule:<7} {E:>10,} {T:>10,} {best['train']:>10,} {best['seconds']:>8.2f} "
                  f"{max(r['rss_kb'] for r in runs) / 2 ** 20:>7.2f} GB {1e6 * best['seconds'] / (T + E):>23.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
