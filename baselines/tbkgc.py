"""TBKGC (Mousselly-Sergieh et al., *SEM 2018, "A Multimodal Translation-Based Approach for Knowledge
Graph Representation Learning"), in the form of zjukg/NATIVE `mmkgc/module/model/TBKGC.py`
(docs/reference/native-mm-baselines.md §2).

Each entity has a structural vector s_e (d) and a multi-modal vector m_e, the concatenation of one
linear projection per modality, each to its share of d (image d/2 and text d/2 in NATIVE; every
modality the data has here, `mmkgbench.multimodal.split_sizes`). The energy sums five TransE terms,

    D = T(s_h, r, s_t) + T(m_h, r, m_t) + T(m_h, r, s_t) + T(s_h, r, m_t) + T(s_h + m_h, r, s_t + m_t),

T the L1 distance of L2-normalised vectors (as IKRL), and the score is gamma - D. The feature tables
are fine-tuned, as NATIVE does. Defaults: d = 128 and the training of the group's TBKGC script
(zjukg/MACO MMKGC/run_tbkgc.py, scripts/run_tbkgc.sh: self-adversarial margin loss, margin 6,
64 Bernoulli negatives, Adam lr 2e-5, 1000 epochs). MACO's copy reads the image only; NATIVE's, which
produced the numbers MoMoK's table copies, reads image and text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mmkgbench.model import KGEModel, ModelInputs, init_
from mmkgbench.multimodal import MARGIN_REGIME, FeatureEncoder, energy_all, energy_hrt, uniform_range
from mmkgbench.ranges import check_config


@dataclass(frozen=True)
class TBKGCConfig:
    dim: int = 128                   # MACO run_tbkgc.py
    gamma: float = 6.0               # score = gamma - D
    epsilon: float = 2.0             # init range (gamma + epsilon) / d
    p: int = 1                       # L1 (NATIVE)
    normalize: bool = True           # L2-normalise inside every term (NATIVE norm_flag)
    trainable_features: bool = True  # NATIVE fine-tunes both feature tables

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "gamma": "(0, inf)", "epsilon": "[0, inf)", "p": (1, 2),
                              "normalize": None, "trainable_features": None}

    def __post_init__(self):
        check_config(self)


class TBKGC(KGEModel):
    """TBKGC. score_t: (B,) x (B,) -> (B, E) logits gamma - D, higher is better."""

    Config = TBKGCConfig
    train_defaults = {**MARGIN_REGIME, "num_negatives": 64}
    modalities = ("*",)
    version = 1
    TERMS = (("s", "r", "s"), ("m", "r", "m"), ("m", "r", "s"), ("s", "r", "m"), ("s+m", "r", "s+m"))

    def __init__(self, cfg: TBKGCConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        rng = uniform_range(cfg.gamma, cfg.epsilon, cfg.dim)
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, cfg.dim))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        init_(self.entity, "uniform", generator, a=-rng, b=rng)
        init_(self.relation, "uniform", generator, a=-rng, b=rng)
        self.multimodal = FeatureEncoder(inputs, cfg.dim, how="split", trainable=cfg.trainable_features,
                                         generator=generator, owner="TBKGC")

    @property
    def kernel(self) -> str:
        return "l1" if self.cfg.p == 1 else "l2"

    def _vectors(self, idx: Tensor | None) -> dict:
        s = self.entity if idx is None else self.entity[idx]
        m = self.multimodal(idx)
        return {"s": s, "m": m, "s+m": s + m}

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        dist = energy_all(self.TERMS, self._vectors(h), {"r": self.relation[r]}, self._vectors(None),
                          self.kernel, self.cfg.normalize)
        return self.cfg.gamma - dist

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        dist = energy_hrt(self.TERMS, self._vectors(h), {"r": self.relation[r]}, self._vectors(t),
                          self.kernel, self.cfg.normalize)
        return self.cfg.gamma - dist
