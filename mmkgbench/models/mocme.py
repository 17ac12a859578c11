"""MoCME: Mixture of Complementary Modality Experts (Li 2025, arXiv:2507.20620).

No public code exists; `../shared/specs/methods.md` §2.3 fills each gap with a marked choice, and
every one of them is a config field here. What the paper states [paper]: per modality K expert
networks give K views of the modality's entity embedding (CMoE); MINE estimates the mutual
information between views, intra-modal weights are a softmax over the negative MI of a view with the
others, inter-modal weights likewise between the fused modality embeddings (CMKF); the unified entity
embedding is scored by RotatE; entropy-guided negative sampling (EGNS) sorts negatives by the binary
entropy of their predicted probability into easy / ambiguous / hard (δ1 = 0.2, δ2 = 0.8) and weighs
them λ_easy < λ_amb < λ_hard in a contrastive loss; d = 256, batch 1024.

Shapes: E entities, M modalities (structure first, then the data's feature modalities in name
order), K views, entity vectors 2d wide ([re; im] of d complex dims). score_t: (B,) x (B,) -> (B, E).

Our readings [choice, methods.md §2.3]:
* encoders: structure is a trainable (E, 2d) table with RotatE's uniform init; a feature modality is
  its frozen features through Linear(D_m, 2d)-ReLU-Linear(2d, 2d); absent rows follow the run's fill
  policy (mmkgbench.features);
* experts: Linear(2d, 2d)-ReLU-Linear(2d, 2d) each, K = M by default;
* MINE: one statistics network T(a, b) = Linear(4d, h)-ReLU-Linear(h, 1) per modality (its view
  pairs) and per modality pair, trained by its own Adam in alternation with the model on detached
  views of the batch's head entities, with MINE's moving-average gradient correction (rate 0.01);
* weights use MI estimates as constants (no gradient), smoothed by a bias-corrected EMA (decay
  0.99); `mi_weights = "batch"` shares one weight per view and modality across entities (the paper's
  batch-level MI), `"entity"` uses each entity's pointwise MI T(a_i, b_i) - log Z, with log Z the EMA
  of the estimator's normaliser. Either way an entity's vector depends only on the parameters and
  buffers, never on which other entities share its batch;
* EGNS is the sampler `egns` of the registry (mmkgbench/samplers/egns.py), MoCME's default
  (`train_defaults["sampler"]`); its thresholds and weights are that sampler's options, and the
  ablation w/o EGNS is `sampler = "uniform"`;
* L2 regulariser (1e-5) on the trainable rows a positive triple uses (structure rows of h and t, the
  relation's phases).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
from torch import Tensor, nn

from mmkgbench.features import FeatureTable
from mmkgbench.layers import linear
from mmkgbench.model import NEGATIVE_SAMPLING_DEFAULTS, KGEModel, ModelInputs, init_, modulus_distance_all
from mmkgbench.ranges import check_config

STRUCTURE = "structure"
FUSIONS = ("complementarity", "mean")
MI_WEIGHTS = ("batch", "entity")


@dataclass(frozen=True)
class MoCMEConfig:
    dim: int = 256                    # d complex dims, vectors 2d wide [paper: d = 256]
    num_experts: int = 0              # K views per modality; 0 = the number of modalities [paper heuristic]
    gamma: float = 12.0               # RotatE margin: 12 on DB15K, 4 on the others (NativE scripts) [choice]
    epsilon: float = 2.0              # RotatE embedding range (gamma + epsilon) / d
    fusion: str = "complementarity"   # | "mean": ablation w/o CMKF (mean of views and of modalities)
    mi_weights: str = "batch"         # | "entity": pointwise MI per entity (methods.md §2.3(e))
    tau: float = 1.0                  # softmax temperature of the weights [choice]
    mi_decay: float = 0.99            # EMA of the MI estimates behind the weights [choice]
    mine_hidden: int = 256            # h of the statistics networks [choice]
    mine_rate: float = 0.01           # MINE's moving average of the normaliser [choice, MINE paper]
    reg: float = 1e-5                 # L2 on the batch's trainable rows [choice, NativE]

    ranges: ClassVar[dict] = {
        "dim": "[1, inf)", "num_experts": "[0, inf)", "gamma": "(0, inf)", "epsilon": "[0, inf)",
        "fusion": FUSIONS, "mi_weights": MI_WEIGHTS, "tau": "(0, inf)", "mi_decay": "[0, 1)",
        "mine_hidden": "[1, inf)", "mine_rate": "(0, 1]", "reg": "[0, inf)"}

    def __post_init__(self):
        check_config(self)             # each field against its rule in `ranges` (mmkgbench.ranges)


class Experts(nn.Module):
    """K two-layer experts of one modality, batched: u (n, w) -> views (n, K, w)."""

    def __init__(self, width: int, k: int, generator: torch.Generator):
        super().__init__()
        layers = [(linear(width, width, generator), linear(width, width, generator)) for _ in range(k)]
        self.w1 = nn.Parameter(torch.stack([a.weight.T for a, _ in layers]).detach().clone())   # (K, w, w)
        self.b1 = nn.Parameter(torch.stack([a.bias for a, _ in layers]).detach().clone())       # (K, w)
        self.w2 = nn.Parameter(torch.stack([b.weight.T for _, b in layers]).detach().clone())
        self.b2 = nn.Parameter(torch.stack([b.bias for _, b in layers]).detach().clone())

    def forward(self, u: Tensor) -> Tensor:
        K, w, _ = self.w1.shape
        # First layer of all K experts as one GEMM (n, w) @ (w, K w); the second per expert (bmm).
        hidden = torch.relu(u @ self.w1.permute(1, 0, 2).reshape(w, K * w) + self.b1.reshape(-1))
        hidden = hidden.view(-1, K, w).transpose(0, 1)                         # (K, n, w)
        return torch.baddbmm(self.b2[:, None, :], hidden, self.w2).transpose(0, 1)   # (n, K, w)


class Statistic(nn.Module):
    """MINE's statistics network T(a, b) = Linear(2w, h)-ReLU-Linear(h, 1): (n, w), (n, w) -> (n,)."""

    def __init__(self, width: int, hidden: int, generator: torch.Generator):
        super().__init__()
        self.a = linear(width, hidden, generator)              # the first layer split by input half:
        self.b = linear(width, hidden, generator, bias=False)  # [a, b] W = a W_a + b W_b
        self.out = linear(hidden, 1, generator)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.out(torch.relu(self.a(a) + self.b(b)))[..., 0]


