#!/usr/bin/env python
"""Filtered evaluation against the bare score product, from 10^6 to 10^10 score entries.

    python benchmarks/bench_eval.py [--sizes 1000x1000 10000x1000 db15k 100000x1000 1000000x1000 1000000x10000]
                                    [--modes auto off on] [--repeats 5] [--flat 100000] [--dim 256]

A size is ENTITIESxQUERIES (a synthetic graph of that many entities, window tail rule, 4 triples
per entity; 10^6 entities is `synthetic_large`'s recipe) or `db15k` (the real DB15K test split,
19,804 queries x 12,842 entities, when ../shared/datasets has it). Both sides score the same
queries with the same DistMult model (d = 256) in the same batches of 128: "bare" is `score_t`
for every batch and nothing else; "evaluate" is the harness's whole path (known-answer lookup,
-inf filtering, the two counts, per-query table, metrics), once per counting mode of
`EvalConfig.compile` ("off": the in-place sign kernel; "on": the compiled fused kernel; "auto":
chosen by measurement, mmkgbench.counting). Runs are interleaved (bare, each mode, bare, each
mode, ...) so that load on a shared machine hits both sides alike; min and median of `repeats`
runs and their ratios are printed. The fused kernel's compilation is timed once, separately,
before any run. `--flat E` then times evaluation per query at E entities for 256 to 16,384 queries.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from baselines.distmult import DistMult, DistMultConfig  # noqa: E402
from benchmarks.common import db15k, machine, sync  # noqa: E402
from mmkgbench.counting import KERNEL_CHOICE  # noqa: E402
from mmkgbench.evaluate import EvalConfig, evaluate, queries  # noqa: E402
from mmkgbench.model import ModelInputs  # noqa: E402
from mmkgbench.ranking import KnownAnswers  # noqa: E402
from mmkgbench.synthetic import synthetic_mmkg  # noqa: E402


def graph(size: str):
    """(data, triples to evaluate, label) for a size: `db15k` or ENTITIESxQUERIES."""
    if size == "db15k":
        data, source = db15k()
        return data, data.test, f"DB15K test ({source.split(' from')[0]})"
    E, nq = (int(x) for x in size.lower().split("x"))
    data = synthetic_mmkg(num_entities=E, num_relations=32, num_triples=4 * E, tails="window", modalities={})
    pool = np.concatenate([data.test, data.valid, data.train])
    return data, pool[: nq // 2], f"synthetic, window rule, {E:,} entities"


def timed(fn, device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def setup(data, triples, dim, device):
    R, E = data.num_relations, data.num_entities
    model = DistMult(DistMultConfig(dim=dim), ModelInputs(E, 2 * R), torch.Generator().manual_seed(0)).to(device).eval()
    known = KnownAnswers(np.concatenate([data.train, data.valid, data.test]), R).to(device)
    e, r, _, _ = queries(triples, R)
    return model, known, torch.from_numpy(e).to(device), torch.from_numpy(r).to(device)


def compare(size: str, modes, repeats: int, dim: int, device, bs: int = 128) -> None:
    data, triples, label = graph(size)
    model, known, e_t, r_t = setup(data, triples, dim, device)
    R, E, nq = data.num_relations, data.num_entities, len(e_t)

    @torch.inference_mode()
    def bare():
        for i in range(0, nq, bs):
            model.score_t(e_t[i:i + bs], r_t[i:i + bs])

    runs = {"bare": []} | {m: [] for m in modes}
    for _ in range(repeats):
        runs["bare"].append(timed(bare, device))
        for m in modes:
            cfg = EvalConfig(batch_size=bs, compile=m)
            runs[m].append(timed(lambda: evaluate(model, triples, known, num_relations=R, cfg=cfg, device=device), device))
    b_min, b_med = min(runs["bare"]), statistics.median(runs["bare"])
    print(f"\n{label}: {nq:,} queries x {E:,} entities = {nq * E:.1e} score entries; "
          f"bare min {b_min:.4f} s, median {b_med:.4f} s")
    for m in modes:
        t = runs[m]
        print(f"  evaluate, compile={m:<4}: min {min(t):.4f} s, median {statistics.median(t):.4f} s   "
              f"ratio to bare: of minima {min(t) / b_min:.2f}, of medians {statistics.median(t) / b_med:.2f}   "
              f"per query {1e6 * min(t) / nq:.1f} us (bare {1e6 * b_min / nq:.1f})", flush=True)


def flat(E: int, repeats: int, dim: int, device) -> None:
    data, _, label = graph(f"{E}x2")
    pool = np.concatenate([data.test, data.valid, data.train])
    print(f"\ntime per query against the number of queries, {label}, compile=auto (min of {repeats}):")
    for nq in (256, 1024, 4096, 16384):
        triples = pool[: nq // 2]
        model, known, e_t, r_t = setup(data, triples, dim, device)
        cfg = EvalConfig(compile="auto")
        ev = min(timed(lambda: evaluate(model, triples, known, num_relations=data.num_relations, cfg=cfg,
                                        device=device), device) for _ in range(repeats))

        @torch.inference_mode()
        def bare():
            for i in range(0, len(e_t), 128):
                model.score_t(e_t[i:i + 128], r_t[i:i + 128])
        b = min(timed(bare, device) for _ in range(repeats))
        print(f"  {len(e_t):>6,} queries: evaluate {1e6 * ev / len(e_t):8.1f} us per query, bare {1e6 * b / len(e_t):8.1f} "
              f"(ratio {ev / b:.2f})", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+",
                   default=["1000x1000", "10000x1000", "db15k", "100000x1000", "1000000x1000", "1000000x10000"])
    p.add_argument("--modes", nargs="+", default=["auto", "off", "on"], choices=["auto", "off", "on"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--flat", type=int, default=100_000, help="entities for the per-query series (0: skip)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    print(f"machine: {machine()}; device {device}; DistMult d={args.dim}; batch 128; interleaved, {args.repeats} runs")
    if "on" in args.modes or "auto" in args.modes:
        KERNEL_CHOICE.compile(device)
        print(f"fused counting kernel: compiled once in {KERNEL_CHOICE.compile_seconds or float('nan'):.2f} s"
              f" (not in any figure below){'; failed: ' + KERNEL_CHOICE.failed if KERNEL_CHOICE.failed else ''}")
    for size in args.sizes:
        compare(size, args.modes, args.repeats, args.dim, device)
    if args.flat:
        flat(args.flat, args.repeats, args.dim, device)
    print(f"\nkernel choice by measurement (auto): {KERNEL_CHOICE.stats()['choice']}")


if __name__ == "__main__":
    main()
