"""MMKRL (Lu et al., Applied Intelligence 2022, "MMKRL: A robust embedding approach for multi-modal
knowledge graph representation learning"), knowledge reconstruction and alignment as in zjukg/NATIVE
`mmkgc/module/model/MMKRL.py` and `strategy/MMKRLNegativeSampling.py`
(docs/reference/native-mm-baselines.md §4).

A shared bias-free map S (d x d) and free offsets b_h, b_r, b_t (N(0, 1), as NATIVE) give projected
structural vectors h' = S s_h + b_h, r' = S r + b_r, t' = S s_t + b_t; the multi-modal vector is
m_e = P([x_e^1; ...; x_e^M]) (all modalities concatenated, one linear map; fine-tuned tables). The
energy is the mean of four TransE terms, all with the projected relation,

    D = (1/4) [ T(h', r', t') + T(m_h, r', m_t) + T(m_h, r', s_t) + T(s_h, r', m_t) ],

T the L1 distance of L2-normalised vectors; the score is gamma - D. Training adds the knowledge
alignment loss with weight `alignment` (1 in NATIVE), as the model's `penalty`:

    L_KA = MSE(s_h, h') + MSE(s_t, t') + MSE(r, r') + MSE(A s_h, m_h) + MSE(A s_t, m_t),

A a bias-free d x d map, each MSE a mean over the batch's entries (heads and relations of the
positives, every tail column: positives and negatives, as NATIVE's rows). Not implemented: MMKRL's
adversarial training (NATIVE's MMKRLTrainer, which no script uses and which needs a generator
network; README "Training differences"). Defaults: d = 128 and the group's translational training
(`mmkgbench.multimodal.MARGIN_REGIME`, 32 negatives) [choice]: no MMKRL script is public.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkgbench.layers import linear
from mmkgbench.model import KGEModel, ModelInputs, init_
from mmkgbench.multimodal import MARGIN_REGIME, FeatureEncoder, energy_all, energy_hrt, uniform_range
from mmkgbench.ranges import check_config


@dataclass(frozen=True)
class MMKRLConfig:
    dim: int = 128                   # as the other translational baselines (MACO) [choice]
    gamma: float = 6.0               # score = gamma - D
    epsilon: float = 2.0             # init range (gamma + epsilon) / d
    alignment: float = 1.0           # weight of L_KA (NATIVE MMKRLNegativeSampling: 1)
    trainable_features: bool = True  # NATIVE fine-tunes the feature table

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "gamma": "(0, inf)", "epsilon": "[0, inf)", "alignment": "[0, inf)",
                              "trainable_features": None}

    def __post_init__(self):
        check_config(self)


class MMKRL(KGEModel):
    """MMKRL. score_t: (B,) x (B,) -> (B, E) logits gamma - D, higher is better."""

    Config = MMKRLConfig
    train_defaults = {**MARGIN_REGIME, "num_negatives": 32}
    modalities = ("*",)
    version = 1
    TERMS = (("h'", "r'", "t'"), ("m", "r'", "m"), ("m", "r'", "s"), ("s", "r'", "m"))

    def __init__(self, cfg: MMKRLConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        d = cfg.dim
        rng = uniform_range(cfg.gamma, cfg.epsilon, d)
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, d))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, d))
        init_(self.entity, "uniform", generator, a=-rng, b=rng)
        init_(self.relation, "uniform", generator, a=-rng, b=rng)
        self.multimodal = FeatureEncoder(inputs, d, how="joint", trainable=cfg.trainable_features,
                                         generator=generator, owner="MMKRL")
        self.shared = linear(d, d, generator, bias=False)          # S
        self.offsets = nn.Parameter(torch.empty(3, d))             # b_h, b_r, b_t
        init_(self.offsets, "normal", generator, std=1.0)
        self.align = linear(d, d, generator, bias=False)           # A

    def _heads(self, h: Tensor) -> dict:
        s = self.entity[h]
        return {"h'": self.shared(s) + self.offsets[0], "m": self.multimodal(h), "s": s}

    def _tails(self, t: Tensor | None) -> dict:
        s = self.entity if t is None else self.entity[t]
        return {"t'": self.shared(s) + self.offsets[2], "m": self.multimodal(t), "s": s}

    def _relations(self, r: Tensor) -> dict:
        return {"r'": self.shared(self.relation[r]) + self.offsets[1]}

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        dist = energy_all(self.TERMS, self._heads(h), self._relations(r), self._tails(None), "l1", True)
        return self.cfg.gamma - dist / len(self.TERMS)

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        dist = energy_hrt(self.TERMS, self._heads(h), self._relations(r), self._tails(t), "l1", True)
        return self.cfg.gamma - dist / len(self.TERMS)

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """alignment * L_KA over the batch: h, r (B,), t (B,) or (B, n) tail columns."""
        if self.cfg.alignment == 0:
            return torch.zeros((), device=h.device)
        heads, tails, rels = self._heads(h), self._tails(t.reshape(-1)), self._relations(r)
        loss = (F.mse_loss(heads["s"], heads["h'"]) + F.mse_loss(tails["s"], tails["t'"])
                + F.mse_loss(self.relation[r], rels["r'"])
                + F.mse_loss(self.align(heads["s"]), heads["m"]) + F.mse_loss(self.align(tails["s"]), tails["m"]))
        return self.cfg.alignment * loss
