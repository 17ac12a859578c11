#!/usr/bin/env python
"""MoMoK, MoCME and RotatE on DB15K-sized inputs: seconds per training epoch, peak memory, test evaluation.

    python benchmarks/bench_mmkgc.py [--models momok mocme rotate] [--epochs 1] [--device auto] [--no-eval]

Inputs: the real DB15K triples (random ones of the same sizes when ../shared/datasets is absent)
and random features of the published shapes, image 12842 x 4096 and text 12842 x 768.

* momok: the features through MoMoK's preprocessing (L2 rows, pooled to 256 and 256;
  mmkgbench.features.momok_preprocess) and the reference code's defaults: d = d_r = 256, K = 3,
  mu = 1e-4, KvsAll with reciprocal relations, label smoothing 0.1, Adam lr 5e-4, batch 1024
  queries, the CLUB estimator's own Adam step after each model step.
* mocme: the raw features projected (methods.md §2.3), d = 256, K = 3, gamma 12, 128 uniform
  negatives per positive, self-adversarial alpha 2 with EGNS, Adam lr 1e-4, batch 1024 positives,
  the MINE step after each model step.
* rotate: structure only with the same negatives and settings as mocme (d = 256, gamma 12, 128
  negatives, alpha 2, lr 1e-4, batch 1024): the cost of MoCME's extra parts is the difference.

The training loop is the harness's (mmkgbench.train.train), with deterministic kernels on the CPU as
`run_bench.py run` uses them (--no-deterministic: off). Prints seconds per epoch (the first includes
warm-up), the filtered evaluation of the 9,902 test triples in both directions (19,804 queries
against all entities), and the process's peak resident memory (ru_maxrss: everything, data and
features included; run one model per process to read it per model).
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
NEGATIVES = dict(regime="negative", lr=1e-4, batch_size=1024, num_negatives=128, loss="softplus",
                 adversarial_temperature=2.0)
SETTINGS = {
    "momok": dict(model={}, train={}, preprocess=True),
    "mocme": dict(model=dict(dim=256, gamma=12.0), train=NEGATIVES, preprocess=False),
    "rotate": dict(model=dict(dim=256, gamma=12.0), train=NEGATIVES, preprocess=False),
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9     # Linux reports KiB


def bench(name: str, base, raw: dict, args, device) -> None:
    s = SETTINGS[name]
    E = base.num_entities
    data = base.replace(features=raw, present={m: np.ones(E, bool) for m in raw})
    if s["preprocess"]:
        data = momok_preprocess(data, dataset="DB15K")
    cls = get_model(name)
    wanted = data.modalities if cls.modalities == ("*",) else tuple(cls.modalities)
    inputs = ModelInputs(E, 2 * data.num_relations, {m: torch.from_numpy(np.array(data.features[m])) for m in wanted},
                         {m: torch.from_numpy(np.array(data.present[m])) for m in wanted}, "zeros")
    torch.manual_seed(0)
    model = cls(cls.Config(**s["model"]), inputs, torch.Generator().manual_seed(0)).to(device)
    cfg = TrainConfig(**{**cls.train_defaults, **s["train"], "batch_size": args.batch_size,
                         "max_epochs": args.epochs, "eval_every": 0})
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(args.deterministic and device.type == "cpu")
    try:
        res = train(model, data.train, data.num_relations, E, cfg, device=device, seed=0)
        secs = [row["seconds"] for row in res.history]
        epochs = [b - a for a, b in zip([0.0] + secs[:-1], secs)]
        if cfg.regime == "kvsall":
            n_batches = -(-len(KnownAnswers(data.train, data.num_relations).keys) // args.batch_size)
            unit = "queries"
        else:
            n_batches, unit = -(-len(data.train) // args.batch_size), "positives"
        print(f"{name}: train {', '.join(f'{t:.1f}' for t in epochs)} s per epoch ({n_batches} batches of "
              f"{args.batch_size} {unit}: {min(epochs) / n_batches:.2f} s per batch); loss {res.history[-1]['loss']:.4f}",
              flush=True)
        if args.eval:
            known = KnownAnswers(np.concatenate([data.train, data.valid, data.test]), data.num_relations).to(device)
            sync(device)
            t = time.perf_counter()
            ev = evaluate(model, data.test, known, num_relations=data.num_relations, cfg=EvalConfig(), device=device)
            sync(device)
            print(f"{name}: evaluate {time.perf_counter() - t:.1f} s for {len(ev.per_query):,} test queries "
                  f"(filtered, both directions); MRR {ev.metrics['both']['mrr']:.4f}", flush=True)
    finally:
        torch.use_deterministic_algorithms(before)
    gpu = (f"; peak GPU memory {torch.cuda.max_memory_allocated() / 1e9:.2f} GB" if device.type == "cuda" else "")
    print(f"{name}: peak resident memory of the process so far {peak_rss_gb():.2f} GB{gpu}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["momok", "mocme", "rotate"], choices=sorted(SETTINGS))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip the test evaluation")
    p.add_argument("--no-deterministic", dest="deterministic", action="store_false")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    data, source = db15k()
    rng = np.random.default_rng(0)
    raw = {m: rng.standard_normal((data.num_entities, w), dtype=np.float32) for m, w in PUBLISHED_SHAPES.items()}
    print(f"machine: {machine()}")
    print(f"data: {source}; {len(data.train):,} train triples; random features "
          + ", ".join(f"{m} {data.num_entities}x{w}" for m, w in PUBLISHED_SHAPES.items())
          + f"; device {device}; deterministic kernels {args.deterministic}", flush=True)
    for name in args.models:
        bench(name, data, raw, args, device)


if __name__ == "__main__":
    main()
