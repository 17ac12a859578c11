"""IKRL (Xie et al., IJCAI 2017, "Image-embodied Knowledge Representation Learning"), in the form
MMKGC code bases run it (zjukg/NATIVE `mmkgc/module/model/IKRL.py`; docs/reference/native-mm-baselines.md §1).

Each entity has a structural vector s_e (d) and an image-based vector i_e = P(x_e) (d), P a linear
map of the entity's features. The energy sums four TransE terms over structure/image combinations,

    D(h, r, t) = T(s_h, r, s_t) + T(i_h, r, i_t) + T(i_h, r, s_t) + T(s_h, r, i_t),
    T(a, r, b) = || a/|a| + r/|r| - b/|b| ||_1,

and the score is gamma - D. The original attends over several images per entity; published features
give one vector per entity, so the attention has one input and reduces to P. Where the data has
more modalities than the image, x_e is all of them concatenated (`modalities = "*"`), the form QEB
and MMKRL use; the feature table is fine-tuned, as NATIVE does. Defaults: d = 128 and the training of
the group's IKRL script (zjukg/MACO MMKGC/run_ikrl.py, scripts/run_ikrl.sh: self-adversarial margin
loss, margin 6, 32 Bernoulli negatives, Adam lr 2e-5, 1000 epochs; `mmkgbench.multimodal.MARGIN_REGIME`).
Under the margin loss gamma only shifts scores; it matters for the sigmoid loss.
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
class IKRLConfig:
    dim: int = 128                   # MACO run_ikrl.py
    gamma: float = 6.0               # score = gamma - D (NATIVE's margin argument; MACO's margin)
    epsilon: float = 2.0             # init range (gamma + epsilon) / d (NATIVE, RotatE code base)
    p: int = 1                       # L1 (NATIVE p_norm default)
    normalize: bool = True           # L2-normalise inside every term (NATIVE norm_flag default)
    trainable_features: bool = True  # NATIVE fine-tunes the image table (requires_grad_(True))

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "gamma": "(0, inf)", "epsilon": "[0, inf)", "p": (1, 2),
                              "normalize": None, "trainable_features": None}

    def __post_init__(self):
        check_config(self)


class IKRL(KGEModel):
    """IKRL. score_t: (B,) x (B,) -> (B, E) logits gamma - D, higher is better."""

    Config = IKRLConfig
    train_defaults = {**MARGIN_REGIME, "num_negatives": 32}
    modalities = ("*",)
    version = 1
    TERMS = (("s", "r", "s"), ("i", "r", "i"), ("i", "r", "s"), ("s", "r", "i"))

    def __init__(self, cfg: IKRLConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        rng = uniform_range(cfg.gamma, cfg.epsilon, cfg.dim)
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, cfg.dim))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        init_(self.entity, "uniform", generator, a=-rng, b=rng)
        init_(self.relation, "uniform", generator, a=-rng, b=rng)
        self.image = FeatureEncoder(inputs, cfg.dim, how="joint", trainable=cfg.trainable_features,
                                    generator=generator, owner="IKRL")

    @property
    def kernel(self) -> str:
        return "l1" if self.cfg.p == 1 else "l2"

    def _vectors(self, idx: Tensor | None) -> dict:
        return {"s": self.entity if idx is None else self.entity[idx], "i": self.image(idx)}

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        dist = energy_all(self.TERMS, self._vectors(h), {"r": self.relation[r]}, self._vectors(None),
                          self.kernel, self.cfg.normalize)
        return self.cfg.gamma - dist

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        dist = energy_hrt(self.TERMS, self._vectors(h), {"r": self.relation[r]}, self._vectors(t),
                          self.kernel, self.cfg.normalize)
        return self.cfg.gamma - dist

    def mixed_tail_scores(self, h: Tensor, r: Tensor, t_structure: Tensor, t_modality: Tensor
                          ) -> tuple[Tensor, Tensor, Tensor]:
        """The MANS hook (mmkgbench/samplers/mans.py): scores of tails whose structural vector is
        entity t_structure's and whose image vector is entity t_modality's, h, r (B,), t_* (B, k) ->
        (scores, intra, cross), each (B, k): score = gamma - intra - cross, with intra = T(s_h, r, s_t) +
        T(i_h, r, i_t) and cross = T(i_h, r, s_t) + T(s_h, r, i_t). With t_structure = t_modality it is
        score_hrt, split into MMTransE's intra- and cross-modal parts (zjukg/MANS MMTransE.py)."""
        heads, rels = self._vectors(h), {"r": self.relation[r]}
        tails = {"s": self.entity[t_structure], "i": self.image(t_modality)}
        intra = energy_hrt(self.TERMS[:2], heads, rels, tails, self.kernel, self.cfg.normalize)
        cross = energy_hrt(self.TERMS[2:], heads, rels, tails, self.kernel, self.cfg.normalize)
        return self.cfg.gamma - intra - cross, intra, cross
