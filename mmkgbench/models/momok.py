"""MoMoK (Zhang et al., "Multiple Heads are Better than One: Mixture of Modality Knowledge Experts for
Entity Representation Learning", arXiv:2405.16869), as its public code (zjukg/MoMoK, `models/RelMoE.py`,
`models/modules.py`, `train.py`) does it; methods.md §1 gives every detail with its source line.

Per modality m (structure, and every feature modality of the data: image, text, numeric, ...):

* an entity table E_m (structure: Xavier-normal, d; features: initialised from them, trainable,
  absent rows by the run's fill policy) and a relation table R_m (2R, d_r);
* ReMoKE, K relation-guided experts: V_i(x) = W_i (x - b_i) (W_i ~ N(0, 0.02²), D_m -> D_m); gate
  logits x·G (code) or U·V_i(x) (paper, `variant="paper"`), plus learned Gaussian noise
  xi * (softplus(x·Q) + 0.01) in training only, divided by the relation temperature sigmoid(eps_r)
  for the query entity; e_hat = sum_i g_i V_i(x). Candidates use the same experts without the
  relation (plain softmax; fresh noise in training), as the code does;
* a TuckER decision: core (d_r, D_m, D_m), BN0 -> dropout .3 -> core slice (dropout .4) -> BN1 ->
  dropout .5, scored against the candidate embeddings.

MuJoD: a joint entity embedding fuses the modalities' expert outputs (2 heads; per head, per modality
ReLU(Linear(Dropout .2(z))), attention softmax over modalities with one shared scoring vector; heads
summed); the joint relation fuses the R_m[r]; a fourth TuckER decision (d, d, d) scores it.

Training (KvsAll): sum over decisions of BCE (each averaged over B x E) + mu · CLUB, CLUB being the
sampled upper bound of the mutual information between two experts' outputs (ExID), whose variational
network is trained by its own Adam in alternation (the training loop's auxiliary hook).
Test-time score: the mean of the decisions' sigmoid probabilities; `score_t` returns its logit, a
strictly increasing function of it computed without float32 saturation (see `combine`).

Switches (each recorded in the run's config): `variant`, `relation_temperature`, `gate_noise`,
`adaptive_fusion`, `joint_training`, `exid`, `decision` (the paper's ablation rows), and the CLUB
forms `club_pairs` / `club_loglik` where the paper and the code differ, and `club_axis`, the code's
indexing before its CLUB fix (commit 3c3932c) (methods.md §1.7).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkgbench.features import FeatureTable
from mmkgbench.layers import Dropout, TuckERDecision, bce_with_logits_mean, linear, mean_probability_logit
from mmkgbench.model import KGEModel, ModelInputs, init_
from mmkgbench.ranges import check_config

STRUCTURE, JOINT = "structure", "joint"


@dataclass(frozen=True)
class MoMoKConfig:
    dim: int = 256                   # d, structural entity dim (code train.py default)
    relation_dim: int = 256          # d_r (code default; --dim does not change it)
    num_experts: int = 3             # K (code default, paper's best)
    mu: float = 1e-4                 # weight of the CLUB term (code train.py)
    variant: str = "code"            # "code": gate scored from the input; "paper": from each expert's output
    relation_temperature: bool = True   # ablation (2.1): w/o relational eps_r
    gate_noise: bool = True          # ablation (2.2): w/o noise delta
    adaptive_fusion: bool = True     # ablation (2.3): joint = plain mean over modalities
    joint_training: bool = True      # ablation (2.4): joint decision trained on detached modality outputs [choice]
    exid: bool = True                # ablation (2.5): w/o ExID (no CLUB term, no estimator)
    decision: str = "mean"           # "mean" (MuJoD) | "structure" | "joint" | a modality: rows (1.1)-(1.4)
    club_pairs: str = "one"          # "one": one random expert pair per step (code) | "all": every ordered pair (paper)
    club_loglik: str = "momok"       # "momok": -(mu-y)^2/(2 e^lv) (code) | "reference": CLUB's -(mu-y)^2/e^lv - lv
    # Which axis of the (B, K, D) expert outputs the random pair (i, j) indexes, in the penalty and in the
    # estimator's step. "expert": experts i and j over the batch (code since commit 3c3932c, 2025-06-12,
    # and the paper). "batch": the code before that fix, strs[idx1] / strs[idx2] with idx in range(K),
    # i.e. batch rows i, j < K, each holding its K expert outputs as CLUB's samples (methods.md §1.7).
    club_axis: str = "expert"
    fusion_heads: int = 2
    fusion_dropout: float = 0.2
    input_dropout: float = 0.3
    hidden_dropout: float = 0.4
    output_dropout: float = 0.5

    ranges: ClassVar[dict] = {
        "dim": "[1, inf)", "relation_dim": "[1, inf)", "num_experts": "[1, inf)", "mu": "[0, inf)",
        "variant": ("code", "paper"), "relation_temperature": None, "gate_noise": None, "adaptive_fusion": None,
        "joint_training": None, "exid": None,
        "decision": None,                 # its choices depend on the data's modalities: checked when built
        "club_pairs": ("one", "all"), "club_loglik": ("momok", "reference"), "club_axis": ("expert", "batch"),
        "fusion_heads": "[1, inf)", "fusion_dropout": "[0, 1)", "input_dropout": "[0, 1)",
        "hidden_dropout": "[0, 1)", "output_dropout": "[0, 1)"}

    def __post_init__(self):
        check_config(self)             # each field against its rule in `ranges` (mmkgbench.ranges)
        checks = [(not (self.club_axis == "batch" and self.club_pairs == "all"),
                   "club_axis='batch' is the pre-fix code, which draws one pair: it needs club_pairs='one'"),
                  (not (self.exid and self.num_experts < 2), "ExID needs num_experts >= 2 (or exid = false)")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"MoMoKConfig: {msg}")


class Experts(nn.Module):
    """ReMoKE for one modality [code RelMoE.py:L13-L66]. x (B, D) -> (mixed (B, D), experts (B, K, D), gates (B, K))."""

    def __init__(self, dim: int, k: int, *, gate_from: str, noise: bool, generator: torch.Generator):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, dim, dim))        # V_i(x) = W_i (x - b_i)
        init_(self.weight, "normal", generator, std=0.02)
        self.centre = nn.Parameter(torch.zeros(k, dim))
        self.gate_from = gate_from
        if gate_from == "input":
            self.gate = nn.Parameter(torch.zeros(dim, k))           # code: logits = x G
        else:
            self.gate = nn.Parameter(torch.zeros(dim))              # paper: logit_i = U . V_i(x)
        self.noise = nn.Parameter(torch.zeros(dim, k)) if noise else None

    def forward(self, x: Tensor, temperature: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        experts = torch.einsum("bkd,ked->bke", x[:, None, :] - self.centre, self.weight)
        logits = x @ self.gate if self.gate_from == "input" else experts @ self.gate
        if self.noise is not None and self.training:
            logits = logits + torch.randn_like(logits) * (F.softplus(x @ self.noise) + 0.01)
        if temperature is not None:
            logits = logits / temperature                           # sigmoid(eps_r) in (0, 1): only sharpens
        gates = torch.softmax(logits, dim=-1)
        return (gates[..., None] * experts).sum(1), experts, gates


class Fusion(nn.Module):
    """MuJoD fusion [code RelMoE.py:L80-L129]: list of (B, D_m) -> (fused (B, out), modality weights (B, M)
    averaged over heads)."""

    def __init__(self, dims: list[int], out: int, heads: int, dropout: float, adaptive: bool,
                 generator: torch.Generator):
        super().__init__()
        self.heads = nn.ModuleList(nn.ModuleList(linear(d, out, generator) for d in dims) for _ in range(heads))
        self.attn = linear(out, 1, generator, bias=False)
        self.dropout = Dropout(dropout)
        self.adaptive = adaptive

    def forward(self, zs: list[Tensor]) -> tuple[Tensor, Tensor]:
        fused, weights = 0.0, 0.0
        for head in self.heads:
            p = torch.stack([F.relu(lin(self.dropout(z))) for lin, z in zip(head, zs)], 1)   # (B, M, out)
            if self.adaptive:
                a = torch.softmax(self.attn(p)[..., 0], dim=-1)
            else:
                a = torch.full(p.shape[:2], 1.0 / p.shape[1], device=p.device, dtype=p.dtype)
            fused = fused + (a[..., None] * p).sum(1)
            weights = weights + a / len(self.heads)
        return fused, weights


def tucker_decision(dim: int, rel_dim: int, cfg: MoMoKConfig, generator: torch.Generator) -> TuckERDecision:
    """One modality's TuckER scorer [code layers/layer.py:L72-L97]: query (B, D), relation (B, D_r) -> (B, D),
    the shared layer (mmkgbench.layers.TuckERDecision) with MoMoK's dropouts and its Xavier-uniform core."""
    return TuckERDecision(dim, rel_dim, input_dropout=cfg.input_dropout, hidden_dropout=cfg.hidden_dropout,
                          output_dropout=cfg.output_dropout, core_init="xavier_uniform", generator=generator)


