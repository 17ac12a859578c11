#!/usr/bin/env python
"""Filtered evaluation vs the bare score matrix product, on DB15K test (19,804 queries x 12,842 entities).

    python benchmarks/bench_eval.py [--dim 256] [--batch-size 128] [--repeats 3] [--device auto]

Both sides score the same queries with the same DistMult-style model (d = 256) in the same
batches; "bare" stops at the (B, E) score block, "evaluate" is the harness's full path (filter,
ranks, per-query table, metrics). Reports the best of `repeats` runs of each and their ratio.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from baselines.distmult import DistMult, DistMultConfig  # noqa: E402
from benchmarks.common import db15k, machine, sync  # noqa: E402
from mmkgbench.evaluate import EvalConfig, evaluate, queries  # noqa: E402
from mmkgbench.model import ModelInputs  # noqa: E402
from mmkgbench.ranking import KnownAnswers  # noqa: E402


def best_of(fn, repeats, device):
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    data, source = db15k()
    R, E = data.num_relations, data.num_entities
    model = DistMult(DistMultConfig(dim=args.dim), ModelInputs(E, 2 * R), torch.Generator().manual_seed(0))
    model = model.to(device).eval()
    known = KnownAnswers(np.concatenate([data.train, data.valid, data.test]), R).to(device)
    e, r, _, _ = queries(data.test, R)
    e_t, r_t = torch.from_numpy(e).to(device), torch.from_numpy(r).to(device)
    bs = args.batch_size

    @torch.inference_mode()
    def bare():
        for i in range(0, len(e_t), bs):
            model.score_t(e_t[i:i + bs], r_t[i:i + bs])

    results = {}
    t_bare = best_of(bare, args.repeats, device)
    for mode in ("off", "on"):
        cfg = EvalConfig(batch_size=bs, compile=mode)
        t0 = time.perf_counter()
        evaluate(model, data.test[:64], known, num_relations=R, cfg=cfg, device=device)   # warm-up / compile
        warm = time.perf_counter() - t0
        t = best_of(lambda: evaluate(model, data.test, known, num_relations=R, cfg=cfg, device=device),
                    args.repeats, device)
        results[mode] = (t, warm)
    print(f"machine: {machine()}")
    print(f"data: {source}; {2 * len(data.test):,} test queries x {E:,} entities; DistMult d={args.dim}; "
          f"batch {bs}; device {device}; best of {args.repeats}")
    print(f"bare score matrix product : {t_bare:7.3f} s")
    for mode, (t, warm) in results.items():
        label = "evaluate, fused counting (torch.compile)" if mode == "on" else "evaluate, eager counting"
        print(f"{label:<42}: {t:7.3f} s  = {t / t_bare:.2f}x bare   (first call incl. warm-up {warm:.1f} s)")


if __name__ == "__main__":
    main()
