"""QEB, the translational multi-modal baseline of TIVA-KG (Wang et al., ACM MM 2023, "TIVA-KG: A
Multimodal Knowledge Graph with Text, Image, Video and Audio"), in the form of zjukg/NATIVE
`mmkgc/module/model/QEB.py` (docs/reference/native-mm-baselines.md §7).

Each entity has a structural vector s_e (d) and a multi-modal vector m_e = P([x_e^1; ...; x_e^M]),
one linear map of all its modality features concatenated (any number of modalities, the point of
QEB); each relation has a structural vector r_s and a multi-modal one r_m. The energy averages ten
TransE terms: the eight combinations head in {s, m} x relation in {r_s, r_m} x tail in {s, m}, and
the fused entity s + m with either relation,

    D = (1/10) [ sum_{a, b in {s, m}; q in {r_s, r_m}} T(a_h, q, b_t) + sum_q T(s_h + m_h, q, s_t + m_t) ],

T the L1 distance of L2-normalised vectors (hard-coded in NATIVE), score gamma - D. The feature
tables are fine-tuned, as NATIVE does. Defaults: gamma 6, epsilon 2 (NATIVE's constructor); no
script runs QEB anywhere public, so the training is that of the group's translational baselines
(`mmkgbench.multimodal.MARGIN_REGIME`, 32 negatives as IKRL) [choice].
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
class QEBConfig:
    dim: int = 128                   # as the other translational baselines (MACO) [choice]
    gamma: float = 6.0               # NATIVE QEB default
    epsilon: float = 2.0             # NATIVE QEB default: init range (gamma + epsilon) / d
    trainable_features: bool = True  # NATIVE fine-tunes every feature table

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "gamma": "(0, inf)", "epsilon": "[0, inf)",
                              "trainable_features": None}

    def __post_init__(self):
        check_config(self)


class QEB(KGEModel):
    """QEB. score_t: (B,) x (B,) -> (B, E) logits gamma - D, higher is better."""

    Config = QEBConfig
    train_defaults = {**MARGIN_REGIME, "num_negatives": 32}
    modalities = ("*",)
    version = 1
    TERMS = tuple((a, q, b) for a in ("s", "m") for q in ("rs", "rm") for b in ("s", "m")) + \
        (("s+m", "rs", "s+m"), ("s+m", "rm", "s+m"))

    def __init__(self, cfg: QEBConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        rng = uniform_range(cfg.gamma, cfg.epsilon, cfg.dim)
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, cfg.dim))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        self.relation_mm = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        for p in (self.entity, self.relation, self.relation_mm):
            init_(p, "uniform", generator, a=-rng, b=rng)
        self.multimodal = FeatureEncoder(inputs, cfg.dim, how="joint", trainable=cfg.trainable_features,
                                         generator=generator, owner="QEB")

    def _vectors(self, idx: Tensor | None) -> dict:
        s = self.entity if idx is None else self.entity[idx]
        m = self.multimodal(idx)
        return {"s": s, "m": m, "s+m": s + m}

    def _relations(self, r: Tensor) -> dict:
        return {"rs": self.relation[r], "rm": self.relation_mm[r]}

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        dist = energy_all(self.TERMS, self._vectors(h), self._relations(r), self._vectors(None), "l1", True)
        return self.cfg.gamma - dist / len(self.TERMS)

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        dist = energy_hrt(self.TERMS, self._vectors(h), self._relations(r), self._vectors(t), "l1", True)
        return self.cfg.gamma - dist / len(self.TERMS)
