"""IMF (Li et al., WWW 2023, "IMF: Interactive Multimodal Fusion Model for Link Prediction"), as its
public code (HestiaSky/IMF-Pytorch `models/model.py`, `layers/layer.py`; docs/reference/imf-mose-otkge.md §1)
builds it, with the TuckER decision layer MoMoK's code shares with it (`mmkgbench.layers.TuckERDecision`).

Per modality m (structure, and every feature modality of the data): an entity table E_m and a relation
table R_m (2R, d_r). Structure is Xavier-normal; a feature table is the entity's features, L2-normalised
and average-pooled to width d (`pool_features`, the code's 4096 -> 256 image and 768 -> 256 text
pooling, here adaptive so any width works), trainable; absent rows follow the run's fill policy.

* Four decisions, each a TuckER scorer (BN0 -> dropout .3 -> core slice, dropout .4 -> BN1 -> dropout .5)
  against its own candidates: s_m(q, e) = TuckER_m(E_m[q], R_m[r]) . E_m[e] for m in structure and the
  features, and the joint decision on fused vectors.
* Fusion (the code's Mutan-like block, one for entities, one for relations), H = 2 heads:
      z_m^h = ReLU(W_m^h Dropout_.2(x_m) + b_m^h),   fused = ReLU(sum_h prod_m z_m^h)   (elementwise)
  joint query = F_e(E_s[q], E_v[q], ...), joint relation = F_r(R_s[r], R_v[r], ...), candidates
  F_e over all entities (recomputed with dropout in training, as the code does).
* Loss: the sum of the decisions' BCEs (KvsAll, label smoothing y <- 0.9 y + 1/E), plus
  `contrastive` x the inter-modal contrastive loss of the code's `contrastive_loss` on the batch's query
  entities: each modality's (B, d) block divided by its Frobenius norm; pos_i = mean over modality pairs
  of <x_m,i, x_n,i>; neg_i = mean over the M x B entries <x_m,i, x_m,j> (j != i; the zeroed diagonal still
  counts, as in the code); L = mean_i softplus(neg_i - pos_i). The code never calls this loss (and it does
  not parse); its weight is our choice (0.1).
* Test-time score: the mean of the four sigmoid probabilities (the code; the abstract's "learned
  weighted average" has no weights in the code), as its logit (`mmkgbench.layers.mean_probability_logit`).

Defaults: the code's (d = d_r = 256, Adam lr 5e-4, batch 256, 1000 epochs, constant lr). With
`pool_features = false` the tables keep the features' own widths (as MoMoK's) and the fusion's linear
maps take each width to d; the contrastive loss then needs equal widths and is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkgbench.features import FeatureTable
from mmkgbench.layers import Dropout, TuckERDecision, bce_with_logits_mean, linear, mean_probability_logit
from mmkgbench.model import KGEModel, ModelInputs, init_
from mmkgbench.multimodal import require_features
from mmkgbench.ranges import check_config

STRUCTURE, JOINT = "structure", "joint"


@dataclass(frozen=True)
class IMFConfig:
    dim: int = 256                   # d: entity width of every modality (code: pooled features are 256)
    relation_dim: int = 256          # d_r (code)
    pool_features: bool = True       # L2-normalise and average-pool features to d (code); else raw widths
    contrastive: float = 0.1         # weight of the inter-modal contrastive loss [choice: unweighted, unused in code]
    fusion_heads: int = 2            # code: multi = 2
    fusion_dropout: float = 0.2      # code (hard-coded)
    input_dropout: float = 0.3       # TuckER dropouts (code, hard-coded)
    hidden_dropout: float = 0.4
    output_dropout: float = 0.5

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "relation_dim": "[1, inf)", "pool_features": None,
                              "contrastive": "[0, inf)", "fusion_heads": "[1, inf)", "fusion_dropout": "[0, 1)",
                              "input_dropout": "[0, 1)", "hidden_dropout": "[0, 1)", "output_dropout": "[0, 1)"}

    def __post_init__(self):
        check_config(self)


class ProductFusion(nn.Module):
    """IMF's fusion block: list of M (B, w_m) -> (B, out), ReLU(sum over heads of the elementwise product
    over modalities of ReLU(Linear(Dropout(x_m))))."""

    def __init__(self, dims: list[int], out: int, heads: int, dropout: float, generator: torch.Generator):
        super().__init__()
        self.heads = nn.ModuleList(nn.ModuleList(linear(d, out, generator) for d in dims) for _ in range(heads))
        self.dropout = Dropout(dropout)

    def forward(self, xs: list[Tensor]) -> Tensor:
        total = 0.0
        for head in self.heads:
            prod = None
            for lin, x in zip(head, xs):
                z = F.relu(lin(self.dropout(x)))
                prod = z if prod is None else prod * z
            total = total + prod
        return F.relu(total)


def contrastive_loss(xs: list[Tensor]) -> Tensor:
    """IMF's inter-modal contrastive loss (module docstring) of M (B, d) blocks of one entity batch -> scalar."""
    xs = [x / x.norm().clamp_min(1e-12) for x in xs]
    M, B = len(xs), len(xs[0])
    pairs = [(a, b) for a in range(M) for b in range(a + 1, M)]
    pos = torch.stack([(xs[a] * xs[b]).sum(-1) for a, b in pairs]).mean(0)                   # (B,)
    neg = sum(x @ x.T - torch.diag_embed((x * x).sum(-1)) for x in xs).sum(1) / (M * B)      # (B,)
    return F.softplus(neg - pos).mean()