class CLUB(nn.Module):
    """Sampled CLUB estimator Q(y | x) = N(mu(x), diag e^lv(x)) [code models/modules.py:L32-L112]."""

    def __init__(self, dim: int, generator: torch.Generator):
        super().__init__()
        hidden = max(1, dim // 2)
        self.mu = nn.Sequential(linear(dim, hidden, generator), nn.ReLU(), linear(hidden, dim, generator))
        self.logvar = nn.Sequential(linear(dim, hidden, generator), nn.ReLU(), linear(hidden, dim, generator),
                                    nn.Tanh())

    def upper_bound(self, x: Tensor, y: Tensor, all_negatives: bool) -> Tensor:
        """1/2 mean_b [log Q(y_b|x_b) - log Q(y_neg|x_b)] without the constant; x, y (B, D) -> scalar."""
        mu, inv_var = self.mu(x), torch.exp(-self.logvar(x))
        positive = -((mu - y) ** 2 * inv_var).sum(-1)
        if all_negatives:      # paper: every other batch entity; expansion of sum_k (mu_bk - y_ck)^2 / v_bk
            sq = (mu ** 2 * inv_var).sum(-1)[:, None] - 2 * (mu * inv_var) @ y.T + inv_var @ (y ** 2).T
            B = len(x)
            negative = -(sq.sum(1) - torch.diagonal(sq)) / max(B - 1, 1)
        else:                  # code: one permuted partner per sample
            negative = -((mu - y[torch.randperm(len(y), device=y.device)]) ** 2 * inv_var).sum(-1)
        return (positive - negative).mean() / 2.0

    def loglik(self, x: Tensor, y: Tensor, form: str) -> Tensor:
        mu, lv = self.mu(x), self.logvar(x)
        if form == "momok":   # MoMoK drops CLUB's -lv term and halves (methods.md §1.7)
            return (-(mu - y) ** 2 / 2.0 / lv.exp()).sum(1).mean()
        return (-(mu - y) ** 2 / lv.exp() - lv).sum(1).mean()


class MoMoK(KGEModel):
    """MoMoK. score_t: (B,) x (B,) -> (B, E), logit of the mean decision probability (higher is better)."""

    Config = MoMoKConfig
    modalities = ("*",)
    train_defaults = dict(regime="kvsall", optimizer="adam", lr=5e-4, batch_size=1024, label_smoothing=0.1,
                          weight_decay=0.0, lr_decay=1.0, max_epochs=2000)
    version = 1                   # bump when a change alters this model's numbers (part of the run id)
    # Rows (1.1)-(1.4) of the paper's ablation only change which decision scores: one training serves all.
    scoring_fields = ("decision",)

    def __init__(self, cfg: MoMoKConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        self.names = [STRUCTURE] + sorted(inputs.features)
        valid = ("mean", JOINT, *self.names)
        if cfg.decision not in valid:
            raise ValueError(f"MoMoK decision {cfg.decision!r} is not one of {list(valid)} for this data")
        E, R2, d, dr = inputs.num_entities, inputs.num_relations, cfg.dim, cfg.relation_dim
        structure = torch.empty(E, d)
        init_(structure, "xavier_normal", generator)
        self.entity = nn.ModuleDict({STRUCTURE: FeatureTable(structure, torch.ones(E, dtype=torch.bool), "zeros",
                                                             trainable=True)})
        for m in self.names[1:]:
            self.entity[m] = FeatureTable(inputs.features[m], inputs.present[m], inputs.fill, trainable=True)
        self.dims = {m: int(self.entity[m].table.shape[1]) for m in self.names}
        self.relation = nn.ParameterDict()
        for m in self.names:
            self.relation[m] = nn.Parameter(torch.empty(R2, dr))
            init_(self.relation[m], "xavier_normal", generator)
        if cfg.relation_temperature:
            self.temperature = nn.Parameter(torch.empty(R2, 1))     # eps_r ~ N(0, 1), PyTorch's Embedding init
            init_(self.temperature, "normal", generator, std=1.0)
        gate_from = "input" if cfg.variant == "code" else "experts"
        self.experts = nn.ModuleDict({m: Experts(self.dims[m], cfg.num_experts, gate_from=gate_from,
                                                 noise=cfg.gate_noise, generator=generator) for m in self.names})
        self.decide = nn.ModuleDict({m: tucker_decision(self.dims[m], dr, cfg, generator) for m in self.names})
        dims = [self.dims[m] for m in self.names]
        self.fuse_entity = Fusion(dims, d, cfg.fusion_heads, cfg.fusion_dropout, cfg.adaptive_fusion, generator)
        self.fuse_relation = Fusion([dr] * len(self.names), d, cfg.fusion_heads, cfg.fusion_dropout,
                                    cfg.adaptive_fusion, generator)
        self.decide[JOINT] = tucker_decision(d, d, cfg, generator)
        if cfg.exid:
            self.club = nn.ModuleDict({m: CLUB(self.dims[m], generator) for m in self.names})
        self._cache: tuple | None = None

    def rescore(self, **changes) -> None:
        valid = ("mean", JOINT, *self.names)
        if changes.get("decision", "mean") not in valid:
            raise ValueError(f"MoMoK decision {changes['decision']!r} is not one of {list(valid)} for this data")
        super().rescore(**changes)

    # -- pieces -------------------------------------------------------------------------------
    def _temperature(self, r: Tensor) -> Tensor | None:
        return torch.sigmoid(self.temperature[r]) if self.cfg.relation_temperature else None

    def _candidates(self) -> dict[str, Tensor]:
        """Relation-free embeddings of all E entities per decision (E, D_m); cached in eval mode."""
        if not self.training:
            key = tuple(p._version for p in self.parameters()) + tuple(b._version for b in self.buffers())
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        out = {m: self.experts[m](self.entity[m]())[0] for m in self.names}
        zs = [out[m] if self.cfg.joint_training else out[m].detach() for m in self.names]
        out[JOINT] = self.fuse_entity(zs)[0]
        if not self.training:
            self._cache = (key, {m: v.detach() for m, v in out.items()})
        return out

    def _forward(self, e: Tensor, r: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """Per-decision logits (B, E), the query entities' expert outputs (B, K, D_m), and gates (B, K)."""
        temp = self._temperature(r)
        query, experts, gates = {}, {}, {}
        for m in self.names:
            query[m], experts[m], gates[m] = self.experts[m](self.entity[m](e), temp)
        rel = {m: self.relation[m][r] for m in self.names}
        zs = [query[m] if self.cfg.joint_training else query[m].detach() for m in self.names]
        rs = [rel[m] if self.cfg.joint_training else rel[m].detach() for m in self.names]
        query[JOINT], gates["fusion"] = self.fuse_entity(zs)
        joint_relation = self.fuse_relation(rs)[0]          # per query: the fusion's dropout differs by row
        cand = self._candidates()
        distinct, index = torch.unique(r, return_inverse=True)
        logits = {m: self.decide[m](query[m], self.relation[m][distinct], index) @ cand[m].T for m in self.names}
        logits[JOINT] = self.decide[JOINT](query[JOINT], joint_relation) @ cand[JOINT].T
        return logits, experts, gates

    @staticmethod
    def combine(logits: dict[str, Tensor], decision: str) -> Tensor:
        """The joint decision as a score (B, E): logit(P), P = mean_m sigmoid(s_m)
        (`mmkgbench.layers.mean_probability_logit`), or one decision's logits."""
        if decision != "mean":
            return logits[decision]
        return mean_probability_logit(list(logits.values()))

    # -- the harness contract -----------------------------------------------------------------
    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        return self.combine(self._forward(h, r)[0], self.cfg.decision)

    def kvsall_loss(self, e: Tensor, r: Tensor, y: Tensor) -> Tensor:
        """Sum of the decisions' BCEs (each a mean over B x E) + mu · CLUB [code RelMoE.py:L318-L323, train.py:L131].

        The code's BCELoss on sigmoid outputs equals BCE with logits, computed here in the stable form.
        """
        logits, experts, _ = self._forward(e, r)
        loss = sum(bce_with_logits_mean(s.float(), y) for s in logits.values())
        if self.cfg.exid and self.cfg.mu > 0:
            loss = loss + self.cfg.mu * self.club_penalty(experts)
        return loss

    def _pairs(self) -> list[tuple[int, int]]:
        K = self.cfg.num_experts
        if self.cfg.club_pairs == "all":
            return [(i, j) for i in range(K) for j in range(K) if i != j]
        i, j = torch.randperm(K)[:2].tolist()       # two distinct experts, shared by all modalities (code)
        return [(i, j)]

    def club_penalty(self, experts: dict[str, Tensor]) -> Tensor:
        """Mean over modalities (and expert pairs) of the CLUB upper bound between two experts' outputs."""
        pairs, terms = self._pairs(), []
        for m in self.names:
            x = experts[m]
            terms += [self.club[m].upper_bound(*self.club_samples(x, i, j), self.cfg.club_pairs == "all")
                      for i, j in pairs]
        return torch.stack(terms).mean()

    def club_samples(self, x: Tensor, i: int, j: int) -> tuple[Tensor, Tensor]:
        """The CLUB pair (x, y) from one modality's expert outputs x (B, K, D), by `club_axis`:
        "expert": experts i and j, (B, D) each; "batch" (pre-fix code): batch rows i and j, (K, D) each."""
        if self.cfg.club_axis == "expert":
            return x[:, i], x[:, j]
        if len(x) < self.cfg.num_experts:
            # The pre-fix code indexes rows < K of the batch; with fewer rows it fails (IndexError) too.
            raise ValueError(f"MoMoK club_axis='batch' compares batch rows i, j < num_experts = "
                             f"{self.cfg.num_experts}, but the batch has only {len(x)} queries")
        return x[i], x[j]

    def auxiliary_parameters(self) -> list:
        return list(self.club.parameters()) if self.cfg.exid else []

    def auxiliary_loss(self, h: Tensor, r: Tensor, t: Tensor | None = None) -> Tensor:
        """The estimator's step: -log-likelihood of one expert's output given another's, on detached outputs."""
        pairs, terms = self._pairs(), []
        for m in self.names:
            with torch.no_grad():
                x = self.experts[m](self.entity[m](h))[1]
            terms += [-self.club[m].loglik(*self.club_samples(x, i, j), self.cfg.club_loglik) for i, j in pairs]
        return torch.stack(terms).mean()

    # How the report draws the tables below (mmkgbench.model.KGEModel.interpretation_views), from the
    # clean run of the lowest seed: structure first, the features, the joint decision last (self.names).
    interpretation_views = {
        "expert_gates": {"table": "expert_gates", "kind": "heatmap", "index": "relation", "labels": "relation_name",
                         "columns": ["modality", "expert"], "value": "weight", "where": {"direction": "tail"},
                         "order": [STRUCTURE, "*"], "range": [0.0, 1.0], "value_label": "mean gate weight",
                         "title": "expert gates (tail queries)"},
        "fusion_weights": {"table": "fusion_weights", "kind": "bars", "x": "modality", "value": "weight",
                           "order": [STRUCTURE, "*"], "range": [0.0, 1.0], "value_label": "mean fusion weight",
                           "title": "adaptive fusion weights"},
        "decision_probability": {"table": "decision_probability", "kind": "bars", "x": "modality",
                                 "value": "probability", "order": [STRUCTURE, "*", JOINT], "range": [0.0, 1.0],
                                 "value_label": "mean P(true answer)",
                                 "title": "decisions: P(true answer)"},
    }

    @torch.no_grad()
    def interpretation(self, triples: Tensor, max_queries: int = 20000) -> dict[str, pd.DataFrame]:
        """Per relation (both directions): mean gate per (modality, expert), mean fusion weight per
        modality, and each decision's mean probability of the true answer, over training queries.

        triples: (n, 3) int64 (h, r, t); at most `max_queries` of them (the first ones) are used.
        """
        was = self.training
        self.eval()
        t = triples[:max_queries]
        R = self.num_relations // 2
        e = torch.cat([t[:, 0], t[:, 2]])
        r = torch.cat([t[:, 1], t[:, 1] + R])
        answer = torch.cat([t[:, 2], t[:, 0]])
        gates_rows, fusion_rows, contrib_rows = [], [], []
        for sl in torch.arange(len(e)).split(512):
            logits, _, gates = self._forward(e[sl], r[sl])
            rel = r[sl].cpu().numpy()
            for m in self.names:
                g = gates[m].cpu().numpy()
                for k in range(g.shape[1]):
                    gates_rows.append(pd.DataFrame({"relation": rel, "modality": m, "expert": k, "weight": g[:, k]}))
            fw = gates["fusion"].cpu().numpy()
            for i, m in enumerate(self.names):
                fusion_rows.append(pd.DataFrame({"relation": rel, "modality": m, "weight": fw[:, i]}))
            for m, s in logits.items():
                p = torch.sigmoid(s.gather(1, answer[sl][:, None])[:, 0]).cpu().numpy()
                contrib_rows.append(pd.DataFrame({"relation": rel, "modality": m, "probability": p}))
        self.train(was)

        def mean_by(rows, keys, value):
            frame = pd.concat(rows, ignore_index=True)
            out = frame.groupby(keys, sort=True)[value].agg(["mean", "count"]).reset_index()
            out["direction"] = np.where(out["relation"] >= R, "head", "tail")
            out["relation"] = out["relation"] % R
            return out.rename(columns={"mean": value, "count": "queries"})

        return {"expert_gates": mean_by(gates_rows, ["relation", "modality", "expert"], "weight"),
                "fusion_weights": mean_by(fusion_rows, ["relation", "modality"], "weight"),
                "decision_probability": mean_by(contrib_rows, ["relation", "modality"], "probability")}
