"""The classic samplers: uniform tails, Bernoulli orientation, self-adversarial weights.

Shapes: hrt (B, 3) oriented positives, negatives (B, k), scores (B, k). See mmkgbench.samplers.base.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from mmkgbench.ranges import check_config
from mmkgbench.samplers.base import NegativeSampler


@dataclass(frozen=True)
class UniformConfig:
    filter: bool = False        # redraw negatives that are known train answers (NATIVE's sampler does)

    ranges: ClassVar[dict] = {"filter": None}

    def __post_init__(self):
        check_config(self)


class Uniform(NegativeSampler):
    """k tails uniform over all E entities (Bordes et al. 2013), unfiltered unless `filter`; the
    positive's orientation is the run's `corruption` (50/50 or Bernoulli)."""

    Config = UniformConfig
    reference = "Bordes et al. 2013 (TransE)"


class Bernoulli(NegativeSampler):
    """Uniform tails with every positive oriented by Wang et al.'s (AAAI 2014) Bernoulli rule: the head
    is corrupted with probability tph_r / (tph_r + hpt_r) (mmkgbench.train.head_corruption_probability).
    The same training as `sampler = "uniform"` with `corruption = "bern"` (tests/test_samplers.py)."""

    Config = UniformConfig
    orientation = "bern"
    reference = "Wang et al. 2014 (TransH), Bernoulli corruption"


@dataclass(frozen=True)
class SelfAdversarialConfig:
    temperature: float = 1.0    # alpha of Sun et al. 2019 (RotatE code default 1.0; NativE scripts 2.0)
    filter: bool = False

    ranges: ClassVar[dict] = {"temperature": "(0, inf)", "filter": None}

    def __post_init__(self):
        check_config(self)


class SelfAdversarial(NegativeSampler):
    """Uniform tails weighed by p(t' | h, r) = softmax_j(alpha f(h, r, t'_j)) over the k negatives,
    computed from detached scores (Sun et al. 2019, Eq. 5: the weights form of sampling from that
    distribution). The weights are the sampler's, so the run's `adversarial_temperature` must be 0
    under it (mmkgbench.train checks): one alpha, stated once."""

    Config = SelfAdversarialConfig
    reference = "Sun et al. 2019 (RotatE), self-adversarial negative sampling"

    def weights(self, neg: Tensor, w: Tensor) -> Tensor:
        return torch.softmax(self.cfg.temperature * neg, dim=1)
