"""RSME (Wang et al., ACM MM 2021, "Is Visual Context Really Helpful for Knowledge Graph? A
Representation Learning Perspective"), in the form of zjukg/NATIVE `mmkgc/module/model/RSME.py`
(docs/reference/native-mm-baselines.md §5).

ComplEx (Trouillon et al. 2016) over entities augmented by their projected features: p_e = P(x_e)
(2d; x_e all modalities concatenated, the features frozen, P trained), and the complex entity of
width 2d is [s_e^re; p_e[:d]] + i [s_e^im; p_e[d:]], relations complex of width 2d. The score mixes
ComplEx with the cosine of the two projected feature vectors,

    f(h, r, t) = beta * Re(<h~, r, conj(t~)>) + (1 - beta) * cos(p_h, p_t),   beta = 0.95 (NATIVE),

higher is better. Not implemented: the paper's forget gate and relation-sensitive filter over
several images per entity (NATIVE keeps only the fixed beta mix; published features give one vector
per entity). An N3 penalty (Lacroix et al. 2018) on the batch's complex vectors, as our ComplEx,
replaces NATIVE's L2 (`l3`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mmkgbench.model import NEGATIVE_SAMPLING_DEFAULTS, KGEModel, ModelInputs, init_
from mmkgbench.multimodal import FeatureEncoder, unit
from mmkgbench.ranges import check_config


@dataclass(frozen=True)
class RSMEConfig:
    dim: int = 128                     # structural complex dims d (entity width 2d complex after augmentation)
    beta: float = 0.95                 # weight of ComplEx against the feature cosine (NATIVE hard-codes 0.95)
    init_std: float = 0.1              # N(0, 0.1^2), as our ComplEx
    l3: float = 1e-6                   # N3 penalty weight on batch vectors, as our ComplEx
    trainable_features: bool = False   # NATIVE freezes the image table (requires_grad_(False))

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "beta": "[0, 1]", "init_std": "(0, inf)", "l3": "[0, inf)",
                              "trainable_features": None}

    def __post_init__(self):
        check_config(self)


class RSME(KGEModel):
    """RSME. score_t: (B,) x (B,) -> (B, E) logits, higher is better."""

    Config = RSMEConfig
    train_defaults = {**NEGATIVE_SAMPLING_DEFAULTS, "corruption": "bern"}
    modalities = ("*",)
    version = 1

    def __init__(self, cfg: RSMEConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        d = cfg.dim
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, 2 * d))        # [re; im], d each
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, 4 * d))     # [re; im], 2d each
        init_(self.entity, "normal", generator, std=cfg.init_std)
        init_(self.relation, "normal", generator, std=cfg.init_std)
        self.visual = FeatureEncoder(inputs, 2 * d, how="joint", trainable=cfg.trainable_features,
                                     generator=generator, owner="RSME")

    def _augmented(self, idx: Tensor | None) -> tuple[Tensor, Tensor]:
        """Complex entities [re (2d); im (2d)] (..., 4d) and their projected features p (..., 2d)."""
        d = self.cfg.dim
        s = self.entity if idx is None else self.entity[idx]
        p = self.visual(idx)
        return torch.cat([s[..., :d], p[..., :d], s[..., d:], p[..., d:]], -1), p

    def _query(self, h: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """h~ * r laid out [re; im] (B, 4d), so Re(<h~, r, conj(t~)>) = query . t~; and p_h (B, 2d)."""
        e, p = self._augmented(h)
        w = 2 * self.cfg.dim
        h_re, h_im = e[:, :w], e[:, w:]
        r_re, r_im = self.relation[r, :w], self.relation[r, w:]
        return torch.cat([h_re * r_re - h_im * r_im, h_re * r_im + h_im * r_re], -1), p

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        q, p_h = self._query(h, r)
        ent, p = self._augmented(None)
        b = self.cfg.beta
        return b * (q @ ent.t()) + (1 - b) * (unit(p_h) @ unit(p).t())

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        q, p_h = self._query(h, r)
        ent, p = self._augmented(t)
        if t.dim() == 2:
            q, p_h = q[:, None], p_h[:, None]
        b = self.cfg.beta
        return b * (q * ent).sum(-1) + (1 - b) * (unit(p_h) * unit(p)).sum(-1)

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        if self.cfg.l3 == 0:
            return torch.zeros((), device=h.device)
        def cubed_moduli(x: Tensor) -> Tensor:            # |z|^3 over complex entries of [re; im] rows
            re, im = x.chunk(2, dim=-1)
            return (re * re + im * im).pow(1.5).sum()
        e = torch.cat([self._augmented(h)[0], self._augmented(t.reshape(-1))[0]])
        return self.cfg.l3 * (cubed_moduli(e) + cubed_moduli(self.relation[r])) / len(h)
