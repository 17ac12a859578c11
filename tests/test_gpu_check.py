"""benchmarks/gpu_check.py without a GPU: its measurement runs (on the CPU, tiny data) and its
projection of grid wall times is the arithmetic its docstring states."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks import gpu_check
from benchmarks.common import DB15K_SIZES
from mmkgbench.grid import load_grid
from mmkgbench.ranking import KnownAnswers
from mmkgbench.train import TrainConfig


@pytest.mark.parametrize("name", ["rotate", "momok"])
def test_measure_reports_epoch_eval_and_memory(name, tiny):
    known = KnownAnswers(np.concatenate([tiny.train, tiny.valid, tiny.test]), tiny.num_relations)
    raw = {m: np.array(tiny.features[m]) for m in tiny.modalities}
    import time
    if name == "momok":                 # MoMoK's DB15K preprocessing wants the published widths
        rng = np.random.default_rng(0)
        raw = {m: rng.standard_normal((tiny.num_entities, d), dtype=np.float32)
               for m, d in gpu_check.PUBLISHED_SHAPES.items()}
    out = gpu_check.measure(name, tiny, raw, known, torch.device("cpu"), False, time.perf_counter() + 600)
    assert out["epoch_s"] > 0 and out["eval_s"] > 0 and not out["first_only"] and math.isnan(out["peak_gb"])


def test_projection_is_epochs_times_epoch_time_plus_evaluations():
    t = {"epoch_s": 2.0, "eval_s": 1.0, "peak_gb": 1.0, "first_only": False}
    grid = load_grid("momok-ablation-db15k")
    timings = {("momok", False): t}
    total, missing = gpu_check.project("momok-ablation-db15k", timings, False)
    assert missing == []
    E0, _, n_tr0, n_va0, n_te0 = DB15K_SIZES
    cfg = TrainConfig(max_epochs=2000, eval_every=100)
    per_run = cfg.max_epochs * 2.0 + 20 * (1.0 * n_va0 / n_te0) + 1.0     # DB15K: no scaling
    assert total == pytest.approx(len(grid.cells) * per_run)
    # a model not measured is named, not guessed
    total, missing = gpu_check.project("paper-main", timings, False)
    assert "tucker" in missing and "momok" not in missing and total > 0
