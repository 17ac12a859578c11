"""DistMult (Yang et al., ICLR 2015, "Embedding Entities and Relations for Learning and Inference in
Knowledge Bases"). f(h, r, t) = sum_k h_k r_k t_k.

Defaults follow the MMKGC negative-sampling regime (methods.md §3.2: NativE/AdaMF scripts, batch
1024, 128 negatives, self-adversarial sigmoid loss with alpha 2.0) with the L3 penalty of the RotatE
code base. Reference implementation read for conventions: DeepGraphLearning/KnowledgeGraphEmbedding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mmkgbench.model import NEGATIVE_SAMPLING_DEFAULTS, KGEModel, ModelInputs, init_
from mmkgbench.ranges import check_config


@dataclass(frozen=True)
class DistMultConfig:
    dim: int = 250            # methods.md §3.2 [choice]: d = 250 for the NS family
    init_std: float = 0.1     # N(0, 0.1^2); Xavier-like scale for d in the hundreds
    l3: float = 1e-6          # weight of the L3 penalty on batch embeddings (RotatE code base)

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "init_std": "(0, inf)", "l3": "[0, inf)"}

    def __post_init__(self):
        check_config(self)


class DistMult(KGEModel):
    """DistMult. score_t: (B,) x (B,) -> (B, E) logits, higher is better."""

    Config = DistMultConfig
    train_defaults = NEGATIVE_SAMPLING_DEFAULTS
    version = 1                   # bump when a change alters this model's numbers (part of the run id)

    def __init__(self, cfg: DistMultConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, cfg.dim))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        init_(self.entity, "normal", generator, std=cfg.init_std)
        init_(self.relation, "normal", generator, std=cfg.init_std)

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        # One GEMM: (B, d) query against the (E, d) table.
        return (self.entity[h] * self.relation[r]) @ self.entity.t()

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        q = self.entity[h] * self.relation[r]                      # (B, d)
        if t.dim() == 1:
            return (q * self.entity[t]).sum(-1)
        return torch.einsum("bd,bnd->bn", q, self.entity[t])

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        if self.cfg.l3 == 0:
            return torch.zeros((), device=h.device)
        e = torch.cat([self.entity[h], self.entity[t.reshape(-1)]])
        return self.cfg.l3 * (e.abs().pow(3).sum() + self.relation[r].abs().pow(3).sum()) / len(h)
