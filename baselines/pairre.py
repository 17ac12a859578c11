"""PairRE (Chao et al., ACL 2021, "PairRE: Knowledge Graph Embeddings via Paired Relation Vectors").
f(h, r, t) = gamma - ||h^ * r^H - t^ * r^T||_1, with h^, t^ the L2-normalised entity vectors and
r = [r^H; r^T] two d-vectors per relation.

Initialisation uniform(-range, range), range = (gamma + epsilon) / d, as in the authors' code (a
fork of the RotatE code base); the formula matches methods.md §3.1 (quqxui/MMRNS KGC_model.py).
Defaults follow the MMKGC negative-sampling regime (methods.md §3.2).
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
class PairREConfig:
    dim: int = 250            # methods.md §3.2 [choice]: d = 250 for the NS family
    gamma: float = 12.0       # NativE/AdaMF DB15K value (methods.md §3.2); 4 for MKG-W/Y in NativE
    epsilon: float = 2.0      # init range (gamma + epsilon) / d, PairRE / RotatE code base

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "gamma": "(0, inf)", "epsilon": "[0, inf)"}

    def __post_init__(self):
        check_config(self)


class PairRE(KGEModel):
    """PairRE. score_t: (B,) x (B,) -> (B, E) logits gamma - distance, higher is better."""

    Config = PairREConfig
    train_defaults = NEGATIVE_SAMPLING_DEFAULTS
    version = 1                   # bump when a change alters this model's numbers (part of the run id)

    def __init__(self, cfg: PairREConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        rng = (cfg.gamma + cfg.epsilon) / cfg.dim
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, cfg.dim))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, 2 * cfg.dim))
        init_(self.entity, "uniform", generator, a=-rng, b=rng)
        init_(self.relation, "uniform", generator, a=-rng, b=rng)

    def _parts(self, h: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """Projected head h^ * r^H and the tail projector r^T: both (B, d)."""
        r_head, r_tail = self.relation[r].chunk(2, dim=-1)
        return F.normalize(self.entity[h], p=2, dim=-1) * r_head, r_tail

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        q, r_tail = self._parts(h, r)
        ent = F.normalize(self.entity, p=2, dim=-1)
        # The tail projection depends on the query's relation, so there is no GEMM form.
        return self.cfg.gamma - l1_distance_all(q, ent, scale=r_tail)

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        q, r_tail = self._parts(h, r)                              # (B, d) each
        if t.dim() == 2:
            q, r_tail = q[:, None], r_tail[:, None]                # (B, 1, d) against (B, n, d)
        tail = F.normalize(self.entity[t], p=2, dim=-1) * r_tail
        return self.cfg.gamma - (q - tail).abs().sum(-1)
