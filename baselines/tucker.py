"""TuckER (Balažević et al., EMNLP 2019, "TuckER: Tensor Factorization for Knowledge Graph
Completion"). f(h, r, t) = (W x_1 w_r x_2 e_h) . e_t with a core W of shape (d_r, d_e, d_e).

The recipe of the paper's code (methods.md §1.5/§3.1): x = Dropout_0.3(BN0(e_h));
W_r = reshape(w_r W) of shape (d_e, d_e), Dropout_0.4(W_r); y = Dropout_0.5(BN1(x W_r));
scores y . e_t for every candidate. We return logits; the sigmoid belongs to the BCE loss
(anchors.md §7.2). Reference implementation read for conventions: ibalazevic/TuckER.
The layer up to y is `mmkgbench.layers.TuckERDecision`, shared with MoMoK's decisions: w_r W is
computed once per distinct relation of a batch, and the masked contraction runs in cache-sized
chunks (docs/performance.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mmkgbench.layers import TuckERDecision
from mmkgbench.model import KGEModel, ModelInputs, init_
from mmkgbench.ranges import check_config


@dataclass(frozen=True)
class TuckERConfig:
    entity_dim: int = 200          # d_e = 200, TuckER paper defaults (methods.md §3.2)
    relation_dim: int = 200        # d_r = 200, TuckER paper defaults (methods.md §3.2)
    input_dropout: float = 0.3     # on BN0(e_h), TuckER paper defaults (methods.md §1.5)
    hidden_dropout1: float = 0.4   # on the core slice W_r, TuckER paper defaults
    hidden_dropout2: float = 0.5   # on BN1(x W_r), TuckER paper defaults

    ranges: ClassVar[dict] = {"entity_dim": "[1, inf)", "relation_dim": "[1, inf)", "input_dropout": "[0, 1)",
                              "hidden_dropout1": "[0, 1)", "hidden_dropout2": "[0, 1)"}

    def __post_init__(self):
        check_config(self)


class TuckER(KGEModel):
    """TuckER. score_t: (B,) x (B,) -> (B, E) logits, higher is better.

    BN0 and BN1 are BatchNorm1d(d_e): in train mode scores depend on the batch, in eval mode
    they are a fixed affine map and score_hrt agrees with score_t.
    """

    Config = TuckERConfig
    train_defaults = dict(regime="kvsall", optimizer="adam", lr=5e-4, batch_size=128,
                          label_smoothing=0.1, lr_decay=1.0, max_epochs=500)
    # bump when a change alters this model's numbers (part of the run id). 2: the shared TuckER layer,
    # whose dropout masks come from layers.drop_mask (other draws, p at 16-bit resolution) instead of
    # nn.Dropout, and w_r W is computed per distinct relation (eval scores equal up to float rounding).
    version = 2

    def __init__(self, cfg: TuckERConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        d_e, d_r = cfg.entity_dim, cfg.relation_dim
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, d_e))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, d_r))
        init_(self.entity, "xavier_normal", generator)
        init_(self.relation, "xavier_normal", generator)
        # Core (d_r, d_e, d_e) uniform(-1, 1) as in the original code, drawn after the two tables.
        self.decision = TuckERDecision(d_e, d_r, input_dropout=cfg.input_dropout,
                                       hidden_dropout=cfg.hidden_dropout1, output_dropout=cfg.hidden_dropout2,
                                       core_init="uniform", generator=generator)

    def _query(self, h: Tensor, r: Tensor) -> Tensor:
        """The contracted query W x_1 w_r x_2 e_h after BN1 and dropout: (B, d_e)."""
        distinct, index = torch.unique(r, return_inverse=True)
        return self.decision(self.entity[h], self.relation[distinct], index)

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        return self._query(h, r) @ self.entity.t()

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        y = self._query(h, r)                                          # (B, d_e)
        if t.dim() == 1:
            return (y * self.entity[t]).sum(-1)
        return torch.einsum("bd,bnd->bn", y, self.entity[t])
