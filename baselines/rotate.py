"""RotatE (Sun et al., ICLR 2019, "RotatE: Knowledge Graph Embedding by Relational Rotation in
Complex Space"). f(h, r, t) = gamma - sum_k |h_k r_k - t_k|, with |r_k| = 1.

Entities are real tensors of width 2d ([re; im]); a relation is d phases, stored unconstrained and
mapped to theta = r / (range / pi) with range = (gamma + epsilon) / d, so that the uniform(-range,
range) initialisation covers [-pi, pi] (methods.md §3.1, as in the RotatE code base
DeepGraphLearning/KnowledgeGraphEmbedding, read for conventions). Defaults follow the MMKGC
negative-sampling regime (methods.md §3.2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mmkgbench.model import NEGATIVE_SAMPLING_DEFAULTS, KGEModel, ModelInputs, init_, modulus_distance_all
from mmkgbench.ranges import check_config


@dataclass(frozen=True)
class RotatEConfig:
    dim: int = 250            # methods.md §3.2 [choice]: d = 250 complex dims (entity width 500)
    gamma: float = 12.0       # AdaMF (RotatE-based) DB15K and NativE DB15K (methods.md §3.2)
    epsilon: float = 2.0      # embedding_range = (gamma + epsilon) / d, Sun et al. 2019 code

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "gamma": "(0, inf)", "epsilon": "[0, inf)"}

    def __post_init__(self):
        check_config(self)


class RotatE(KGEModel):
    """RotatE. score_t: (B,) x (B,) -> (B, E) logits gamma - distance, higher is better."""

    Config = RotatEConfig
    train_defaults = NEGATIVE_SAMPLING_DEFAULTS
    version = 1                   # bump when a change alters this model's numbers (part of the run id)

    def __init__(self, cfg: RotatEConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        self.embedding_range = (cfg.gamma + cfg.epsilon) / cfg.dim
        rng = self.embedding_range
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, 2 * cfg.dim))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        init_(self.entity, "uniform", generator, a=-rng, b=rng)
        init_(self.relation, "uniform", generator, a=-rng, b=rng)

    def _complex(self, e: Tensor) -> Tensor:
        """Real [re; im] rows (..., 2d) -> complex (..., d)."""
        re, im = e.chunk(2, dim=-1)
        return torch.complex(re, im)

    def _query(self, h: Tensor, r: Tensor) -> Tensor:
        """Rotated heads h * exp(i theta_r): complex (B, d)."""
        theta = self.relation[r] / (self.embedding_range / math.pi)
        return self._complex(self.entity[h]) * torch.polar(torch.ones_like(theta), theta)

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        q = self._query(h, r)
        t_re, t_im = self.entity.chunk(2, dim=-1)
        # No GEMM form for a sum of moduli; the helper chunks over entities.
        return self.cfg.gamma - modulus_distance_all(q.real, q.imag, t_re, t_im)

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        q = self._query(h, r)                                      # (B, d) complex
        if t.dim() == 2:
            q = q[:, None]                                         # (B, 1, d) against (B, n, d)
        return self.cfg.gamma - (q - self._complex(self.entity[t])).abs().sum(-1)