class MoCME(KGEModel):
    """MoCME. score_t: (B,) x (B,) -> (B, E) logits gamma - RotatE distance of fused vectors."""

    Config = MoCMEConfig
    modalities = ("*",)
    # EGNS, the paper's sampler, from the sampler registry (its numbers unchanged by the move: tests/test_samplers.py)
    train_defaults = {**NEGATIVE_SAMPLING_DEFAULTS, "max_epochs": 1000, "sampler": "egns"}
    # bump when a change alters this model's numbers (part of the run id); 2: EGNS's settings left the
    # model config for the sampler's (same numbers, a new config, so stored v1 runs show as stale)
    version = 2

    def __init__(self, cfg: MoCMEConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        self.names = [STRUCTURE] + sorted(inputs.features)
        M, w = len(self.names), 2 * cfg.dim
        self.K = cfg.num_experts or M
        self.range = (cfg.gamma + cfg.epsilon) / cfg.dim
        self.structure = nn.Parameter(torch.empty(inputs.num_entities, w))
        init_(self.structure, "uniform", generator, a=-self.range, b=self.range)
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, cfg.dim))
        init_(self.relation, "uniform", generator, a=-self.range, b=self.range)
        self.features = nn.ModuleDict({m: FeatureTable(inputs.features[m], inputs.present[m], inputs.fill)
                                       for m in self.names[1:]})
        self.project = nn.ModuleDict({m: nn.Sequential(linear(inputs.features[m].shape[1], w, generator), nn.ReLU(),
                                                       linear(w, w, generator)) for m in self.names[1:]})
        self.experts = nn.ModuleDict({m: Experts(w, self.K, generator) for m in self.names})
        # MI bookkeeping: view pairs (k < j) per modality, and modality pairs (m < n).
        self.view_pairs = list(itertools.combinations(range(self.K), 2))
        self.modality_pairs = list(itertools.combinations(range(M), 2))
        self.mine = cfg.fusion == "complementarity" and bool(self.view_pairs or self.modality_pairs)
        if self.mine:
            h = cfg.mine_hidden
            self.t_view = nn.ModuleList(Statistic(w, h, generator) for _ in self.names) if self.view_pairs else None
            self.t_modality = nn.ModuleList(Statistic(w, h, generator) for _ in self.modality_pairs) \
                if self.modality_pairs else None
            n_slots = M * len(self.view_pairs) + len(self.modality_pairs)
            self.register_buffer("mi_ema", torch.zeros(n_slots))       # EMA of each pair's DV estimate
            self.register_buffer("log_z", torch.zeros(n_slots))        # EMA of log mean exp T(a, b_perm)
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._cache: tuple | None = None

    # -- entity vectors -----------------------------------------------------------------------
    def _views(self, ids: Tensor | None) -> list[Tensor]:
        """Per modality the K views of entities `ids` (all when None): list of M tensors (n, K, 2d)."""
        u = [self.structure if ids is None else self.structure[ids]]
        u += [self.project[m](self.features[m](ids)) for m in self.names[1:]]
        return [self.experts[m](x) for m, x in zip(self.names, u)]

    def _slot(self, m: int, pair: int) -> int:
        return m * len(self.view_pairs) + pair

    def _mi(self) -> Tensor:
        """Bias-corrected EMA of every pair's MI estimate (n_slots,); zeros before the first estimator step."""
        if int(self.steps) == 0:
            return torch.zeros_like(self.mi_ema)
        return self.mi_ema / (1.0 - self.cfg.mi_decay ** int(self.steps))

    def _pointwise(self, stat: Statistic, a: Tensor, b: Tensor, slots: list[int]) -> Tensor:
        """Entity-level MI T(a_i, b_i) - log Z for P pairs: a, b (n, P, w) -> (n, P), log Z the
        estimator's running normaliser; zeros (uniform weights) before its first step, as for
        batch-level weights."""
        if int(self.steps) == 0:
            return a.new_zeros(a.shape[:2])
        return stat(a, b) - self.log_z[torch.tensor(slots, device=a.device)]

    @staticmethod
    def _weights(pair_mi: Tensor, n: int, tau: float) -> Tensor:
        """softmax over -c/tau, c_i = mean MI of item i with the others. pair_mi (..., P) over the pairs
        of combinations(range(n), 2) -> weights (..., n)."""
        c = pair_mi.new_zeros(*pair_mi.shape[:-1], n)
        for p, (i, j) in enumerate(itertools.combinations(range(n), 2)):
            c[..., i] += pair_mi[..., p]
            c[..., j] += pair_mi[..., p]
        return torch.softmax(-c / ((n - 1) * tau), dim=-1)

    def _modality_vectors(self, views: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Intra-modal step: views (M x (n, K, 2d)) -> (modality vectors (n, M, 2d), view weights
        (n or 1, M, K)). The weights are constants (no gradient reaches the MI estimates)."""
        M, K, cfg = len(self.names), self.K, self.cfg
        dev, dt = views[0].device, views[0].dtype
        if not self.mine:
            wa = torch.full((1, M, K), 1.0 / K, device=dev, dtype=dt)
        else:
            with torch.no_grad():
                if self.view_pairs:
                    if cfg.mi_weights == "batch":
                        mi = self._mi()[: M * len(self.view_pairs)].view(1, M, -1)
                    else:
                        i, j = (list(x) for x in zip(*self.view_pairs))
                        mi = torch.stack([self._pointwise(self.t_view[m], v[:, i], v[:, j],
                                                          [self._slot(m, p) for p in range(len(self.view_pairs))])
                                          for m, v in enumerate(views)], 1)              # (n, M, P)
                    wa = self._weights(mi, K, cfg.tau)
                else:
                    wa = torch.ones((1, M, 1), device=dev, dtype=dt)
        return torch.stack([(wa[:, m, :, None] * v).sum(1) for m, v in enumerate(views)], 1), wa

    def fuse(self, views: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """views (M x (n, K, 2d)) -> (entity vectors (n, 2d), view weights (n or 1, M, K), modality
        weights (n or 1, M)). Weights are constants (no gradient reaches the MI estimates)."""
        M, cfg = len(self.names), self.cfg
        e_m, wa = self._modality_vectors(views)
        if not self.mine:
            wb = torch.full((1, M), 1.0 / M, device=e_m.device, dtype=e_m.dtype)
        elif self.modality_pairs:
            with torch.no_grad():
                base = M * len(self.view_pairs)
                if cfg.mi_weights == "batch":
                    mi = self._mi()[base:].view(1, -1)
                else:
                    mi = torch.cat([self._pointwise(self.t_modality[p], e_m[:, i, None], e_m[:, j, None], [base + p])
                                    for p, (i, j) in enumerate(self.modality_pairs)], -1)
                wb = self._weights(mi, M, cfg.tau)
        else:
            wb = torch.ones((1, 1), device=e_m.device, dtype=e_m.dtype)
        return (wb[..., None] * e_m).sum(1), wa, wb

    def embed(self, ids: Tensor | None = None) -> Tensor:
        """Unified entity vectors (n, 2d) of `ids` (all E when None); cached in eval mode."""
        if ids is not None:
            return self.fuse(self._views(ids))[0]
        if not self.training:
            key = tuple(p._version for p in self.parameters()) + tuple(b._version for b in self.buffers())
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        out = self.fuse(self._views(None))[0]
        if not self.training:
            self._cache = (key, out.detach())
        return out

    # -- RotatE on fused vectors ----------------------------------------------------------------
    def _rotated(self, e: Tensor, r: Tensor) -> Tensor:
        """e (B, 2d) real [re; im], r (B,) -> e * exp(i theta_r), complex (B, d)."""
        theta = self.relation[r] / (self.range / math.pi)
        re, im = e.chunk(2, dim=-1)
        return torch.complex(re, im) * torch.polar(torch.ones_like(theta), theta)

    def _distance(self, q: Tensor, t: Tensor) -> Tensor:
        re, im = t.chunk(2, dim=-1)
        return (q - torch.complex(re, im)).abs().sum(-1)

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        ent = self.embed()
        q = self._rotated(ent[h], r)
        t_re, t_im = ent.chunk(2, dim=-1)
        return self.cfg.gamma - modulus_distance_all(q.real, q.imag, t_re, t_im)

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        ids, inv = torch.unique(torch.cat([h, t.reshape(-1)]), return_inverse=True)
        ent = self.embed(ids)
        q = self._rotated(ent[inv[: len(h)]], r)
        tails = ent[inv[len(h):]].view(*t.shape, -1)
        return self.cfg.gamma - self._distance(q[:, None] if t.dim() == 2 else q, tails)

    def negative_scores(self, h: Tensor, r: Tensor, t: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
        """One pass of the encoders for all entities of the step (heads, tails, negatives)."""
        B = len(h)
        ids, inv = torch.unique(torch.cat([h, t, negatives.reshape(-1)]), return_inverse=True)
        ent = self.embed(ids)
        q = self._rotated(ent[inv[:B]], r)
        pos = self.cfg.gamma - self._distance(q, ent[inv[B:2 * B]])
        neg = self.cfg.gamma - self._distance(q[:, None], ent[inv[2 * B:]].view(B, -1, ent.shape[1]))
        return pos, neg

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        if self.cfg.reg <= 0:
            return torch.zeros((), device=h.device)
        terms = [self.structure[h].square().mean(), self.relation[r].square().mean()]
        if t.dim() == 2:                       # negative regime: (B, 1 + k), positives first; KvsAll
            terms.append(self.structure[t[:, 0]].square().mean())   # passes its flat answer list

        return self.cfg.reg * torch.stack(terms).mean()

    # -- MINE, trained by its own optimiser (mmkgbench.train's auxiliary hook) --------------------
    def auxiliary_parameters(self) -> list:
        if not self.mine:
            return []
        return [p for mod in (self.t_view, self.t_modality) if mod is not None for p in mod.parameters()]

    def _mine_terms(self, stat: Statistic, a: Tensor, b: Tensor, slots: list[int]) -> Tensor:
        """DV bounds of P pairs that share one statistics network, a and b (P, n, w) -> (P,) losses,
        with MINE's gradient correction. Each value is -I_DV of the batch; the gradient uses the running
        normaliser (log_z) in place of the batch's, whose gradient is biased. One network call for all
        P pairs, joint and shuffled samples together."""
        P, n, w = a.shape
        perm = torch.argsort(torch.rand(P, n, device=a.device), dim=1)      # one shuffle per pair
        shuffled = torch.gather(b, 1, perm[..., None].expand(-1, -1, w))
        out = stat(torch.cat([a, a]).reshape(-1, w), torch.cat([b, shuffled]).reshape(-1, w)).view(2, P, n)
        joint, marginal = out[0], out[1]
        log_z_batch = torch.logsumexp(marginal, 1) - math.log(n)                # (P,)
        idx = torch.tensor(slots, device=a.device)
        with torch.no_grad():
            rate, decay = self.cfg.mine_rate, self.cfg.mi_decay
            if int(self.steps) == 0 or rate == 1:
                self.log_z[idx] = log_z_batch
            else:     # log of (1 - rate) Z_ema + rate Z_batch
                self.log_z[idx] = torch.logaddexp(math.log1p(-rate) + self.log_z[idx], math.log(rate) + log_z_batch)
            self.mi_ema[idx] = decay * self.mi_ema[idx] + (1 - decay) * (joint.mean(1) - log_z_batch)
        corrected = torch.exp(marginal - self.log_z[idx, None]).mean(1)
        return -(joint.mean(1) - log_z_batch.detach()) + (corrected - corrected.detach())

    def auxiliary_loss(self, h: Tensor, r: Tensor, t: Tensor | None = None) -> Tensor:
        """One estimator step on the views of the batch's head entities (detached): the mean over pairs."""
        with torch.no_grad():
            views = self._views(h)
            e_m = self._modality_vectors(views)[0].unbind(1)
        terms = []
        if self.view_pairs:
            i, j = (list(x) for x in zip(*self.view_pairs))
            for m, v in enumerate(views):
                terms.append(self._mine_terms(self.t_view[m], v[:, i].transpose(0, 1), v[:, j].transpose(0, 1),
                                              [self._slot(m, p) for p in range(len(self.view_pairs))]))
        base = len(self.names) * len(self.view_pairs)
        terms += [self._mine_terms(self.t_modality[p], e_m[i][None], e_m[j][None], [base + p])
                  for p, (i, j) in enumerate(self.modality_pairs)]
        self.steps += 1
        return torch.cat(terms).mean()

    # How the report draws the tables below (mmkgbench.model.KGEModel.interpretation_views): the mean
    # modality weight under every scenario the model ran, ± std over seeds.
    interpretation_views = {
        "modality_weights": {"table": "modality_weights", "kind": "bars", "x": "modality", "value": "weight",
                             "runs": "all", "order": [STRUCTURE, "*"], "range": [0.0, 1.0],
                             "value_label": "mean modality weight", "title": "modality weights per scenario"},
    }

    @torch.no_grad()
    def interpretation(self, triples: Tensor) -> dict[str, pd.DataFrame]:
        """Learned weights over all entities: `view_weights` (modality, view) and `modality_weights`,
        with the MI estimates behind them (batch-level) and, for entity-level weights, their spread."""
        was = self.training
        self.eval()
        try:
            views = self._views(None)
            _, wa, wb = self.fuse(views)
        finally:
            self.train(was)
        mi = self._mi().cpu().numpy() if self.mine else None
        view_rows, modality_rows = [], []
        for m, name in enumerate(self.names):
            for k in range(wa.shape[2]):
                col = wa[:, m, k]
                row = {"modality": name, "view": k, "weight": float(col.mean()), "weight_std": float(col.std())
                       if len(col) > 1 else 0.0}
                if mi is not None and self.view_pairs:
                    own = [mi[self._slot(m, p)] for p, pair in enumerate(self.view_pairs) if k in pair]
                    row["mi"] = float(sum(own) / len(own))
                view_rows.append(row)
            col = wb[:, m]
            row = {"modality": name, "weight": float(col.mean()), "weight_std": float(col.std()) if len(col) > 1 else 0.0}
            if mi is not None and self.modality_pairs:
                base = len(self.names) * len(self.view_pairs)
                own = [mi[base + p] for p, pair in enumerate(self.modality_pairs) if m in pair]
                row["mi"] = float(sum(own) / len(own))
            modality_rows.append(row)
        return {"view_weights": pd.DataFrame(view_rows), "modality_weights": pd.DataFrame(modality_rows)}
