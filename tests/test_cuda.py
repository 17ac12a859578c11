"""The CUDA path: every registered model ranks on the GPU as on the CPU, bf16 autocast trains and
still ranks in float32, and a grid runs end to end on `--device cuda`. Skipped without a CUDA
device (CI has none); benchmarks/gpu_check.sh runs this file first on a GPU machine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmkgbench.evaluate import EvalConfig, evaluate
from mmkgbench.grid import grid_from_dict
from mmkgbench.models import MODELS
from mmkgbench.ranking import KnownAnswers
from mmkgbench.results import check_run, load_rows, runs_dir
from mmkgbench.runner import run_grid
from mmkgbench.train import TrainConfig, train
from tests.test_models import build

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA = torch.device("cuda")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gpu_scores_and_ranks_match_the_cpu(name, tiny):
    """The same weights on both devices: scores agree to float32 rounding (TF32 off), and so do the
    filtered ranks wherever no two candidates are closer than that rounding."""
    torch.backends.cuda.matmul.allow_tf32 = False
    model = build(name, tiny).eval()
    R = tiny.num_relations
    every = np.concatenate([tiny.train, tiny.valid, tiny.test])
    known, known_gpu = KnownAnswers(every, R), KnownAnswers(every, R).to(CUDA)     # .to moves in place
    h = torch.from_numpy(np.array(tiny.test[:, 0]))
    r = torch.from_numpy(np.array(tiny.test[:, 1]))
    with torch.no_grad():
        cpu = model.score_t(h, r).float()
        gpu = model.to(CUDA).score_t(h.to(CUDA), r.to(CUDA)).float().cpu()
    assert torch.allclose(cpu, gpu, rtol=1e-4, atol=1e-4), f"{name}: max |cpu - gpu| = {(cpu - gpu).abs().max()}"
    ev_gpu = evaluate(model, tiny.test, known_gpu, num_relations=R, device=CUDA)
    ev_cpu = evaluate(model.cpu(), tiny.test, known, num_relations=R)
    gap = (ev_cpu.per_query["rank_real"] - ev_gpu.per_query["rank_real"]).abs()
    assert (gap <= 0.5).mean() >= 0.98, f"{name}: {(gap > 0.5).sum()} queries rank differently"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bf16_autocast_trains_and_ranks_in_float32(name, tiny):
    model = build(name, tiny).to(CUDA)
    cls = MODELS[name]
    cfg = TrainConfig(**{**cls.train_defaults, "max_epochs": 2, "eval_every": 1, "batch_size": 32,
                         "num_negatives": 4, "amp": True})
    R = tiny.num_relations
    known = KnownAnswers(np.concatenate([tiny.train, tiny.valid]), R).to(CUDA)
    res = train(model, tiny.train, R, tiny.num_entities, cfg, valid_triples=tiny.valid, known_valid=known,
                device=CUDA)
    assert all(np.isfinite(row["loss"]) for row in res.history) and res.best_valid
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ev = evaluate(model, tiny.valid, known, num_relations=R, device=CUDA, cfg=EvalConfig())
    ranks = ev.per_query[["rank_opt", "rank_pess"]].to_numpy()
    assert (ranks >= 1).all() and (ranks[:, 0] <= ranks[:, 1]).all()


def test_a_grid_runs_on_cuda_and_says_so(tmp_path):
    grid = grid_from_dict({"models": ["tucker", "rotate"], "datasets": ["synthetic_tiny"], "seeds": [0],
                           "train": {"max_epochs": 2, "eval_every": 1, "batch_size": 64, "num_negatives": 4},
                           "overrides": {"tucker": {"entity_dim": 8, "relation_dim": 4}, "rotate": {"dim": 4}}})
    out = run_grid(grid, tmp_path, device=CUDA, progress=False, log=lambda *_: None)
    assert not out["failed"] and len(out["done"]) == 2
    rows = load_rows(tmp_path)
    assert rows["device"].str.startswith("cuda:").all()
    assert all(check_run(runs_dir(tmp_path) / rid) == [] for rid in out["done"])
