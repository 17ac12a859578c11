"""TransAE (Wang et al., IJCNN 2019, "Multimodal Data Enhanced Representation Learning for Knowledge
Graphs"): a multi-modal auto-encoder whose code is the entity vector of TransE.

The entity's features (every modality the data has, concatenated: image and text in the paper; frozen
inputs, absent rows by the run's fill policy) go through an encoder D_in -> hidden (ReLU) -> d and
back through a decoder d -> hidden (ReLU) -> D_in. The code c_e is the entity's vector; relations
are free vectors. The score is TransE's,

    f(h, r, t) = gamma - || c_h/|c_h| + r/|r| - c_t/|c_t| ||_1,

and training adds the reconstruction error as the model's `penalty`:
`reconstruction` * mean_e ||x_e - dec(enc(x_e))||^2 / D_in over the batch's entities (heads and every
tail column). Widths: hidden 192 as in zjukg/NATIVE's `IMG_Encoder` (`mmkgc/module/model/TransAE.py`),
whose forward never calls it: NATIVE's TransAE is TransE (docs/reference/native-mm-baselines.md §3),
so these are the paper's equations, not NATIVE's numbers. Unlike NATIVE's encoder, the code and the
reconstruction have no final ReLU: features (sentence and image embeddings) take negative values,
which a ReLU output can never reconstruct [choice]. Training: the group's translational regime
(`mmkgbench.multimodal.MARGIN_REGIME`, 32 negatives) [choice].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mmkgbench.layers import linear
from mmkgbench.model import KGEModel, ModelInputs, init_
from mmkgbench.multimodal import MARGIN_REGIME, FeatureEncoder, energy_all, energy_hrt, per_entity, uniform_range
from mmkgbench.ranges import check_config


@dataclass(frozen=True)
class TransAEConfig:
    dim: int = 128                     # code width d, as the other translational baselines [choice]
    hidden: int = 192                  # encoder/decoder hidden width (NATIVE IMG_Encoder)
    gamma: float = 6.0                 # score = gamma - distance
    epsilon: float = 2.0               # relation init range (gamma + epsilon) / d
    reconstruction: float = 1.0        # weight of the reconstruction term [choice]
    normalize: bool = True             # L2-normalise inside the TransE term (NATIVE norm_flag)

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "hidden": "[1, inf)", "gamma": "(0, inf)", "epsilon": "[0, inf)",
                              "reconstruction": "[0, inf)", "normalize": None}

    def __post_init__(self):
        check_config(self)


class TransAE(KGEModel):
    """TransAE. score_t: (B,) x (B,) -> (B, E) logits gamma - distance, higher is better."""

    Config = TransAEConfig
    train_defaults = {**MARGIN_REGIME, "num_negatives": 32}
    modalities = ("*",)
    version = 1
    TERMS = (("c", "r", "c"),)

    def __init__(self, cfg: TransAEConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        # The feature tables only, no projection: the filled, concatenated inputs of the auto-encoder.
        self.features = FeatureEncoder(inputs, None, how="joint", trainable=False, generator=generator, owner="TransAE")
        n = self.features.in_dim
        self.encoder = nn.Sequential(linear(n, cfg.hidden, generator), nn.ReLU(), linear(cfg.hidden, cfg.dim, generator))
        self.decoder = nn.Sequential(linear(cfg.dim, cfg.hidden, generator), nn.ReLU(), linear(cfg.hidden, n, generator))
        rng = uniform_range(cfg.gamma, cfg.epsilon, cfg.dim)
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        init_(self.relation, "uniform", generator, a=-rng, b=rng)

    def _codes(self, idx: Tensor | None) -> dict:
        return {"c": per_entity(lambda ids: self.encoder(self.features.raw(ids)), idx)}

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        dist = energy_all(self.TERMS, self._codes(h), {"r": self.relation[r]}, self._codes(None), "l1",
                          self.cfg.normalize)
        return self.cfg.gamma - dist

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        dist = energy_hrt(self.TERMS, self._codes(h), {"r": self.relation[r]}, self._codes(t), "l1",
                          self.cfg.normalize)
        return self.cfg.gamma - dist

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """reconstruction * mean squared reconstruction error of the batch's entities: h (B,), t (B,) or (B, n)."""
        if self.cfg.reconstruction == 0:
            return torch.zeros((), device=h.device)
        def error(ids: Tensor) -> Tensor:              # per entity: its mean squared error, (n, 1)
            x = self.features.raw(ids)
            return ((self.decoder(self.encoder(x)) - x) ** 2).mean(-1, keepdim=True)
        return self.cfg.reconstruction * per_entity(error, torch.cat([h, t.reshape(-1)])).mean()
