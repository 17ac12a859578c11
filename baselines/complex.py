"""ComplEx (Trouillon et al., ICML 2016, "Complex Embeddings for Simple Link Prediction").
f(h, r, t) = Re(sum_k h_k r_k conj(t_k)), h, r, t in C^d.

Entities and relations are real tensors of width 2d: the first d columns are the real parts, the
last d the imaginary parts (the layout of the RotatE code base and kbc). Defaults follow the MMKGC
negative-sampling regime (methods.md §3.2) with an N3-style penalty (Lacroix et al. 2018) on the
batch embeddings. Reference implementations read for conventions:
DeepGraphLearning/KnowledgeGraphEmbedding, facebookresearch/kbc.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mmkgbench.model import NEGATIVE_SAMPLING_DEFAULTS, KGEModel, ModelInputs, init_
from mmkgbench.ranges import check_config


@dataclass(frozen=True)
class ComplExConfig:
    dim: int = 250            # methods.md §3.2 [choice]: d = 250 complex dims (real width 500)
    init_std: float = 0.1     # N(0, 0.1^2), same scale as DistMult here
    l3: float = 1e-6          # weight of the N3 penalty on batch embeddings (as DistMult's L3)

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "init_std": "(0, inf)", "l3": "[0, inf)"}

    def __post_init__(self):
        check_config(self)


class ComplEx(KGEModel):
    """ComplEx. score_t: (B,) x (B,) -> (B, E) logits, higher is better."""

    Config = ComplExConfig
    train_defaults = NEGATIVE_SAMPLING_DEFAULTS
    version = 1                   # bump when a change alters this model's numbers (part of the run id)

    def __init__(self, cfg: ComplExConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, 2 * cfg.dim))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, 2 * cfg.dim))
        init_(self.entity, "normal", generator, std=cfg.init_std)
        init_(self.relation, "normal", generator, std=cfg.init_std)

    def _query(self, h: Tensor, r: Tensor) -> Tensor:
        """h * r as a complex product, laid out [re; im]: (B, 2d).

        Re(q conj(t)) = q_re t_re + q_im t_im, so the score is a real dot product with [t_re; t_im].
        """
        h_re, h_im = self.entity[h].chunk(2, dim=-1)
        r_re, r_im = self.relation[r].chunk(2, dim=-1)
        return torch.cat([h_re * r_re - h_im * r_im, h_re * r_im + h_im * r_re], dim=-1)

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        # One GEMM: (B, 2d) query against the (E, 2d) table.
        return self._query(h, r) @ self.entity.t()

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        q = self._query(h, r)                                      # (B, 2d)
        if t.dim() == 1:
            return (q * self.entity[t]).sum(-1)
        return torch.einsum("bd,bnd->bn", q, self.entity[t])

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        if self.cfg.l3 == 0:
            return torch.zeros((), device=h.device)
        # N3 acts on complex moduli: |z|^3 = (re^2 + im^2)^1.5 (no sqrt, so the gradient at 0 is 0).
        def cubed_moduli(x: Tensor) -> Tensor:
            re, im = x.chunk(2, dim=-1)
            return (re * re + im * im).pow(1.5).sum()

        e = torch.cat([self.entity[h], self.entity[t.reshape(-1)]])
        return self.cfg.l3 * (cubed_moduli(e) + cubed_moduli(self.relation[r])) / len(h)
