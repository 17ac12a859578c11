#!/usr/bin/env python
"""Where a MoCME training step goes on DB15K-sized inputs, phase by phase, next to RotatE's step.

    python benchmarks/profile_mocme.py [mocme|rotate]

Same inputs and settings as `bench_mmkgc.py` (real DB15K triples, random 12842 x 4096 image and
12842 x 768 text features, d = 256, gamma 12, 128 negatives, alpha 2, batch 1024). Runs the
training step by hand, timing each phase (the loop in mmkgbench.train does the same work in this
order), and prints the mean of steps 2-4.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.common import db15k, machine  # noqa: E402
from mmkgbench.model import ModelInputs  # noqa: E402
from mmkgbench.models import get_model  # noqa: E402
from mmkgbench.samplers import build_sampler  # noqa: E402
from mmkgbench.train import TrainConfig, negative_batches  # noqa: E402


def main(name: str = "mocme", steps: int = 4):
    data, source = db15k()
    E = data.num_entities
    rng = np.random.default_rng(0)
    feats = {"image": torch.from_numpy(rng.standard_normal((E, 4096), dtype=np.float32)),
             "text": torch.from_numpy(rng.standard_normal((E, 768), dtype=np.float32))}
    cls = get_model(name)
    wanted = feats if name == "mocme" else {}
    inputs = ModelInputs(E, 2 * data.num_relations, wanted, {m: torch.ones(E, dtype=torch.bool) for m in wanted})
    torch.manual_seed(0)
    model = cls(cls.Config(dim=256, gamma=12.0), inputs, torch.Generator().manual_seed(0))
    cfg = TrainConfig(**{**cls.train_defaults, "lr": 1e-4, "batch_size": 1024, "num_negatives": 128,
                         "adversarial_temperature": 2.0})
    egns = build_sampler(cfg.sampler, cfg.sampler_options, data.train, data.num_relations, E, cfg.num_negatives)
    batches = negative_batches(torch.from_numpy(np.array(data.train, dtype=np.int64)), data.num_relations, E, cfg,
                                torch.Generator().manual_seed(0), "cpu", sampler=egns)
    aux = {id(p) for p in model.auxiliary_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if id(p) not in aux], lr=cfg.lr)
    aux_opt = torch.optim.Adam(model.auxiliary_parameters(), lr=cfg.lr) if aux else None
    model.train()
    print(f"machine: {machine()}\ndata: {source}; {name}, one step = 1024 positives x 128 negatives")
    total: dict[str, float] = {}
    for step in range(steps):
        hrt, neg = next(batches)
        h, r, t = hrt[:, 0], hrt[:, 1], hrt[:, 2]
        times, t0 = {}, time.perf_counter()

        def lap(key):
            nonlocal t0
            times[key] = time.perf_counter() - t0
            t0 = time.perf_counter()
        if name == "mocme":
            B = len(h)
            ids, inv = torch.unique(torch.cat([h, t, neg.reshape(-1)]), return_inverse=True)
            views = model._views(ids)
            lap("encoders + experts (all entities of the step)")
            ent = model.fuse(views)[0]
            lap("MI-weighted fusion")
            q = model._rotated(ent[inv[:B]], r)
            pos = model.cfg.gamma - model._distance(q, ent[inv[B:2 * B]])
            ng = model.cfg.gamma - model._distance(q[:, None], ent[inv[2 * B:]].view(B, -1, ent.shape[1]))
        else:
            pos, ng = model.negative_scores(h, r, t, neg)
        lap("RotatE scores (1024 + 1024 x 128)")
        w = torch.softmax(cfg.adversarial_temperature * ng.detach(), 1)
        w = egns.weights(ng.detach(), w)
        loss = 0.5 * (F.softplus(-pos).mean() + (w * F.softplus(ng)).sum(1).mean()) \
            + model.penalty(h, r, torch.cat([t[:, None], neg], 1))
        lap("loss (+ EGNS types)")
        opt.zero_grad()
        loss.backward()
        lap("backward")
        opt.step()
        lap("Adam step")
        if aux_opt is not None:
            aux_loss = model.auxiliary_loss(h, r)
            aux_opt.zero_grad()
            aux_loss.backward()
            aux_opt.step()
            lap("MINE step (own Adam)")
        if step > 0:
            for k, v in times.items():
                total[k] = total.get(k, 0.0) + v / (steps - 1)
    for k, v in total.items():
        print(f"  {k:<48} {v:6.3f} s")
    print(f"  {'total':<48} {sum(total.values()):6.3f} s")


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["mocme"]))
