"""Time the offline text encoders on the entity names of each benchmark.

    python3 benchmarks/bench_text.py                      # e5-small on DB15K, MKG-Y, KVC16K
    python3 benchmarks/bench_text.py --encoder minilm --datasets DB15K MKG-Y

Reads the triples from ../shared/datasets (or $MMKGBENCH_SHARED_DATASETS), encodes every name into a
throw-away cache (nothing is written to yours) and prints names/s. MKG-W is skipped: it has no names
offline. Run it on an otherwise idle machine: the encoders use every core.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import SHARED, machine

from mmkgbench.catalog import get_benchmark
from mmkgbench.loaders import load_momok
from mmkgbench.text import ENCODERS, compute_text_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="e5-small", choices=sorted(ENCODERS))
    ap.add_argument("--datasets", nargs="+", default=["DB15K", "MKG-Y", "KVC16K"])
    args = ap.parse_args()
    print(f"machine: {machine()}; encoder {args.encoder} ({ENCODERS[args.encoder].package} "
          f"{ENCODERS[args.encoder].version()})")
    print("| data set | names | seconds | names/s |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as home:
        os.environ["MMKGBENCH_HOME"] = home
        for name in args.datasets:
            bench = get_benchmark(name)
            data = load_momok(SHARED / bench.folder, name=bench.name)
            data = data.replace(meta={**data.meta, "benchmark": bench.name})
            t0 = time.perf_counter()
            compute_text_features(data, args.encoder, log=lambda *a: None, force=True)
            seconds = time.perf_counter() - t0
            print(f"| {bench.name} | {data.num_entities:,} | {seconds:.1f} | {data.num_entities / seconds:,.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
