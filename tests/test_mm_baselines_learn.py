"""Learning: each multi-modal baseline of MoMoK's table beats its structure-only counterpart on a sparse
graph with informative features (README "Multi-modal baselines"), on the mean of 3 seeds."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.conftest import best_valid_mrrs

SEEDS = (0, 1, 2)
BUDGET = {"lr": 3e-3, "batch_size": 128, "num_negatives": 32, "max_epochs": 60, "eval_every": 20, "patience": 5,
          "adversarial_temperature": 1.0, "corruption": "bern", "threads": 1}
MARGIN_LOSS = {**BUDGET, "loss": "margin", "margin": 2.0}
SIGMOID_LOSS = {**BUDGET, "loss": "softplus"}
OVERRIDES = {"transe": {"dim": 32, "normalize_entities": True, "normalize_relations": True},
             "rotate": {"dim": 32, "gamma": 4.0}, "vbkgc": {"dim": 32, "gamma": 4.0}, "complex": {"dim": 32}}

# model -> (structure-only counterpart, training, asserted margin on the mean per-seed gap of seeds 0-2).
# Margin = mean - 2 sd / sqrt(3) of the per-seed gaps of seeds 0-4 (a two-sigma lower bound on a
# 3-seed mean), measured on the 2-core machine with this code; every 3-seed subset of seeds 0-4 passes
# (lowest subset means: TBKGC .0073, VBKGC .0063). README "Multi-modal baselines" lists every MRR.
CASES = {
    "ikrl": ("transe", 0.0128),      # gaps seeds 0-4: .0129 .0159 .0156 .0144 .0130; mean .0144, sd .0014
    "tbkgc": ("transe", 0.0031),     # .0162 .0200 .0050 .0139 .0029; mean .0116, sd .0074
    "transae": ("transe", 0.0183),   # .0246 .0320 .0193 .0216 .0225; mean .0240, sd .0049
    "mmkrl": ("transe", 0.0152),     # .0144 .0182 .0247 .0203 .0200; mean .0195, sd .0037
    "qeb": ("transe", 0.0159),       # .0259 .0180 .0227 .0228 .0150; mean .0209, sd .0043
    "rsme": ("complex", 0.0119),     # .0126 .0175 .0166 .0225 .0133; mean .0165, sd .0040
    "vbkgc": ("rotate", 0.0014),     # .0219 .0118 .0158 -.0010 .0080; mean .0113, sd .0086
}


def settings(model: str) -> tuple[dict, dict]:
    train = SIGMOID_LOSS if model in ("rsme", "vbkgc", "complex", "rotate") else MARGIN_LOSS
    return train, OVERRIDES.get(model, {"dim": 32})


@functools.lru_cache(maxsize=None)
def all_mrrs() -> dict:
    """Every training the tests below need, two at a time on two cores (tests.conftest.best_valid_mrrs).
    Each trains at 1 thread, as the measurements did: best_valid_mrr trains outside the runner, which
    is what applies `threads`, and with 2 threads the embedding gradients sum in a varying order (the
    same seed gave IKRL 0.0563 and 0.0627 in two processes; with 1 thread 0.0590 twice)."""
    models = list(CASES) + sorted({c for c, _ in CASES.values()})
    return best_valid_mrrs({(m, s): (m, "synthetic_sparse", *settings(m), s) for m in models for s in SEEDS})


def mrr(model: str, seed: int) -> float:
    return all_mrrs()[(model, seed)]


@pytest.mark.parametrize("model", list(CASES))
def test_features_beat_the_structure_only_counterpart(model):
    counterpart, margin = CASES[model]
    gaps = np.array([mrr(model, s) - mrr(counterpart, s) for s in SEEDS])
    assert gaps.mean() >= margin, (model, counterpart, gaps)
