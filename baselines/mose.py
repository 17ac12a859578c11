"""MoSE (Zhao et al., EMNLP 2022, "MoSE: Modality Split and Ensemble for Multimodal Knowledge Graph
Completion"), as its public code (OreOZhao/MoSE4MKGC `src/models.py` ComplExMDR, `src/ensemble.py`,
`src/weight_learning.py`, `src/meta_learner.py`; docs/reference/imf-mose-otkge.md §2) builds it.

Modality split: one ComplEx member per modality m (structure, and every feature modality of the data),
each with its own relation table R_m (2R, 2k) and its own entity vectors,

    e_s = E_s[e],   e_m = ((1 - alpha) E_s[e] + alpha x_m W_m) / scale     (x_m frozen, W_m (D_m, 2k)),

scored phi_m(h, r, t) = Re(<e_m[h], R_m[r], conj(e_m[t])>). Training sums the members' losses: KvsAll
cross-entropy over all entities (`mmkgbench.layers.kvsall_cross_entropy`; the code's 1-vs-all CE) and
N3 (Lacroix et al. 2018) on each member's batch vectors. With alpha = 1 (the code's default) the members
share no parameter, so this is training M independent models.

Ensemble inference (`ensemble`, a scoring field: one training serves every variant):

* "average" (MoSE-AI): s = (1/M) sum_m phi_m.
* "boosting" (MoSE-BI): s = sum_m w_{m,r} phi_m, weights per relation and direction fitted on the
  validation split after training (`calibrate`) by the code's AdaBoost rounds: over the (query,
  candidate) pairs of relation r, with weights D (uniform at first), a member is right on a pair when it
  scores the candidate below the answer (filtered candidates count as right); each round picks the
  not-yet-picked member with the largest a_m = 1/2 ln(D(right) / D(wrong)), adds a_m to its weight and
  reweighs D <- D exp(-a_m p_m), p = +1 right / -1 wrong. Relations with fewer than `min_queries`
  validation queries keep 1/M. The answer's own pair, which the code counts as wrong for every member
  alike, is left out.
* "meta" (MoSE-MI): s = g(phi_1, ..., phi_M) per candidate, g = Linear(M, 32) -> ReLU -> Linear(32, 1),
  trained on the validation queries (both directions) with CE over all entities, Adagrad lr 0.1, batch
  256, 20 epochs (code). The code ends g with a ReLU, which scores every candidate below 0 the same (ties);
  it is left out here, and the last epoch is kept (the code picks the epoch by test Hits@10).

Our default is "average": it is the only variant whose scores need nothing but the training split, so
the checkpoint selected on validation MRR is not then re-fitted on the same validation queries; the
other two are a one-line switch (`--set mose.ensemble=boosting`) scored from the same training run.

Defaults: the code's (rank k = 2000, scale 20, alpha 1, init 1e-3, N3 0.01, Adagrad lr 0.1, batch 1000,
at most 200 epochs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from mmkgbench.features import FeatureTable
from mmkgbench.layers import kvsall_cross_entropy, linear
from mmkgbench.model import KGEModel, ModelInputs, init_
from mmkgbench.multimodal import per_entity, require_features
from mmkgbench.ranges import check_config

STRUCTURE = "structure"
ENSEMBLES = ("average", "boosting", "meta")


@dataclass(frozen=True)
class MoSEConfig:
    dim: int = 2000              # k: rank (learn.py default)
    scale: float = 20.0          # modality vectors divided by it (learn.py default)
    alpha: float = 1.0           # feature share of a modality member's entity vector (code default 1)
    init_scale: float = 1e-3     # tables N(0, 1) x 1e-3 (kbc)
    n3: float = 0.01             # N3 weight per member (learn.py)
    ensemble: str = "average"    # "average" (MoSE-AI) | "boosting" (MoSE-BI) | "meta" (MoSE-MI)
    min_queries: int = 10        # boosting: relations with fewer validation queries keep 1/M (code)
    meta_hidden: int = 32        # meta_learner.py
    meta_epochs: int = 20
    meta_lr: float = 0.1
    meta_batch: int = 256

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "scale": "(0, inf)", "alpha": "[0, 1]", "init_scale": "(0, inf)",
                              "n3": "[0, inf)", "ensemble": ENSEMBLES, "min_queries": "[1, inf)",
                              "meta_hidden": "[1, inf)", "meta_epochs": "[1, inf)", "meta_lr": "(0, inf)",
                              "meta_batch": "[1, inf)"}

    def __post_init__(self):
        check_config(self)


def complex_query(h: Tensor, r: Tensor) -> Tensor:
    """h * r as complex vectors laid out [re; im] (..., 2k): ComplEx scores are then q . t."""
    h_re, h_im = h.chunk(2, dim=-1)
    r_re, r_im = r.chunk(2, dim=-1)
    return torch.cat([h_re * r_re - h_im * r_im, h_re * r_im + h_im * r_re], dim=-1)


def boosting_weights(right: Tensor, rounds: int) -> Tensor:
    """The code's AdaBoost weights of M members from right (n, M) bool (each member right or wrong on
    n weighted pairs, uniform at first) -> (M,) float64; every member is picked once, in `rounds` = M.
    Only the pair weights D (n,) are held in float64: a relation of 2,000 validation queries against
    12,842 entities is 26 M pairs."""
    n, M = right.shape
    D = torch.full((n,), 1.0 / n, dtype=torch.float64, device=right.device)
    w = torch.zeros(M, dtype=torch.float64, device=right.device)
    free = list(range(M))
    tiny = 1e-12
    for _ in range(rounds):
        total = D.sum()
        good = torch.stack([D[right[:, m]].sum() for m in range(M)])
        a = 0.5 * torch.log((good + tiny) / (total - good + tiny))
        m = max(free, key=lambda k: (float(a[k]), -k))           # the largest a; ties: the first member
        w[m] += a[m]
        free.remove(m)
        D = D * torch.exp(torch.where(right[:, m], -a[m], a[m]))
        D = D / D.sum()
    return w


class MoSE(KGEModel):
    """MoSE. score_t: (B,) x (B,) -> (B, E) ensemble of the members' ComplEx logits, higher is better."""

    Config = MoSEConfig
    modalities = ("*",)
    train_defaults = dict(regime="kvsall", loss="ce", optimizer="adagrad", lr=0.1, batch_size=1000,
                          label_smoothing=0.0, max_epochs=200)
    version = 1
    scoring_fields = ("ensemble",)

    def __init__(self, cfg: MoSEConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        require_features(inputs, "MoSE")
        self.features = sorted(inputs.features)
        self.names = [STRUCTURE] + self.features
        E, R2, w, M = inputs.num_entities, inputs.num_relations, 2 * cfg.dim, len(self.names)
        self.entity = nn.Parameter(torch.empty(E, w))
        init_(self.entity, "normal", generator, std=cfg.init_scale)
        self.relation = nn.ParameterDict()
        for m in self.names:
            self.relation[m] = nn.Parameter(torch.empty(R2, w))
            init_(self.relation[m], "normal", generator, std=cfg.init_scale)
        self.tables = nn.ModuleDict({m: FeatureTable(inputs.features[m], inputs.present[m], inputs.fill)
                                     for m in self.features})
        self.proj = nn.ParameterDict()
        for m in self.features:
            self.proj[m] = nn.Parameter(torch.empty(inputs.features[m].shape[1], w))
            init_(self.proj[m], "xavier_uniform", generator)
        # Fitted on validation by `calibrate` (state of the checkpoint, not trained by the optimiser)
        self.register_buffer("boost", torch.full((R2, M), 1.0 / M))
        self.meta = nn.Sequential(linear(M, cfg.meta_hidden, generator), nn.ReLU(), linear(cfg.meta_hidden, 1, generator))
        for p in self.meta.parameters():
            p.requires_grad_(False)

    def _member(self, m: str, idx: Tensor | None) -> Tensor:
        s = self.entity if idx is None else self.entity[idx]
        if m == STRUCTURE:
            return s
        x = per_entity(lambda ids: self.tables[m](ids) @ self.proj[m], idx)
        a = self.cfg.alpha
        return (x if a == 1 else (1 - a) * s + a * x) / self.cfg.scale

    def members(self, h: Tensor, r: Tensor) -> Tensor:
        """Every member's logits phi_m(h, r, .) stacked: (M, B, E)."""
        return torch.stack([complex_query(self._member(m, h), self.relation[m][r]) @ self._member(m, None).T
                            for m in self.names])

    def ensemble(self, phi: Tensor, r: Tensor, how: str) -> Tensor:
        """Members' logits phi (M, B, E) -> ensemble scores (B, E) by `how` (see the module docstring)."""
        if how == "average":
            return phi.mean(0)
        if how == "boosting":
            return torch.einsum("bm,mbe->be", self.boost[r].to(phi.dtype), phi)
        return self.meta(phi.permute(1, 2, 0))[..., 0]

    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        return self.ensemble(self.members(h, r), r, self.cfg.ensemble)

    def kvsall_loss(self, e: Tensor, r: Tensor, y: Tensor) -> Tensor:
        """Sum over members of the cross-entropy over all entities (the code's per-modality CE)."""
        return sum(kvsall_cross_entropy(s.float(), y) for s in self.members(e, r))

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """n3 x sum over members of mean_b sum_k |x_bk|^3 for x = the member's head, relation and tail
        vectors (complex moduli). t: (B, 1 + k) in the negative regime (its positives used), or the flat
        answer list of a KvsAll batch."""
        if self.cfg.n3 == 0:
            return torch.zeros((), device=h.device)
        tails = t[:, 0] if t.dim() == 2 else t

        def n3(x: Tensor) -> Tensor:
            re, im = x.chunk(2, dim=-1)
            return (re * re + im * im).pow(1.5).sum(-1).mean() if len(x) else x.new_zeros(())
        total = sum(n3(self._member(m, h)) + n3(self.relation[m][r]) + n3(self._member(m, tails)) for m in self.names)
        return self.cfg.n3 * total

    # -- fitting the ensemble on validation (the runner calls this after selecting the checkpoint) --
    @torch.no_grad()
    def _valid_queries(self, triples: np.ndarray, device) -> tuple[Tensor, Tensor, Tensor]:
        t = torch.as_tensor(np.array(triples, dtype=np.int64).reshape(-1, 3), device=device)
        R = self.num_relations // 2
        return torch.cat([t[:, 0], t[:, 2]]), torch.cat([t[:, 1], t[:, 1] + R]), torch.cat([t[:, 2], t[:, 0]])

    def calibrate(self, triples: np.ndarray, known, *, seed: int = 0, batch_size: int = 256) -> None:
        """Fit the current `ensemble`'s weights on validation triples (n, 3) (h, r, t), both directions;
        known: the validation filter (mmkgbench.ranking.KnownAnswers). "average" has nothing to fit."""
        if self.cfg.ensemble == "average":
            return
        was = self.training
        self.eval()
        device = self.entity.device
        e, r, a = self._valid_queries(triples, device)
        if self.cfg.ensemble == "boosting":
            self._fit_boosting(e, r, a, known, batch_size)
        else:
            self._fit_meta(e, r, a, seed)
        self.train(was)

    @torch.no_grad()
    def _fit_boosting(self, e: Tensor, r: Tensor, a: Tensor, known, batch_size: int) -> None:
        M = len(self.names)
        boost = torch.full_like(self.boost, 1.0 / M)
        for rel in torch.unique(r).tolist():
            rows = (r == rel).nonzero()[:, 0]
            if len(rows) < self.cfg.min_queries:
                continue
            right = []
            for sl in rows.split(batch_size):
                phi = self.members(e[sl], r[sl])                               # (M, b, E)
                target = phi.gather(2, a[sl][None, :, None].expand(M, -1, 1))
                ok = (phi < target).permute(1, 2, 0)                           # (b, E, M)
                ok |= known.mask(e[sl], r[sl], phi.shape[2])[..., None]       # filtered: counted right
                keep = torch.ones(ok.shape[:2], dtype=torch.bool, device=ok.device)
                keep[torch.arange(len(sl), device=ok.device), a[sl]] = False   # the answer's own pair
                right.append(ok[keep])
            boost[rel] = boosting_weights(torch.cat(right), M).to(boost.dtype)
        self.boost.copy_(boost)

    def _fit_meta(self, e: Tensor, r: Tensor, a: Tensor, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        params = list(self.meta.parameters())
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adagrad(params, lr=self.cfg.meta_lr)
        try:
            for _ in range(self.cfg.meta_epochs):
                for idx in torch.randperm(len(e), generator=gen).to(e.device).split(self.cfg.meta_batch):
                    with torch.no_grad():
                        phi = self.members(e[idx], r[idx])
                    logp = torch.log_softmax(self.ensemble(phi, r[idx], "meta"), 1)
                    loss = -logp.gather(1, a[idx][:, None]).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        finally:
            for p in params:
                p.requires_grad_(False)

    # -- what the model explains about itself ----------------------------------------------------
    interpretation_views = {
        "ensemble_weights": {"table": "ensemble_weights", "kind": "bars", "x": "modality", "value": "weight",
                             "order": [STRUCTURE, "*"], "value_label": "mean ensemble weight",
                             "title": "ensemble weights of the modality members"},
        "ensemble_by_relation": {"table": "ensemble_weights", "kind": "heatmap", "index": "relation",
                                 "labels": "relation_name", "columns": ["modality"], "value": "weight",
                                 "where": {"direction": "tail"}, "order": [STRUCTURE, "*"],
                                 "value_label": "ensemble weight", "title": "ensemble weights per relation (tail queries)"},
    }

    @torch.no_grad()
    def interpretation(self, triples: Tensor) -> dict[str, pd.DataFrame]:
        """The ensemble's weight per (relation, direction, modality member): 1/M under "average", the fitted
        boosting weights under "boosting", and under "meta" d g / d phi_m at the members' mean logits of
        the training queries' answers (the meta-learner's local weight), weighted by the queries each
        relation has in `triples` (n, 3)."""
        R = self.num_relations // 2
        rel = torch.cat([triples[:, 1], triples[:, 1] + R])
        counts = torch.bincount(rel, minlength=2 * R)
        used = counts.nonzero()[:, 0]
        if self.cfg.ensemble == "meta":
            weights = self._meta_slopes(triples)[None].expand(len(self.boost), -1)
        elif self.cfg.ensemble == "boosting":
            weights = self.boost
        else:
            weights = torch.full_like(self.boost, 1.0 / len(self.names))
        frame = pd.DataFrame({"relation": np.tile(used.cpu().numpy(), len(self.names)),
                              "modality": np.repeat(self.names, len(used)),
                              "weight": weights[used].T.reshape(-1).cpu().numpy(),
                              "queries": np.tile(counts[used].cpu().numpy(), len(self.names))})
        frame["direction"] = np.where(frame["relation"] >= R, "head", "tail")
        frame["relation"] = frame["relation"] % R
        return {"ensemble_weights": frame.sort_values(["relation", "direction", "modality"], ignore_index=True)}

    def _meta_slopes(self, triples: Tensor) -> Tensor:
        was = self.training
        self.eval()
        t = triples[:2048]
        phi = self.members(t[:, 0], t[:, 1]).gather(2, t[:, 2][None, :, None].expand(len(self.names), -1, 1))
        x = phi[..., 0].T.mean(0, keepdim=True).clone().requires_grad_(True)
        with torch.enable_grad():
            grad = torch.autograd.grad(self.meta(x).sum(), x)[0][0]
        self.train(was)
        return grad
