#!/usr/bin/env python
"""MoMoK's training step against the reference code, alone and beside a competing process.

    python benchmarks/bench_momok_load.py --reference ~/src/MoMoK [--rounds 3] [--steps 2]
                                          [--load none same] [--threads 2]

`--reference` is a clone of https://github.com/zjukg/MoMoK: its `models/RelMoE.py` and
`models/modules.py` are imported at run time (nothing of it is copied here). Both sides train on
DB15K-sized inputs (12,842 entities, 279 relations and their reciprocals; the real DB15K train
queries when ../shared/datasets has them, else random ones): random image (4096) and text (768)
features, which the reference pools to 256 each in its DB15K branch and ours receives pooled the
same way; d = d_r = 256, K = 3, mu = 1e-4, dropouts 0.3/0.4/0.5, batches of 1,024 (e, r) queries
with KvsAll targets smoothed by 0.1, Adam lr 5e-4.

One step is what each side's training loop does per batch: ours is `mmkgbench.train`'s (targets
from the known answers, `kvsall_loss`, backward, Adam, then the CLUB estimator's own step); the
reference's is its train.py lines 127-141 (forward, BCE of the four decisions + mu * CLUB,
backward, Adam, then `train_estimator` and its Adam). Each measurement is a fresh process that
builds its model, takes one warm-up step and times `--steps` steps; rounds alternate ours,
reference, ours, reference. Under `--load same`, each measurement runs beside a second process
taking the same side's steps in a loop (two copies of one program on the machine, the situation
that made our step collapse), started before and stopped after it. Prints per-step min and
median per side and load, and the ratios ours / reference.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

E, R, B = 12842, 279, 1024
# The environment this benchmark was started in, before importing mmkgbench sets OMP_WAIT_POLICY:
# the reference code runs in it.
STARTED_WITH = dict(os.environ)


def queries(seed: int = 0):
    """(e, r, targets) for one batch: B DB15K train queries (or random ones) with smoothed KvsAll targets."""
    import numpy as np
    import torch

    from benchmarks.common import db15k
    from mmkgbench.ranking import KnownAnswers
    data, _ = db15k()
    known = KnownAnswers(data.train, data.num_relations)
    rng = np.random.default_rng(seed)
    keys = known.keys.numpy()[rng.choice(len(known.keys), size=B, replace=False)]
    e, r = torch.from_numpy(keys // (2 * R)), torch.from_numpy(keys % (2 * R))
    return e, r, known


def ours_steps(threads: int):
    import mmkgbench  # noqa: F401  (before torch, as run_bench.py imports it: OpenMP's wait policy)
    import torch

    from mmkgbench.model import ModelInputs
    from mmkgbench.models.momok import MoMoK, MoMoKConfig
    from mmkgbench.train import TrainConfig, kvsall_batch_loss
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    feats = {"image": torch.randn(E, 256, generator=g), "text": torch.randn(E, 256, generator=g)}
    inputs = ModelInputs(E, 2 * R, feats, {m: torch.ones(E, dtype=torch.bool) for m in feats}, "zeros")
    model = MoMoK(MoMoKConfig(), inputs, g)
    cfg = TrainConfig(**{**MoMoK.train_defaults, "max_epochs": 1})
    aux_ids = {id(p) for p in model.auxiliary_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if id(p) not in aux_ids], lr=cfg.lr)
    opt_aux = torch.optim.Adam(model.auxiliary_parameters(), lr=cfg.lr)
    e, r, known = queries()
    q = torch.stack([e, r], 1)
    model.train()

    def step():
        loss = kvsall_batch_loss(model, q, known, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        aux = model.auxiliary_loss(e, r, None)
        opt_aux.zero_grad(set_to_none=True)
        aux.backward()
        opt_aux.step()
    return step


def reference_steps(threads: int, reference: Path):
    import torch

    from benchmarks.check_momok_reference import import_reference
    torch.set_num_threads(threads)
    RelMoE, MIEstimator = import_reference(reference)
    g = torch.Generator().manual_seed(0)
    ns = SimpleNamespace(device="cpu", entity2id=dict.fromkeys(range(E)), relation2id=dict.fromkeys(range(R)),
                         dim=256, r_dim=256, pre_trained=0, dataset="DB15K", n_exp=3,
                         img=torch.randn(E, 4096, generator=g), desp=torch.randn(E, 768, generator=g))
    torch.manual_seed(0)
    model = RelMoE(ns)
    ns.img_dim, ns.txt_dim = model.img_dim, model.txt_dim
    estimator = MIEstimator(ns)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    opt_mi = torch.optim.Adam(estimator.parameters(), lr=5e-4)
    e, r, known = queries()
    idx = torch.stack([e, r], 1)
    rows, cols = known.lookup(e, r)
    y = torch.zeros(B, E)
    y[rows, cols] = 1.0
    y = 0.9 * y + 1.0 / E                     # the reference's loader smooths as TuckER does
    model.train()

    def step():                               # its train.py, lines 127-141
        estimator.eval()
        opt.zero_grad()
        output, embeddings = model(idx)
        loss = model.loss_func(output, y) + 1e-4 * estimator(embeddings)
        loss.backward()
        opt.step()
        estimator.train()
        opt_mi.zero_grad()
        with torch.no_grad():
            emb = model.get_batch_embeddings(idx)
        est = estimator.train_estimator(emb)
        est.backward()
        opt_mi.step()
    return step


def child(args) -> None:
    step = ours_steps(args.threads) if args.side == "ours" else reference_steps(args.threads, args.reference)
    step()                                    # warm-up
    if args.forever:
        while True:
            step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(json.dumps({"times": times, "cpu": time.process_time()}))


def measure(side: str, load: str, args) -> list[float]:
    cmd = [sys.executable, __file__, "--child", side, "--steps", str(args.steps), "--threads", str(args.threads)]
    if args.reference:
        cmd += ["--reference", str(args.reference)]
    # The reference runs in the environment the benchmark was started in (OpenMP's defaults unless
    # the user set them); ours in the same plus --ours-env (mmkgbench itself sets OMP_WAIT_POLICY).
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.ours_env)) if side == "ours" else dict(STARTED_WITH)
    neighbour = None
    if load == "same":
        neighbour = subprocess.Popen(cmd + ["--forever"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(5)                         # let it build its model and start stepping
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])["times"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, help="a clone of github.com/zjukg/MoMoK")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="timed steps per measurement (after one warm-up step)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each side (ours: TrainConfig.threads)")
    p.add_argument("--load", nargs="+", default=["none", "same"], choices=["none", "same"])
    p.add_argument("--sides", nargs="+", default=["ours", "reference"], choices=["ours", "reference"])
    p.add_argument("--ours-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="environment of our processes only (e.g. OMP_WAIT_POLICY=PASSIVE); the reference's is left as is")
    p.add_argument("--child", choices=["ours", "reference"], dest="side", help=argparse.SUPPRESS)
    p.add_argument("--forever", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        return child(args)
    if "reference" in args.sides and not args.reference:
        p.error("--reference is required to time the reference code (or pass --sides ours)")
    from benchmarks.common import machine
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{args.rounds} rounds x {args.steps} timed steps per side and load; {args.threads} threads per process; "
          f"OMP_WAIT_POLICY: ours {dict(os.environ, **dict(kv.split('=', 1) for kv in args.ours_env)).get('OMP_WAIT_POLICY')}, "
          f"reference {STARTED_WITH.get('OMP_WAIT_POLICY')}")
    res = {(s, ld): [] for ld in args.load for s in args.sides}
    for ld in args.load:
        for rnd in range(args.rounds):
            for side in args.sides:
                t = measure(side, ld, args)
                res[side, ld] += t
                print(f"  load={ld:<4} round {rnd + 1} {side:<9} " + ", ".join(f"{x:.2f}" for x in t) + " s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\n{'load':<6} {'side':<10} {'min s/step':>10} {'median':>8}")
    for (side, ld), t in res.items():
        print(f"{ld:<6} {side:<10} {min(t):>10.2f} {statistics.median(t):>8.2f}")
    if set(args.sides) == {"ours", "reference"}:
        for ld in args.load:
            o, r = res["ours", ld], res["reference", ld]
            print(f"ours / reference, load={ld}: {min(o) / min(r):.2f} (minima), "
                  f"{statistics.median(o) / statistics.median(r):.2f} (medians)")


if __name__ == "__main__":
    main()
