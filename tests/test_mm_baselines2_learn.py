"""Learning: AdaMF, IMF, MoSE and OTKGE each beat their structure-only counterpart on a sparse graph with
informative features, on the mean of 3 seeds (README "Multi-modal baselines, part 2"). NativE does not
clear that bar on this graph (README gives its five seeds); it is not asserted here."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.conftest import best_valid_mrrs

SEEDS = (0, 1, 2)
NEGATIVE = {"lr": 3e-3, "batch_size": 128, "num_negatives": 32, "max_epochs": 60, "eval_every": 20, "patience": 5,
            "adversarial_temperature": 1.0, "corruption": "bern", "threads": 1, "loss": "softplus"}
BCE = {"lr": 1e-2, "batch_size": 128, "eval_every": 10, "patience": 3, "max_epochs": 100, "label_smoothing": 0.0,
       "threads": 1}
CE = {"regime": "kvsall", "loss": "ce", "optimizer": "adagrad", "lr": 0.1, "batch_size": 128, "eval_every": 10,
      "patience": 3, "max_epochs": 100, "label_smoothing": 0.0, "threads": 1}
SETTINGS = {
    "rotate": (NEGATIVE, {"dim": 32, "gamma": 4.0}),
    "adamf": (NEGATIVE, {"dim": 32, "gamma": 4.0}),
    "tucker": (BCE, {"entity_dim": 32, "relation_dim": 16, "input_dropout": 0.0, "hidden_dropout1": 0.0,
                     "hidden_dropout2": 0.0}),
    "imf": (BCE, {"dim": 32, "relation_dim": 16, "input_dropout": 0.0, "hidden_dropout": 0.0, "output_dropout": 0.0,
                  "fusion_dropout": 0.0}),
    # ComplEx as kbc trains it, with MoSE's and OTKGE's init scale and N3 weight
    "complex": (CE, {"dim": 32, "init_std": 1e-3, "l3": 0.01}),
    "mose": (CE, {"dim": 32, "n3": 0.01}),
    # kappa 10: at the code's 300 the transport part of W (columns summing to kappa) swamps these
    # features and OTKGE does not learn (valid MRR 0.0105 0.0091 0.0107, seeds 0-2; README)
    "otkge": (CE, {"dim": 32, "n3": 0.01, "kappa": 10.0}),
}

# model -> (counterpart, asserted margin on the mean per-seed gap of seeds 0-2). Margin = mean - 2 sd / sqrt(3)
# of the per-seed gaps of seeds 0-4 (a two-sigma lower bound on a 3-seed mean), measured on the 2-core
# machine with this code at 1 thread; every 3-seed subset of seeds 0-4 passes (lowest subset means:
# AdaMF .0144, IMF .0372, MoSE .0729, OTKGE .0313). README lists every MRR.
CASES = {
    "adamf": ("rotate", 0.0073),     # gaps seeds 0-4: .0401 .0176 .0314 .0045 .0211; mean .0229, sd .0136
    "imf": ("tucker", 0.0322),       # .0327 .0467 .0420 .0571 .0370; mean .0431, sd .0094
    "mose": ("complex", 0.0684),     # .0703 .0685 .0874 .0799 .0834; mean .0779, sd .0082
    "otkge": ("complex", 0.0228),    # .0340 .0178 .0497 .0420 .0561; mean .0399, sd .0149
}


@functools.lru_cache(maxsize=None)
def all_mrrs() -> dict:
    """Every training the tests below need, two at a time on two cores (tests.conftest.best_valid_mrrs:
    1 thread each, as measured), the slowest (AdaMF's) first."""
    models = list(CASES) + sorted({c for c, _ in CASES.values()})
    return best_valid_mrrs({(m, s): (m, "synthetic_sparse", *SETTINGS[m], s) for m in models for s in SEEDS})


def mrr(model: str, seed: int) -> float:
    return all_mrrs()[(model, seed)]


@pytest.mark.parametrize("model", list(CASES))
def test_features_beat_the_structure_only_counterpart(model):
    counterpart, margin = CASES[model]
    gaps = np.array([mrr(model, s) - mrr(counterpart, s) for s in SEEDS])
    assert gaps.mean() >= margin, (model, counterpart, gaps)
