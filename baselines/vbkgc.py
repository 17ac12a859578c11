"""VBKGC (Zhang et al. 2022, "Knowledge Graph Completion with Pre-trained Multimodal Transformer and
Twins Negative Sampling", arXiv:2209.07084), as zjukg/NATIVE's VBRotatE / VBTransE
(`mmkgc/module/model/VBRotatE.py`, `VBTransE.py`; docs/reference/native-mm-baselines.md §6).

Entities have a structural vector s_e and a feature vector i_e = P(x_e) of the same width (x_e all
modalities concatenated, frozen; P trained). The energy sums IKRL's four combinations with the
chosen kernel,

    D = K(s_h, r, s_t) + K(i_h, r, i_t) + K(i_h, r, s_t) + K(s_h, r, i_t),   score gamma - D,

kernel "rotate" (VBRotatE, the default: K = sum_k |a_k e^{i theta_rk} - b_k| over d complex dims,
vectors [re; im] of width 2d) or "l1" (VBTransE: L1 distance of L2-normalised vectors, as IKRL).
NATIVE's classes cannot run as written (their forward needs a batch size its sampler never passes,
§6c); this is the scoring they define. Not implemented: the paper's VisualBERT feature extraction
(the features are inputs here) and its twins negative sampling (README "Training differences").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mmkgbench.model import NEGATIVE_SAMPLING_DEFAULTS, KGEModel, ModelInputs, init_
from mmkgbench.multimodal import FeatureEncoder, energy_all, energy_hrt, phase_of, uniform_range
from mmkgbench.ranges import check_config


@dataclass(frozen=True)
class VBKGCConfig:
    dim: int = 250                     # as our RotatE [choice]: complex dims for "rotate", real for "l1"
    kernel: str = "rotate"             # "rotate" (VBRotatE) | "l1" (VBTransE)
    gamma: float = 6.0                 # NATIVE VBRotatE default
    epsilon: float = 2.0               # NATIVE VBRotatE default: init range (gamma + epsilon) / d
    trainable_features: bool = False   # NATIVE freezes the feature table (from_pretrained)

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "kernel": ("rotate", "l1"), "gamma": "(0, inf)",
                              "epsilon": "[0, inf)", "trainable_features": None}

    def __post_init__(self):
        check_config(self)


class VBKGC(KGEModel):
    """VBKGC (VBRotatE / VBTransE). score_t: (B,) x (B,) -> (B, E) logits gamma - D, higher is better."""

    Config = VBKGCConfig
    train_defaults = {**NEGATIVE_SAMPLING_DEFAULTS, "corruption": "bern"}
    modalities = ("*",)
    version = 1
    TERMS = (("s", "r", "s"), ("i", "r", "i"), ("i", "r", "s"), ("s", "r", "i"))

    def __init__(self, cfg: VBKGCConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        width = 2 * cfg.dim if cfg.kernel == "rotate" else cfg.dim
        self.embedding_range = uniform_range(cfg.gamma, cfg.epsilon, cfg.dim)
        rng = self.embedding_range
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, width))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        init_(self.entity, "uniform", generator, a=-rng, b=rng)
        init_(self.relation, "uniform", generator, a=-rng, b=rng)
        self.image = FeatureEncoder(inputs, width, how="joint", trainable=cfg.trainable_features,
                                    generator=generator, owner="VBKGC")

    def _vectors(self, idx: Tensor | None) -> dict:
        return {"s": self.entity if idx is None else self.entity[idx], "i": self.image(idx)}

    def _relations(self, r: Tensor) -> dict:
        rel = self.relation[r]
        return {"r": phase_of(rel, self.embedding_range) if self.cfg.kernel == "rotate" else rel}

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        dist = energy_all(self.TERMS, self._vectors(h), self._relations(r), self._vectors(None), self.cfg.kernel,
                          normalize=self.cfg.kernel == "l1")
        return self.cfg.gamma - dist

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        dist = energy_hrt(self.TERMS, self._vectors(h), self._relations(r), self._vectors(t), self.cfg.kernel,
                          normalize=self.cfg.kernel == "l1")
        return self.cfg.gamma - dist
