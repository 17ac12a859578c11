#!/usr/bin/env python
"""Training epoch time: mmkgbench against PyKEEN (when installed), same data and settings, interleaved.

    python benchmarks/bench_train.py [--models transe distmult complex rotate pairre tucker]
                                     [--fraction 0.1] [--tucker-fraction 0.03] [--rounds 3]
                                     [--no-pykeen] [--default-kernels]

Data: a seeded random `fraction` of the DB15K train triples (all 12,842 entities as candidates;
random triples of DB15K's sizes where ../shared/datasets is absent), so that a round of every model
fits in minutes; an "epoch" is one pass over that subset. Each run trains two epochs and keeps the
faster (the first includes warm-up); runs alternate mmkgbench, PyKEEN, mmkgbench, PyKEEN, ... so
that load on a shared machine hits both alike; min and median over `rounds` and their ratios are
printed. mmkgbench trains with deterministic kernels, as `run_bench.py run` does on the CPU
(`--default-kernels` to drop them).

Settings, the same on both sides (mmkgbench's defaults for the model; PyKEEN told to match):
* TransE, DistMult, ComplEx, RotatE, PairRE: d = 250 (complex dims for ComplEx and RotatE),
  128 uniformly drawn negatives per positive, self-adversarial loss (temperature 2, PyKEEN's
  NSSALoss, margin gamma = 12 for the distance models), Adam lr 1e-4, batch 1,024 positives.
  PyKEEN's extras that mmkgbench's models do not have are switched off: TransE's and DistMult's
  entity normalisation after each step (entity_constrainer=None); DistMult's and ComplEx's L2
  regulariser becomes mmkgbench's L3 penalty (LpRegularizer p = 3, weight 1e-6). PyKEEN's RotatE
  keeps its relation constrainer (unit modulus; mmkgbench parametrises phases) and PairRE its
  entity normaliser (both normalise entities).
* TuckER: d_e = d_r = 200, dropouts 0.3/0.4/0.5, batch norm, KvsAll (PyKEEN: LCWA) with reciprocal
  relations, BCE with label smoothing 0.1, Adam lr 5e-4, batch 256 (PyKEEN's LCWA backward
  allocates B x d x E floats: 10.5 GB at batch 1,024 on DB15K, docs/performance.md).
mmkgbench corrupts the tail of a randomly oriented triple, PyKEEN the head or the tail; the work
per batch is the same. PyKEEN is not a dependency: `pip install pykeen` to include it.
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

from benchmarks.common import db15k, machine, sync  # noqa: E402
from mmkgbench.model import ModelInputs  # noqa: E402
from mmkgbench.models import get_model  # noqa: E402
from mmkgbench.train import TrainConfig, train  # noqa: E402

NEGATIVE = ("transe", "distmult", "complex", "rotate", "pairre")
TUCKER_BATCH = 256


def ours(name: str, triples, data, device, deterministic: bool, negatives: int = 128, dim: int = 250) -> list[float]:
    cls = get_model(name)
    torch.manual_seed(0)
    model = cls(cls.Config() if name == "tucker" else cls.Config(dim=dim), ModelInputs(data.num_entities, 2 * data.num_relations),
                torch.Generator().manual_seed(0)).to(device)
    extra = {"batch_size": TUCKER_BATCH} if name == "tucker" else {"num_negatives": negatives}
    cfg = TrainConfig(**{**cls.train_defaults, **extra, "max_epochs": 2, "eval_every": 0})
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        res = train(model, triples, data.num_relations, data.num_entities, cfg, device=device)
    finally:
        torch.use_deterministic_algorithms(before)
    secs = [row["seconds"] for row in res.history]
    return [b - a for a, b in zip([0.0] + secs[:-1], secs)]


def pykeen_available() -> bool:
    try:
        import pykeen.models  # noqa: F401
    except ImportError:
        return False
    return True


def theirs(name: str, triples, data, device, negatives: int = 128, dim: int = 250) -> list[float]:
    from pykeen import models
    from pykeen.losses import BCEAfterSigmoidLoss, NSSALoss
    from pykeen.regularizers import LpRegularizer
    from pykeen.training import LCWATrainingLoop, SLCWATrainingLoop
    from pykeen.training.callbacks import TrainingCallback
    from pykeen.triples import CoreTriplesFactory

    class Timer(TrainingCallback):
        def __init__(self):
            super().__init__()
            self.stamps = []

        def post_epoch(self, epoch, epoch_loss, **kwargs):
            sync(device)
            self.stamps.append(time.perf_counter())

    tf = CoreTriplesFactory.create(mapped_triples=torch.as_tensor(np.asarray(triples)),
                                   num_entities=data.num_entities, num_relations=data.num_relations,
                                   create_inverse_triples=name == "tucker")
    torch.manual_seed(0)
    l3 = dict(regularizer=LpRegularizer, regularizer_kwargs=dict(p=3.0, weight=1e-6))
    nssa = NSSALoss(adversarial_temperature=2.0, margin=12.0)
    if name == "tucker":
        model = models.TuckER(triples_factory=tf, embedding_dim=200, relation_dim=200, loss=BCEAfterSigmoidLoss(),
                              random_seed=0)
    else:
        kw = {"transe": dict(model=models.TransE, scoring_fct_norm=1, entity_constrainer=None),
              "distmult": dict(model=models.DistMult, entity_constrainer=None, **l3),
              "complex": dict(model=models.ComplEx, **l3),
              "rotate": dict(model=models.RotatE),
              "pairre": dict(model=models.PairRE, p=1)}[name]
        cls = kw.pop("model")
        model = cls(triples_factory=tf, embedding_dim=dim, loss=nssa, random_seed=0, **kw)
    model = model.to(device)
    if name == "tucker":
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)
        loop = LCWATrainingLoop(model=model, triples_factory=tf, optimizer=opt)
        fit = dict(batch_size=TUCKER_BATCH, label_smoothing=0.1)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        loop = SLCWATrainingLoop(model=model, triples_factory=tf, optimizer=opt,
                                 negative_sampler_kwargs=dict(num_negs_per_pos=negatives))
        fit = dict(batch_size=1024)
    timer = Timer()
    t0 = time.perf_counter()
    loop.train(triples_factory=tf, num_epochs=2, use_tqdm=False, callbacks=[timer], **fit)
    stamps = [t0] + timer.stamps
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=[*NEGATIVE, "tucker"], choices=[*NEGATIVE, "tucker"])
    p.add_argument("--fraction", type=float, default=0.1, help="share of DB15K's train triples per epoch")
    p.add_argument("--tucker-fraction", type=float, default=0.03, help="the same for TuckER (PyKEEN's is slow)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--negatives", type=int, default=128, help="negatives per positive (sLCWA models; default 128)")
    p.add_argument("--dim", type=int, default=250, help="embedding dim of the sLCWA models (default 250)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-pykeen", action="store_true")
    p.add_argument("--default-kernels", action="store_true", help="mmkgbench without deterministic kernels")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    data, source = db15k()
    peer = not args.no_pykeen and pykeen_available()
    print(f"machine: {machine()}")
    print(f"data: {source}; device {device}; {args.rounds} interleaved rounds; fastest of 2 epochs per run; "
          f"PyKEEN {'included' if peer else 'not installed' if not args.no_pykeen else 'skipped'}")
    rng = np.random.default_rng(0)
    for name in args.models:
        frac = args.tucker_fraction if name == "tucker" else args.fraction
        triples = data.train[np.sort(rng.choice(len(data.train), size=int(frac * len(data.train)), replace=False))]
        mine, peers = [], []
        for _ in range(args.rounds):
            mine.append(min(ours(name, triples, data, device, not args.default_kernels, args.negatives, args.dim)))
            if peer:
                peers.append(min(theirs(name, triples, data, device, args.negatives, args.dim)))
        line = (f"{name:<9} {len(triples):,} triples{'' if name == 'tucker' else f', {args.negatives} negatives, d {args.dim}'}  mmkgbench min {min(mine):7.2f} s  median {statistics.median(mine):7.2f} s")
        if peer:
            line += (f"   PyKEEN min {min(peers):7.2f} s  median {statistics.median(peers):7.2f} s   "
                     f"ratio mmkgbench / PyKEEN: {min(mine) / min(peers):.2f} (minima), "
                     f"{statistics.median(mine) / statistics.median(peers):.2f} (medians)")
        print(line, flush=True)


if __name__ == "__main__":
    main()
