#!/usr/bin/env python
"""The multi-modal baselines of MoMoK's table beside TransE and RotatE on DB15K-sized inputs: seconds
per training batch, the epoch it projects to, and peak memory, measured interleaved.

    python benchmarks/bench_mm_baselines.py [--models ...] [--rounds 2] [--steps 3]

Inputs: the real DB15K triples (random ones of the same sizes when ../shared/datasets is absent) and
random features of the published shapes, image 12842 x 4096 and text 12842 x 768 (no pooling: the
baselines project raw features). Every model gets the same negatives and batch: 1024 positives, 128
negatives each, Bernoulli corruption, the self-adversarial sigmoid loss (alpha 2), Adam lr 1e-4
(the margin loss costs the same), and d = 250 (complex dims for RotatE, RSME and VBKGC's RotatE).
AdaMF and NativE add their generator step (the training loop's auxiliary hook) to every batch. The
1-N models (TuckER, IMF, MoSE, OTKGE) train KvsAll as they do by default, batches of 1024 (e, r)
queries with their own loss and optimiser, lr 1e-4, and are compared with TuckER (d 250 too).
`otkge@warm` is OTKGE with `warm_start = true`. `MODEL+SAMPLER` (e.g. `transe+mmrns`, `ikrl+mans`)
trains the model with that negative sampler of mmkgbench.samplers at its defaults (MMRNS with its
1500-candidate pool, reading the same random image and text features); `--options` sets a sampler's
options as JSON, e.g. '{"pool": 256}'. `vista` (not in the default list: about 30 s a batch on 2 cores)
keeps the authors' sizes (its config defaults: d 256, layers 2 / 1 / 2, 4 heads, feed-forward 2048)
and their batch of 512 (e, r) queries under its KvsAll cross-entropy, so its ratio to TuckER compares
batches of different sizes; its epoch projection counts batches of 512.

Each measurement is a fresh process (`--one NAME`) that builds the model and times `--steps`
batches of the harness's own loop (mmkgbench.train.train on the first (steps + 1) x 1024 train
triples, the first batch as warm-up); it prints seconds per batch, the epoch they project to (x 78
batches of DB15K's 79,222 train triples; projected, not a timed epoch) and the process's peak
resident memory (ru_maxrss: data, features and model included). The driver runs the models in
rounds, A B C ... A B C ..., so load on a shared machine falls on all of them alike, and reports the
min and median over rounds and each model's ratio to TransE (a MODEL+SAMPLER name: to MODEL, when
it is measured in the same run).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ["transe", "rotate", "ikrl", "tbkgc", "transae", "mmkrl", "rsme", "vbkgc", "qeb", "adamf", "native",
          "tucker", "imf", "mose", "otkge"]
PUBLISHED_SHAPES = {"image": 4096, "text": 768}
TRAIN = dict(regime="negative", lr=1e-4, batch_size=1024, num_negatives=128, loss="softplus",
             adversarial_temperature=2.0, corruption="bern", eval_every=0, max_epochs=1)
KVSALL = dict(regime="kvsall", lr=1e-4, batch_size=1024, eval_every=0, max_epochs=1)
SIZES = {"tucker": {"entity_dim": 250, "relation_dim": 250}, "imf": {"dim": 250, "relation_dim": 250},
         "vista": {}}                                   # the authors' sizes: VISTA's config defaults
OWN_TRAIN = {"vista": {"batch_size": 512}}             # the authors' batch (VISTA's train.py)


def one(name: str, steps: int, options: dict | None = None) -> dict:
    import numpy as np
    import torch

    from benchmarks.common import db15k
    from mmkgbench.model import ModelInputs
    from mmkgbench.models import get_model
    from mmkgbench.ranking import KnownAnswers
    from mmkgbench.train import TrainConfig, train

    data, source = db15k()
    E = data.num_entities
    label = name
    name, _, sampler = name.partition("+")       # "transe+mmrns": TransE trained with the MMRNS sampler
    name, _, variant = name.partition("@")       # "otkge@warm": OTKGE with warm-started Sinkhorn
    cls = get_model(name)
    rng = np.random.default_rng(0)
    feats = {m: torch.from_numpy(rng.standard_normal((E, w), dtype=np.float32)) for m, w in PUBLISHED_SHAPES.items()}
    reads = bool(cls.modalities)
    inputs = ModelInputs(E, 2 * data.num_relations, feats if reads else {},
                         {m: torch.ones(E, dtype=torch.bool) for m in feats} if reads else {}, "zeros")
    torch.manual_seed(0)
    extra = {"warm_start": True} if variant == "warm" else {}
    model = cls(cls.Config(**SIZES.get(name, {"dim": 250}), **extra), inputs, torch.Generator().manual_seed(0))
    kvsall = cls.train_defaults.get("regime", "kvsall") == "kvsall"
    own = OWN_TRAIN.get(name, {})
    cfg = TrainConfig(**{**cls.train_defaults, **(KVSALL if kvsall else TRAIN), **own,
                         **({"sampler": sampler, "sampler_options": options or {}} if sampler else {})})
    samples = ModelInputs(E, 2 * data.num_relations, feats, {m: torch.ones(E, dtype=torch.bool) for m in feats}, "zeros")
    batch = cfg.batch_size

    def batches(triples):      # KvsAll: one batch per 1024 distinct (e, r) queries, reciprocals included
        return math.ceil((len(KnownAnswers(triples, data.num_relations).keys) if kvsall else len(triples)) / batch)
    # KvsAll batches hold queries: about 2 per triple, so half as many triples make `steps` batches
    span = batch // 2 if kvsall else batch
    warm = train(model, data.train[:span], data.num_relations, E, cfg, seed=0, sampler_inputs=samples)   # warm-up
    timed = data.train[span:span * (steps + 1)]
    res = train(model, timed, data.num_relations, E, cfg, seed=1, sampler_inputs=samples)
    per_batch = res.seconds / batches(timed)
    n_batches = batches(data.train)
    return {"model": label, "per_batch_s": per_batch, "epoch_s_projected": per_batch * n_batches,
            "batches_per_epoch": n_batches, "warmup_s": warm.seconds, "source": source,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
            "threads": torch.get_num_threads()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--options", default="{}", help="a sampler's options as JSON, for MODEL+SAMPLER names")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.steps, json.loads(args.options))), flush=True)
        return
    from benchmarks.common import machine
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    got: dict[str, list[dict]] = {m: [] for m in args.models}
    for r in range(args.rounds):
        for name in args.models:
            out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps),
                                  "--options", args.options],
                                 capture_output=True, text=True, check=True)
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            got[name].append(rec)
            print(f"round {r + 1} {name}: {rec['per_batch_s']:.2f} s per batch, peak RSS {rec['peak_rss_gb']:.2f} GB",
                  flush=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}; data {got[args.models[0]][0]['source']}")
    print("| model | s per batch (min / median) | projected epoch (min) | × TransE or × TuckER (1-N) (min / median) "
          "| peak RSS |")
    print("|---|---|---|---|---|")
    from mmkgbench.models import get_model
    for name, recs in got.items():
        t = [x["per_batch_s"] for x in recs]
        ratio = ""
        one_to_n = get_model(name.partition("+")[0].partition("@")[0]).train_defaults.get("regime", "kvsall") == "kvsall"
        base = got.get("tucker" if one_to_n else "transe")
        if "+" in name and name.partition("+")[0] in got:      # a sampler: against its model's uniform sampler
            base = got[name.partition("+")[0]]
        if base:
            rs = [a["per_batch_s"] / b["per_batch_s"] for a, b in zip(recs, base)]   # same round: interleaved pairs
            ratio = f"{min(rs):.2f} / {statistics.median(rs):.2f}"
        print(f"| {name} | {min(t):.2f} / {statistics.median(t):.2f} | {min(t) * recs[0]['batches_per_epoch']:.0f} s "
              f"| {ratio} | {max(x['peak_rss_gb'] for x in recs):.2f} GB |")


if __name__ == "__main__":
    main()
