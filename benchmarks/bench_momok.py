#!/usr/bin/env python
"""MoMoK on DB15K-sized inputs: seconds per training epoch, peak memory, and a full test evaluation.

    python benchmarks/bench_momok.py [--epochs 1] [--batch-size 1024] [--device auto] [--no-eval]

Inputs: the real DB15K triples (random ones of the same sizes when ../shared/datasets is absent)
and random features of the published shapes, image 12842 x 4096 and text 12842 x 768, run through
MoMoK's preprocessing (L2 rows, pooled to 256 and 256; mmkgbench.features.momok_preprocess).
Settings of the reference code's defaults: d = d_r = 256, K = 3 experts, mu = 1e-4, KvsAll with
reciprocal relations, label smoothing 0.1, Adam lr 5e-4, batch 1024 queries, the CLUB estimator's
own Adam step after each model step. The training loop is the harness's (mmkgbench.train.train),
with deterministic kernels on the CPU as `run_bench.py run` uses them (--no-deterministic: off).

Prints seconds per epoch (the first includes warm-up), the filtered evaluation of the 9,902 test
triples in both directions (19,804 queries against all entities), and the process's peak resident
memory (ru_maxrss: everything, data and features included).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import db15k, machine, sync  # noqa: E402
from mmkgbench.evaluate import EvalConfig, evaluate  # noqa: E402
from mmkgbench.features import momok_preprocess  # noqa: E402
from mmkgbench.model import ModelInputs  # noqa: E402
from mmkgbench.models import get_model  # noqa: E402
from mmkgbench.ranking import KnownAnswers  # noqa: E402
from mmkgbench.train import TrainConfig, train  # noqa: E402

PUBLISHED_SHAPES = {"image": 4096, "text": 768}     # MoMoK's DB15K img_features.pth / text_features.pth


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9     # Linux reports KiB


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip the test evaluation")
    p.add_argument("--no-deterministic", dest="deterministic", action="store_false")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    data, source = db15k()
    E = data.num_entities
    rng = np.random.default_rng(0)
    raw = {m: rng.standard_normal((E, w), dtype=np.float32) for m, w in PUBLISHED_SHAPES.items()}
    t = time.perf_counter()
    data = momok_preprocess(data.replace(features=raw, present={m: np.ones(E, bool) for m in raw}), dataset="DB15K")
    prep = time.perf_counter() - t
    del raw
    print(f"machine: {machine()}")
    print(f"data: {source}; {len(data.train):,} train triples; features "
          + ", ".join(f"{m} {E}x{w} -> {data.features[m].shape[1]}" for m, w in PUBLISHED_SHAPES.items())
          + f" (preprocessing {prep:.1f} s); device {device}; deterministic kernels {args.deterministic}")

    cls = get_model("momok")
    inputs = ModelInputs(E, 2 * data.num_relations, {m: torch.from_numpy(np.array(x)) for m, x in data.features.items()},
                         {m: torch.from_numpy(np.array(x)) for m, x in data.present.items()}, "zeros")
    torch.manual_seed(0)
    model = cls(cls.Config(), inputs, torch.Generator().manual_seed(0)).to(device)
    cfg = TrainConfig(**{**cls.train_defaults, "batch_size": args.batch_size, "max_epochs": args.epochs,
                         "eval_every": 0})
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(args.deterministic and device.type == "cpu")
    try:
        res = train(model, data.train, data.num_relations, E, cfg, device=device, seed=0)
        secs = [row["seconds"] for row in res.history]
        epochs = [b - a for a, b in zip([0.0] + secs[:-1], secs)]
        n_batches = -(-len(KnownAnswers(data.train, data.num_relations).keys) // args.batch_size)
        print(f"train: {', '.join(f'{s:.1f}' for s in epochs)} s per epoch ({n_batches} batches of "
              f"{args.batch_size}: {min(epochs) / n_batches:.2f} s per batch); loss {res.history[-1]['loss']:.4f}",
              flush=True)
        if args.eval:
            known = KnownAnswers(np.concatenate([data.train, data.valid, data.test]), data.num_relations).to(device)
            sync(device)
            t = time.perf_counter()
            ev = evaluate(model, data.test, known, num_relations=data.num_relations, cfg=EvalConfig(), device=device)
            sync(device)
            print(f"evaluate: {time.perf_counter() - t:.1f} s for {len(ev.per_query):,} test queries "
                  f"(filtered, both directions); MRR {ev.metrics['both']['mrr']:.4f}")
    finally:
        torch.use_deterministic_algorithms(before)
    gpu = (f"; peak GPU memory {torch.cuda.max_memory_allocated() / 1e9:.2f} GB" if device.type == "cuda" else "")
    print(f"peak resident memory: {peak_rss_gb():.2f} GB{gpu}")


if __name__ == "__main__":
    main()
