"""AdaMF with its modality-adversarial training (MAT) (Zhang et al., COLING 2024, "Unleashing the Power of
Imbalanced Modality Information for Multi-modal Knowledge Graph Completion"; code zjukg/AdaMF-MAT,
`AdvMixRotatE`, `AdvMixTrainer`) and NativE (Zhang et al., SIGIR 2024, "NativE: Multi-modal Knowledge
Graph Completion in the Wild"; code zjukg/NATIVE, `AdvRelRotatE*`, `WCGTrainer*GP`), one family:
docs/reference/adamf-native.md gives every formula with its source line.

Entity e has a structural vector e_s (2d, [re; im]) and, per feature modality m, e_m = P_m(x_m) (2d),
P_m one linear map (AdaMF) or Linear -> ReLU -> Linear (NativE) of the entity's features. Fusion:

    beta_m(e, r) = softmax_m( w . tanh(e_m) / tau_r ),   e_hat = sum_m beta_m e_m     (m over s and features)

with one shared vector w, and tau_r = sigmoid(rho_r), a learned scalar per relation, in NativE
(`relation_temperature`; 1 in AdaMF, so AdaMF's weights are per entity). The score is RotatE on the
fused vectors only, f(h, r, t) = gamma - sum_k |h_hat_k e^{i theta_rk} - t_hat_k|.

Adversarial training (`adversarial`): a generator G (noise z ~ N(0, I_64) and the entity's structural
vector, "separate": one MLP per modality as AdaMF; "combined": one MLP that also reads the projected
modality vectors and writes them all, as NativE; [z; input] -> 512 -> LeakyReLU -> 2d per modality)
makes fake projected modality vectors; fake entities are fused from them. For each positive (h, r, t),
three fake triples score f1 = f(h~, r, t), f2 = f(h, r, t~), f3 = f(h~, r, t~). One model step, then one
generator step (its own Adam, lr `generator_lr`; the training loop's auxiliary hook):

* "mat" (AdaMF): model term mu sum_j L(f+, f_j), generator term sum_j L(f_j, f+), L(p, n) the sigmoid
  loss -1/2 [mean log s(p) + mean log s(-n)]: the model learns to score real above fake, G to fool it.
  The code's self-adversarial softmax runs over the batch axis there (a shape quirk); here each
  positive's fake is its own single negative (weight 1).
* "wgan" (NativE): critic term mu [sum_j (mean f_j - mean f+) + `gradient_penalty` GP], generator term
  mean_j mean (gamma - f_j). GP = mean_b (||d dist / d x_b|| - 1)^2 at x = u h_hat + (1 - u) h~ (u ~ U(0, 1)
  per triple) for the both-fake triple. For RotatE the norm of that gradient is sqrt(d) wherever no
  coordinate difference is 0 (every complex coordinate contributes a unit vector), so the GP is the
  constant (sqrt(d) - 1)^2 and sends no gradient: NativE's code computes it on detached tensors and
  gets that constant (tests/test_mm_baselines2_formulas.py checks both facts). It is computed here
  with the graph kept, as a working penalty would be, and weighted as the code weights it.

The adversarial terms need the positives' tails, so they run in the negative regime (the literature's);
under KvsAll the model trains without them and the generator takes no step.

Defaults. AdaMF: the DB15K script (d 250, gamma 12, 128 Bernoulli negatives, Adam lr 2e-5, batch 1024,
1000 epochs, alpha 2, features fine-tuned). Its scripts set mu = 0, which switches MAT off; mu = 1e-4
here is NativE's released weight [choice] (adversarial = "none" is the scripts' AdaMF). NativE: the
MKG-W/MKG-Y scripts (d 250, gamma 4, lr 1e-4, mu 1e-4, lr_G 1e-4, L2 1e-5 on the structural batch
vectors, frozen features; DB15K uses gamma 12). Under the margin-free sigmoid loss gamma matters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkgbench.features import FeatureTable
from mmkgbench.layers import linear
from mmkgbench.model import KGEModel, ModelInputs, init_
from mmkgbench.multimodal import (distance_all, distance_hrt, per_entity, phase_of, relation_means, require_features,
                                  rotation)
from mmkgbench.ranges import check_config

STRUCTURE = "structure"
ADVERSARIAL = ("none", "mat", "wgan")
GENERATORS = ("separate", "combined")


@dataclass(frozen=True)
class AdaMFConfig:
    dim: int = 250                     # d complex dims, entity width 2d (AdaMF DB15K script)
    gamma: float = 12.0                # AdaMF DB15K / MKG-W scripts (MKG-Y: 4)
    epsilon: float = 2.0               # init ranges (gamma + epsilon) / d (every script)
    projector_layers: int = 1          # AdaMF: Linear; NativE: Linear -> ReLU -> Linear
    relation_temperature: bool = False  # NativE: fusion logits / sigmoid(rho_r)
    trainable_features: bool = True    # AdaMF fine-tunes the feature tables; NativE freezes them
    adversarial: str = "mat"           # "none" | "mat" (AdaMF) | "wgan" (NativE)
    mu: float = 1e-4                   # weight of the adversarial term [choice: NativE's; AdaMF scripts 0 = off]
    generator: str = "separate"        # "separate" (AdaMF) | "combined" (NativE)
    noise_dim: int = 64                # both codes
    generator_hidden: int = 512        # both codes
    generator_lr: float = 1e-4         # -lrg default of both codes
    gradient_penalty: float = 0.0      # NativE's beta = 0.1 (wgan only), times mu
    reg: float = 0.0                   # NativE 1e-5: L2 of the batch's structural vectors (AdaMF: none)

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "gamma": "(0, inf)", "epsilon": "[0, inf)",
                              "projector_layers": (1, 2), "relation_temperature": None, "trainable_features": None,
                              "adversarial": ADVERSARIAL, "mu": "[0, inf)", "generator": GENERATORS,
                              "noise_dim": "[1, inf)", "generator_hidden": "[1, inf)", "generator_lr": "(0, inf)",
                              "gradient_penalty": "[0, inf)", "reg": "[0, inf)"}

    def __post_init__(self):
        check_config(self)
        if self.adversarial != "none" and self.mu <= 0:
            raise ValueError(f"{type(self).__name__}: adversarial = {self.adversarial!r} needs mu > 0 "
                             "(mu = 0 trains a generator that changes nothing; use adversarial = 'none')")
        if self.gradient_penalty > 0 and self.adversarial != "wgan":
            raise ValueError(f"{type(self).__name__}: gradient_penalty belongs to adversarial = 'wgan'")


@dataclass(frozen=True)
class NativEConfig(AdaMFConfig):
    dim: int = 250                     # NativE scripts (all data sets but TIVA)
    gamma: float = 4.0                 # MKG-W, MKG-Y, KVC16K scripts (DB15K: 12)
    projector_layers: int = 2
    relation_temperature: bool = True
    trainable_features: bool = False
    adversarial: str = "wgan"
    generator: str = "combined"
    gradient_penalty: float = 0.1      # WCGTrainerGP's beta
    reg: float = 1e-5                  # run_adv_wgan_gp.py regul_rate


class AdaMF(KGEModel):
    """AdaMF (and NativE, the subclass below). score_t: (B,) x (B,) -> (B, E) logits gamma - distance."""

    Config = AdaMFConfig
    modalities = ("*",)
    train_defaults = dict(regime="negative", loss="softplus", adversarial_temperature=2.0, corruption="bern",
                          num_negatives=128, optimizer="adam", lr=2e-5, batch_size=1024, max_epochs=1000)
    version = 1
    owner = "AdaMF"

    def __init__(self, cfg: AdaMFConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        require_features(inputs, self.owner)
        self.features = sorted(inputs.features)
        self.names = [STRUCTURE] + self.features
        d, w = cfg.dim, 2 * cfg.dim
        self.relation_range = (cfg.gamma + cfg.epsilon) / d
        entity_range = (cfg.gamma + cfg.epsilon) / w
        self.entity = nn.Parameter(torch.empty(inputs.num_entities, w))
        self.relation = nn.Parameter(torch.empty(inputs.num_relations, d))
        init_(self.entity, "uniform", generator, a=-entity_range, b=entity_range)
        init_(self.relation, "uniform", generator, a=-self.relation_range, b=self.relation_range)
        self.tables = nn.ModuleDict({m: FeatureTable(inputs.features[m], inputs.present[m], inputs.fill,
                                                     cfg.trainable_features) for m in self.features})
        self.project = nn.ModuleDict()
        for m in self.features:
            n_in = inputs.features[m].shape[1]
            layers = [linear(n_in, w, generator)] if cfg.projector_layers == 1 else \
                [linear(n_in, w, generator), nn.ReLU(), linear(w, w, generator)]
            self.project[m] = nn.Sequential(*layers)
        self.attention = linear(w, 1, generator, bias=False)          # the shared fusion vector w
        if cfg.relation_temperature:
            self.temperature = nn.Parameter(torch.empty(inputs.num_relations, 1))
            init_(self.temperature, "uniform", generator, a=-entity_range, b=entity_range)
        if cfg.adversarial != "none":
            M, z = len(self.features), cfg.noise_dim
            if cfg.generator == "separate":
                self.gen = nn.ModuleList(self._mlp(z + w, w, generator) for _ in self.features)
            else:
                self.gen = nn.ModuleList([self._mlp(z + (M + 1) * w, M * w, generator)])
        self._cache: tuple | None = None

    def _mlp(self, n_in: int, n_out: int, generator) -> nn.Sequential:
        return nn.Sequential(linear(n_in, self.cfg.generator_hidden, generator), nn.LeakyReLU(0.01),
                             linear(self.cfg.generator_hidden, n_out, generator))

    # -- modality vectors and fusion -------------------------------------------------------------
    def _stack(self, idx: Tensor | None) -> Tensor:
        vecs = [self.entity if idx is None else self.entity[idx]]
        vecs += [self.project[m](self.tables[m](idx)) for m in self.features]
        return torch.stack(vecs, -2)

    def vectors(self, idx: Tensor | None) -> Tensor:
        """Modality vectors [e_s, e_m...] of entities idx (..., M + 1, 2d), projected once per distinct entity."""
        if idx is None:
            return self._stack(None)
        return per_entity(lambda ids: self._stack(ids).flatten(-2), idx).unflatten(-1, (len(self.names), -1))

    def tau(self, r: Tensor) -> Tensor | None:
        """The relation temperature sigmoid(rho_r) (B, 1), or None (AdaMF)."""
        return torch.sigmoid(self.temperature[r]) if self.cfg.relation_temperature else None

    def fuse(self, vecs: Tensor, tau: Tensor | None = None, logits: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """vecs (..., M + 1, 2d), tau broadcastable to (..., 1) -> fused (..., 2d), weights beta (..., M + 1)."""
        a = self.attention(torch.tanh(vecs))[..., 0] if logits is None else logits
        if tau is not None:
            a = a / tau
        beta = torch.softmax(a, -1)
        return (beta[..., None] * vecs).sum(-2), beta

    def _all(self) -> tuple[Tensor, Tensor]:
        """All entities' modality vectors (E, M + 1, 2d) and fusion logits (E, M + 1); cached in eval mode."""
        if not self.training:
            key = tuple(p._version for p in self.parameters()) + tuple(b._version for b in self.buffers())
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        vecs = self._stack(None)
        out = (vecs, self.attention(torch.tanh(vecs))[..., 0])
        if not self.training:
            self._cache = (key, tuple(v.detach() for v in out))
        return out

    def _query(self, fused_h: Tensor, r: Tensor) -> Tensor:
        return rotation(phase_of(self.relation[r], self.relation_range), self.cfg.dim, fused_h)

    def _distance(self, fused_h: Tensor, r: Tensor, fused_t: Tensor) -> Tensor:
        return distance_hrt("rotate", self._query(fused_h, r), fused_t)

    # -- the harness contract --------------------------------------------------------------------
    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        tau = self.tau(r)
        q = self._query(self.fuse(self.vectors(h), tau)[0], r)
        vecs, logits = self._all()
        if tau is None:
            return self.cfg.gamma - distance_all("rotate", q, self.fuse(vecs, logits=logits)[0])
        # NativE: candidates are fused with the query relation's temperature, once per distinct relation
        out = q.new_empty(len(h), len(vecs))
        distinct, index = torch.unique(r, return_inverse=True)
        for u in range(len(distinct)):
            rows = (index == u).nonzero()[:, 0]
            cand = self.fuse(vecs, tau[rows[0]], logits)[0]
            out[rows] = self.cfg.gamma - distance_all("rotate", q[rows], cand)
        return out

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        tau = self.tau(r)
        fh = self.fuse(self.vectors(h), tau)[0]
        ft = self.fuse(self.vectors(t), None if tau is None else (tau if t.dim() == 1 else tau[:, None]))[0]
        return self.cfg.gamma - self._distance(fh, r, ft)

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """The model's side of the adversarial game (negative regime: t (B, 1 + k), positives first) and
        NativE's L2 term reg x mean(mean e_h^2, mean theta_r^2, mean e_t^2) over the batch rows."""
        total = torch.zeros((), device=h.device)
        if self.cfg.reg > 0:
            total = total + self.cfg.reg * torch.stack([self.entity[h].square().mean(), self.relation[r].square().mean(),
                                                        self.entity[t].square().mean()]).mean()
        if self.cfg.adversarial == "none" or t.dim() != 2:
            return total
        real, fakes, pair = self.adversarial_scores(h, r, t[:, 0])
        if self.cfg.adversarial == "mat":
            term = sum(0.5 * (F.softplus(-real).mean() + F.softplus(f).mean()) for f in fakes.unbind(1))
        else:
            term = (fakes.mean(0) - real.mean()).sum()
            if self.cfg.gradient_penalty > 0:
                term = term + self.cfg.gradient_penalty * self.gradient_penalty(r, *pair)
        return total + self.cfg.mu * term

    # -- the generator ---------------------------------------------------------------------------
    def fake(self, vecs: Tensor) -> Tensor:
        """vecs (B, M + 1, 2d) -> the same with every feature modality's vector replaced by G's fake."""
        B, M1, w = vecs.shape
        z = torch.randn(B, self.cfg.noise_dim, device=vecs.device, dtype=vecs.dtype)
        if self.cfg.generator == "separate":
            inp = torch.cat([z, vecs[:, 0]], -1)
            fakes = [g(inp) for g in self.gen]
        else:
            fakes = list(self.gen[0](torch.cat([z, vecs.reshape(B, M1 * w)], -1)).split(w, -1))
        return torch.stack([vecs[:, 0]] + fakes, 1)

    def adversarial_scores(self, h: Tensor, r: Tensor, t: Tensor):
        """Scores of the positives (B,) and of their three fake triples (B, 3): (h~, t), (h, t~), (h~, t~);
        and the fused real and fake (head, tail) of the last, for the gradient penalty."""
        tau = self.tau(r)
        vh, vt = self.vectors(h), self.vectors(t)
        fh, ft = self.fuse(vh, tau)[0], self.fuse(vt, tau)[0]
        gh, gt = self.fuse(self.fake(vh), tau)[0], self.fuse(self.fake(vt), tau)[0]
        g = self.cfg.gamma
        real = g - self._distance(fh, r, ft)
        fakes = torch.stack([g - self._distance(gh, r, ft), g - self._distance(fh, r, gt),
                             g - self._distance(gh, r, gt)], 1)
        return real, fakes, ((fh, ft), (gh, gt))

    def gradient_penalty(self, r: Tensor, real: tuple, fake: tuple) -> Tensor:
        """mean_b (||grad_x dist(x, r, y)||_2 - 1)^2 at x, y interpolated between the real and fake fused
        (head, tail), one u ~ U(0, 1) per triple (NativE's form; the graph is kept)."""
        u = torch.rand(len(r), 1, device=r.device)
        x = u * real[0] + (1 - u) * fake[0]
        y = u * real[1] + (1 - u) * fake[1]
        if not x.requires_grad:
            x = x.requires_grad_()
        grad = torch.autograd.grad(self._distance(x, r, y).sum(), x, create_graph=True)[0]
        return (grad.norm(dim=-1) - 1).square().mean()

    def auxiliary_parameters(self) -> list:
        return list(self.gen.parameters()) if self.cfg.adversarial != "none" else []

    def auxiliary_lr(self) -> float:
        return self.cfg.generator_lr

    def auxiliary_loss(self, h: Tensor, r: Tensor, t: Tensor | None = None) -> Tensor | None:
        """The generator's step on the batch's positives (h, r, t); None under KvsAll (no positive tails)."""
        if t is None:
            return None
        real, fakes, _ = self.adversarial_scores(h, r, t)
        real = real.detach()
        if self.cfg.adversarial == "mat":
            return sum(0.5 * (F.softplus(-f).mean() + F.softplus(real).mean()) for f in fakes.unbind(1))
        return (self.cfg.gamma - fakes).mean()

    # -- what the model explains about itself ----------------------------------------------------
    interpretation_views = {
        "fusion_weights": {"table": "fusion_weights", "kind": "bars", "x": "modality", "value": "weight",
                           "order": [STRUCTURE, "*"], "range": [0.0, 1.0], "value_label": "mean fusion weight",
                           "title": "adaptive fusion weights (query entities)"},
        "fusion_by_relation": {"table": "fusion_weights", "kind": "heatmap", "index": "relation",
                               "labels": "relation_name", "columns": ["modality"], "value": "weight",
                               "where": {"direction": "tail"}, "order": [STRUCTURE, "*"], "range": [0.0, 1.0],
                               "value_label": "mean fusion weight", "title": "fusion weights per relation (tail queries)"},
    }

    @torch.no_grad()
    def interpretation(self, triples: Tensor, max_queries: int = 20000) -> dict[str, pd.DataFrame]:
        """Mean fusion weight beta per (relation, direction, modality) of the query entities of training
        queries (h of (h, r, ?), t of (t, r^-1, ?)), at most `max_queries` triples (the first ones)."""
        was = self.training
        self.eval()
        t = triples[:max_queries]
        R = self.num_relations // 2
        e = torch.cat([t[:, 0], t[:, 2]])
        r = torch.cat([t[:, 1], t[:, 1] + R])
        rows = []
        for sl in torch.arange(len(e)).split(4096):
            beta = self.fuse(self.vectors(e[sl]), self.tau(r[sl]))[1].cpu().numpy()
            rel = r[sl].cpu().numpy()
            rows += [pd.DataFrame({"relation": rel, "modality": m, "weight": beta[:, i]})
                     for i, m in enumerate(self.names)]
        self.train(was)
        return {"fusion_weights": relation_means(rows, ["relation", "modality"], "weight", R)}


class NativE(AdaMF):
    """NativE: AdaMF with relation temperatures, two-layer projectors and the WGAN-style game.
    score_t: (B,) x (B,) -> (B, E) logits gamma - distance."""

    Config = NativEConfig
    train_defaults = {**AdaMF.train_defaults, "lr": 1e-4}
    version = 1
    owner = "NativE"

