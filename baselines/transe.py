"""TransE (Bordes et al., NeurIPS 2013, "Translating Embeddings for Modeling Multi-relational Data").
f(h, r, t) = gamma - ||h + r - t||_p.

Defaults follow the MMKGC negative-sampling regime (methods.md §3.2: NativE/AdaMF scripts, batch
1024, 128 negatives, self-adversarial sigmoid loss with alpha 2.0). The margin gamma turns the
distance into a logit for the sigmoid loss. Initialisation uniform(-range, range) with
range = (gamma + epsilon) / d as in the RotatE code base (DeepGraphLearning/KnowledgeGraphEmbedding),
which was read for conventions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkgbench.model import NEGATIVE_SAMPLING_DEFAULTS, KGEModel, ModelInputs, init_, l1_distance_all
from mmkgbench.ranges import check_config

@dataclass(frozen=True)
class TransEConfig:
    dim: int = 250                     # methods.md §3.2 [choice]: d = 250 for the NS family
    p: int = 1                         # L1 in MMKGC code bases (methods.md §3.1); 2 also supported
    gamma: float = 12.0                # NativE/AdaMF DB15K (methods.md §3.2); 4 for MKG-W/Y in NativE
    epsilon: float = 2.0               # init range (gamma + epsilon) / d, RotatE code base
    normalize_entities: bool = False   # L2-normalise h, t before scoring (NativE/IKRL, OpenKE norm_flag)
    normalize_relations: bool = False  # OpenKE's norm_flag also normalises r; set both to match it

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "p": (1, 2), "gamma": "(0, inf)", "epsilon": "[0, inf)",
                              "normalize_entities": None, "normalize_relations": None}

    def __post_init__(self):
        check_config(self)


class TransE(KGEModel):
    """TransE. score_t: (B,) x (B,) -> (B, E) logits gamma - distance, higher is better."""

    Config = TransEConfig
    train_defaults = NEGATIVE_SAMPLING_DEFAULTS
    version = 1                   # bump when a change alters this model's numbers (part of the run id)

    def __init__(self, cfg: TransEConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        rng = (cfg.gamma + cfg.epsilon) / cfg.dim
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, cfg.dim))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        init_(self.entity, "uniform", generator, a=-rng, b=rng)
        init_(self.relation, "uniform", generator, a=-rng, b=rng)

    def _ent(self, idx: Tensor | None = None) -> Tensor:
        """Entity vectors (all when idx is None), normalised if configured: (..., d)."""
        e = self.entity if idx is None else self.entity[idx]
        return F.normalize(e, p=2, dim=-1) if self.cfg.normalize_entities else e

    def _query(self, h: Tensor, r: Tensor) -> Tensor:
        """Translated heads h + r: (B, d)."""
        rel = self.relation[r]
        if self.cfg.normalize_relations:
            rel = F.normalize(rel, p=2, dim=-1)
        return self._ent(h) + rel

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        q, ent = self._query(h, r), self._ent()
        if self.cfg.p == 2:
            # ||q - t||^2 = |q|^2 - 2 q.t + |t|^2 as one GEMM; rounding can go below 0, so clamp.
            sq = (q * q).sum(-1, keepdim=True) - 2 * q @ ent.t() + (ent * ent).sum(-1)[None]
            return self.cfg.gamma - sq.clamp_min(0).sqrt()
        return self.cfg.gamma - l1_distance_all(q, ent)

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        q = self._query(h, r)                                      # (B, d)
        if t.dim() == 2:
            q = q[:, None]                                         # (B, 1, d) against (B, n, d)
        return self.cfg.gamma - torch.linalg.vector_norm(q - self._ent(t), ord=self.cfg.p, dim=-1)
