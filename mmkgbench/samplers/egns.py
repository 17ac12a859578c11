"""EGNS: entropy-guided negative sampling (Li 2025, arXiv:2507.20620, MoCME §3.4).

The paper sorts negatives by the binary entropy of their predicted probability into easy, ambiguous
and hard ones (thresholds δ1 = 0.2, δ2 = 0.8) and weighs them λ_easy < λ_amb < λ_hard. No code is
public; our reading (methods.md §2.3, every gap a config field): p = sigmoid(f(neg)) from the
detached score, H = binary entropy / ln 2 in [0, 1]; easy when H < δ1 and p < 0.5 (confidently
negative), hard when H > δ2 (the model cannot tell), ambiguous otherwise (confident "negatives" that
may be false ones included). The loop's weights (self-adversarial or uniform) are multiplied by λ of
each negative's type and renormalised per positive. Tails are drawn uniformly, as MoCME's were.

Until this registry existed EGNS lived inside MoCME (`negative_weights`); moved here it gives MoCME the
same numbers (tests/test_samplers.py replays histories recorded at commit 2c864e9) and can weigh
any negative-sampling model's negatives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from mmkgbench.ranges import check_config
from mmkgbench.samplers.base import NegativeSampler

EASY, AMBIGUOUS, HARD = 0, 1, 2


@dataclass(frozen=True)
class EGNSConfig:
    delta1: float = 0.2               # entropy below: easy (if p < 0.5) [paper]
    delta2: float = 0.8               # entropy above: hard [paper]
    lambda_easy: float = 0.5          # [choice; paper: easy < ambiguous < hard]
    lambda_ambiguous: float = 1.0
    lambda_hard: float = 2.0
    filter: bool = False

    ranges: ClassVar[dict] = {"delta1": "[0, 1]", "delta2": "[0, 1]", "lambda_easy": "(0, inf)",
                              "lambda_ambiguous": "(0, inf)", "lambda_hard": "(0, inf)", "filter": None}

    def __post_init__(self):
        check_config(self)
        if self.delta1 > self.delta2:
            raise ValueError(f"EGNSConfig: need delta1 <= delta2, got {self.delta1} > {self.delta2}")


def entropy_types(neg: Tensor, delta1: float, delta2: float) -> Tensor:
    """Type of each negative from its score (any shape): 0 easy, 1 ambiguous, 2 hard (int64)."""
    p = torch.sigmoid(neg.float())
    h = -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)) / math.log(2.0)      # binary entropy in [0, 1]
    types = torch.full_like(p, AMBIGUOUS, dtype=torch.long)
    types[(h < delta1) & (p < 0.5)] = EASY
    types[h > delta2] = HARD
    return types


class EGNS(NegativeSampler):
    """Uniform tails; weights = loop weights x lambda of the entropy type, rows renormalised."""

    Config = EGNSConfig
    reference = "Li 2025 (MoCME), entropy-guided negative sampling"

    def types(self, neg: Tensor) -> Tensor:
        return entropy_types(neg, self.cfg.delta1, self.cfg.delta2)

    def weights(self, neg: Tensor, w: Tensor) -> Tensor:
        lam = torch.tensor([self.cfg.lambda_easy, self.cfg.lambda_ambiguous, self.cfg.lambda_hard],
                           device=w.device, dtype=w.dtype)
        out = w * lam[self.types(neg)]
        return out / out.sum(1, keepdim=True)
