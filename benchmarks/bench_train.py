#!/usr/bin/env python
"""Training epoch time on DB15K: mmkgbench vs PyKEEN (when installed) with the same settings.

    python benchmarks/bench_train.py [--models tucker rotate] [--epochs 2] [--device auto] [--no-pykeen]

* TuckER: d_e = d_r = 200, dropouts 0.3/0.4/0.5, batch norm, KvsAll (PyKEEN: LCWA) with
  reciprocal relations, BCE with label smoothing 0.1, Adam lr 5e-4, batch 1024 (e, r) queries.
* RotatE: d = 256 complex, 32 uniformly drawn negatives per positive, self-adversarial sigmoid
  loss (alpha 1), Adam lr 1e-4, batch 1024 positives; one epoch = every train triple once
  (mmkgbench corrupts the tail of a randomly oriented triple, PyKEEN the head or the tail).

Each epoch is timed separately; the table shows the fastest one (the first includes warm-up).
PyKEEN is not a dependency: `pip install pykeen` to include it.
"""
from __future__ import annotations

import argparse
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

SETTINGS = {
    "tucker": dict(model=dict(entity_dim=200, relation_dim=200),
                   train=dict(regime="kvsall", lr=5e-4, batch_size=1024, label_smoothing=0.1)),
    "rotate": dict(model=dict(dim=256),
                   train=dict(regime="negative", lr=1e-4, batch_size=1024, num_negatives=32, loss="softplus",
                              adversarial_temperature=1.0)),
}


def ours(name: str, data, epochs: int, device, batch_size: int = 1024, deterministic: bool = False) -> list[float]:
    cls = get_model(name)
    s = SETTINGS[name]
    torch.manual_seed(0)
    model = cls(cls.Config(**s["model"]), ModelInputs(data.num_entities, 2 * data.num_relations),
                torch.Generator().manual_seed(0)).to(device)
    cfg = TrainConfig(**{**cls.train_defaults, **s["train"], "batch_size": batch_size, "max_epochs": epochs,
                         "eval_every": 0})
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        res = train(model, data.train, data.num_relations, data.num_entities, cfg, device=device)
    finally:
        torch.use_deterministic_algorithms(before)
    secs = [row["seconds"] for row in res.history]
    return [b - a for a, b in zip([0.0] + secs[:-1], secs)]


def pykeen_epochs(name: str, data, epochs: int, device, batch_size: int = 1024,
                  slice_size: int | None = None) -> list[float] | None:
    try:
        from pykeen.losses import BCEAfterSigmoidLoss, NSSALoss
        from pykeen.models import RotatE, TuckER
        from pykeen.training import LCWATrainingLoop, SLCWATrainingLoop
        from pykeen.training.callbacks import TrainingCallback
        from pykeen.triples import CoreTriplesFactory
    except ImportError:
        return None

    class Timer(TrainingCallback):
        def __init__(self):
            super().__init__()
            self.stamps = []

        def post_epoch(self, epoch, epoch_loss, **kwargs):
            sync(device)
            self.stamps.append(time.perf_counter())

    s = SETTINGS[name]
    inverse = name == "tucker"
    tf = CoreTriplesFactory.create(mapped_triples=torch.as_tensor(np.array(data.train)),
                                   num_entities=data.num_entities, num_relations=data.num_relations,
                                   create_inverse_triples=inverse)
    torch.manual_seed(0)
    if name == "tucker":
        model = TuckER(triples_factory=tf, embedding_dim=200, relation_dim=200, loss=BCEAfterSigmoidLoss(),
                       random_seed=0).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=s["train"]["lr"])
        loop = LCWATrainingLoop(model=model, triples_factory=tf, optimizer=opt)
        kw = dict(label_smoothing=0.1)
    else:
        model = RotatE(triples_factory=tf, embedding_dim=256, loss=NSSALoss(adversarial_temperature=1.0),
                       random_seed=0).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=s["train"]["lr"])
        loop = SLCWATrainingLoop(model=model, triples_factory=tf, optimizer=opt,
                                 negative_sampler_kwargs=dict(num_negs_per_pos=32))
        kw = {}
    timer = Timer()
    t0 = time.perf_counter()
    loop.train(triples_factory=tf, num_epochs=epochs, batch_size=batch_size, slice_size=slice_size, use_tqdm=False,
               callbacks=[timer], **kw)
    stamps = [t0] + timer.stamps
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tucker", "rotate"], choices=sorted(SETTINGS))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1024, help="for both libraries (default 1024)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-pykeen", action="store_true")
    p.add_argument("--deterministic", action="store_true",
                   help="mmkgbench with deterministic kernels, as `run_bench.py run` uses on the CPU")
    p.add_argument("--only-pykeen", action="store_true", help="skip mmkgbench (e.g. to time PyKEEN alone)")
    p.add_argument("--pykeen-slice", type=int, default=None,
                   help="PyKEEN slice_size (scores candidates in slices; same batch) when a batch of 1024 does not fit")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    data, source = db15k()
    print(f"machine: {machine()}")
    print(f"data: {source}; {len(data.train):,} train triples; device {device}; batch {args.batch_size}; "
          f"{args.epochs} epochs each, "
          "fastest shown (seconds per epoch)")
    for name in args.models:
        mine = [float("nan")] if args.only_pykeen else ours(name, data, args.epochs, device, args.batch_size, args.deterministic)
        print(f"{name:<7} mmkgbench {min(mine):8.2f} s  (epochs: {', '.join(f'{t:.2f}' for t in mine)})", flush=True)
        if not args.no_pykeen:
            theirs = pykeen_epochs(name, data, args.epochs, device, args.batch_size, args.pykeen_slice)
            if theirs is None:
                print(f"{name:<7} PyKEEN: not installed", flush=True)
            else:
                print(f"{name:<7} PyKEEN    {min(theirs):8.2f} s  (epochs: {', '.join(f'{t:.2f}' for t in theirs)})"
                      f"   mmkgbench / PyKEEN = {min(mine) / min(theirs):.2f}", flush=True)


if __name__ == "__main__":
    main()