class IMF(KGEModel):
    """IMF. score_t: (B,) x (B,) -> (B, E), logit of the mean of the four decisions' probabilities."""

    Config = IMFConfig
    modalities = ("*",)
    train_defaults = dict(regime="kvsall", optimizer="adam", lr=5e-4, batch_size=256, label_smoothing=0.1,
                          weight_decay=0.0, lr_decay=1.0, max_epochs=1000)
    version = 1

    def __init__(self, cfg: IMFConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        require_features(inputs, "IMF")
        features = sorted(inputs.features)
        if cfg.contrastive > 0 and not cfg.pool_features:
            raise ValueError("IMF: the contrastive loss compares modality embeddings of one width: set "
                             "pool_features = true or contrastive = 0")
        self.names = [STRUCTURE] + features
        E, R2, d, dr = inputs.num_entities, inputs.num_relations, cfg.dim, cfg.relation_dim
        structure = torch.empty(E, d)
        init_(structure, "xavier_normal", generator)
        self.entity = nn.ModuleDict({STRUCTURE: FeatureTable(structure, torch.ones(E, dtype=torch.bool), "zeros",
                                                             trainable=True)})
        for m in features:
            x = inputs.features[m]
            if cfg.pool_features:
                x = F.adaptive_avg_pool1d(F.normalize(x, dim=-1)[:, None, :], d)[:, 0, :]
            self.entity[m] = FeatureTable(x.contiguous(), inputs.present[m], inputs.fill, trainable=True)
        widths = [int(self.entity[m].table.shape[1]) for m in self.names]
        self.relation = nn.ParameterDict()
        for m in self.names:
            self.relation[m] = nn.Parameter(torch.empty(R2, dr))
            init_(self.relation[m], "xavier_normal", generator)
        self.decide = nn.ModuleDict({m: self._tucker(w, dr, generator) for m, w in zip(self.names, widths)})
        self.fuse_entity = ProductFusion(widths, d, cfg.fusion_heads, cfg.fusion_dropout, generator)
        self.fuse_relation = ProductFusion([dr] * len(self.names), dr, cfg.fusion_heads, cfg.fusion_dropout, generator)
        self.decide[JOINT] = self._tucker(d, dr, generator)
        self._cache: tuple | None = None

    def _tucker(self, dim: int, rel_dim: int, generator) -> TuckERDecision:
        c = self.cfg
        return TuckERDecision(dim, rel_dim, input_dropout=c.input_dropout, hidden_dropout=c.hidden_dropout,
                              output_dropout=c.output_dropout, core_init="xavier_uniform", generator=generator)

    def _candidates(self) -> dict[str, Tensor]:
        """Every decision's candidate embeddings (E, w); cached in eval mode until a parameter changes."""
        if not self.training:
            key = tuple(p._version for p in self.parameters()) + tuple(b._version for b in self.buffers())
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        out = {m: self.entity[m]() for m in self.names}
        out[JOINT] = self.fuse_entity([out[m] for m in self.names])
        if not self.training:
            self._cache = (key, {m: v.detach() for m, v in out.items()})
        return out

    def decisions(self, e: Tensor, r: Tensor) -> dict[str, Tensor]:
        """Logits (B, E) of each decision (structure, the features, joint) for queries e, r (B,)."""
        cand = self._candidates()
        query = {m: self.entity[m](e) for m in self.names}
        distinct, index = torch.unique(r, return_inverse=True)
        logits = {m: self.decide[m](query[m], self.relation[m][distinct], index) @ cand[m].T for m in self.names}
        joint_e = self.fuse_entity([query[m] for m in self.names])
        joint_r = self.fuse_relation([self.relation[m][r] for m in self.names])
        logits[JOINT] = self.decide[JOINT](joint_e, joint_r) @ cand[JOINT].T
        return logits

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        return mean_probability_logit(list(self.decisions(h, r).values()))

    def kvsall_loss(self, e: Tensor, r: Tensor, y: Tensor) -> Tensor:
        """Sum of the four decisions' BCEs, each a mean over B x E (the code's loss)."""
        return sum(bce_with_logits_mean(s.float(), y) for s in self.decisions(e, r).values())

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """contrastive x the inter-modal contrastive loss on the batch's query entities h."""
        if self.cfg.contrastive <= 0 or len(h) < 2:
            return torch.zeros((), device=h.device)
        return self.cfg.contrastive * contrastive_loss([self.entity[m](h) for m in self.names])
