"""MMRNS: relation-enhanced negative sampling (Xu et al., ACM MM 2022; quqxui/MMRNS `KCA_model.py`,
`run_gumbel.py`; docs/reference/mans-mmrns.md).

For each batch a pool P of `pool` candidate entities (uniform without replacement, shared by the
batch, 1500 in the code) is scored against each positive's true answer t by a knowledge-guided
cross-modal attention network (KCA) and k negatives are drawn from the pool by Gumbel-top-k, which is
what the code's k sequential masked Gumbel-softmax draws without replacement amount to. Shapes: B
positives, P pool, S_i image and S_t text tokens per entity of widths F_i, F_t, a = attention_dim.

KCA, per candidate e and relation vector r (read from the model's `relation` table):
  I_e = LeakyReLU(W_img x_img) (S_i, a), T_e = LeakyReLU(W_txt x_txt) (S_t, a), C_e = I_e T_eᵀ (S_i, S_t);
  image view  = W_iproj vec( LN((G1(r) ⊙ C_e)ᵀ I_e) + LN(softmax_i(C_eᵀ) I_e) ),  G1(r) = σ(W_r1 r) (S_i, S_t);
  text view   = W_tproj vec( LN((G2(r) ⊙ C_e) T_e) + LN(softmax_t(C_e) T_e) ),   G2(r) = σ(W_r2 r);
  structure   = s_e ⊙ σ(W_3 LeakyReLU(W_1 [s_e; r])), s_e the model's `entity` row.
Each view of a candidate is compared with the same view of the answer t by cosine (norms detached,
as the code), and the sampling distribution is q = Σ_views softmax_P(sim / τ_s), with the exploration
temperature annealed τ_s = τ_0 / (1 + ln(s + 1)) over the sampler's steps s (τ_0 = 10). Known train
answers of the query are masked out of the pool (the code adds log 1e-38), so the sampler is filtered.

The sampler is trained jointly with the model (one backward; its own Adam at `lr`, the code's kca_lr)
by the code's contrastive term, added to the model's loss with weight 1 / (3 loss_rate): per view,
−log( Σ_{(b,p) known answers} ω e^{sim} / Σ_{(b,p) others} ω e^{sim} ) over the whole batch, ω = 1/P
multiplied by the loss weight of each drawn negative. Like the code, the term also reaches the
model's entity and relation tables.

Deviations (stated): (1) the code also passes the model's loss to KCA through straight-through
one-hots (negatives embedded as Y·E[P]); our negatives are ids, so KCA learns from the contrastive
term only; (2) features are one vector per entity and modality here; `image_tokens` / `text_tokens`
split a vector into that many tokens (the code reads 24 BEiT tokens and 4 sentence vectors); with one
token each the cross-modal attention reduces to the relation gates on a scalar C_e; (3) a batch with
no known answer in its pool has no contrastive term that step (the code's would be infinite);
(4) rows whose pool holds fewer than k allowed candidates get the rest uniformly among non-answers.
The base model needs `entity` (E, w) and `relation` (2R, w_r) parameter tables (every structural
baseline has them); the code's paper setting is TransE with 20 negatives, α = 0.5 (paper-main's row).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkgbench.layers import linear
from mmkgbench.ranges import check_config
from mmkgbench.samplers.base import NegativeSampler

IMAGE, TEXT = "image", "text"


@dataclass(frozen=True)
class MMRNSConfig:
    pool: int = 1500                       # pre-sampled candidates per batch [code README]
    exploration_temperature: float = 10.0  # tau_0 [code README]
    anneal: bool = True                    # tau_s = tau_0 / (1 + ln(s + 1)) [code run_gumbel.py]
    attention_dim: int = 50                # a [code KCA_model.py]
    gate_hidden: int = 100                 # structural gate MLP [code]
    image_tokens: int = 1                  # tokens an image vector is split into [choice; code: 24 BEiT tokens]
    text_tokens: int = 1                   # [choice; code: 4 sentence vectors]
    loss_rate: float = 100.0               # contrastive terms weigh 1 / (3 loss_rate) [code README]
    lr: float = 1e-4                       # the sampler's Adam (kca_lr) [code README]
    filter: bool = True                    # known train answers masked out of the pool [code]

    ranges: ClassVar[dict] = {"pool": "[1, inf)", "exploration_temperature": "(0, inf)", "anneal": None,
                              "attention_dim": "[1, inf)", "gate_hidden": "[1, inf)", "image_tokens": "[1, inf)",
                              "text_tokens": "[1, inf)", "loss_rate": "(0, inf)", "lr": "(0, inf)", "filter": None}

    def __post_init__(self):
        check_config(self)
        if not self.filter:
            raise ValueError("MMRNSConfig: filter = false is not offered: the method masks known answers out of "
                             "its pool, and its contrastive term needs them")


class KCA(nn.Module):
    """Knowledge-guided cross-modal attention: the three views of entities under relations."""

    def __init__(self, image: Tensor, text: Tensor, cfg: MMRNSConfig, entity_width: int, relation_width: int,
                 generator: torch.Generator):
        super().__init__()
        E = image.shape[0]
        si, st = cfg.image_tokens, cfg.text_tokens
        for name, x, s in ((IMAGE, image, si), (TEXT, text, st)):
            if x.shape[1] % s:
                raise ValueError(f"sampler 'mmrns': {name} features of width {x.shape[1]} cannot be split into "
                                 f"{s} tokens ({name}_tokens)")
        self.register_buffer("image", image.reshape(E, si, -1).float())     # (E, S_i, F_i), frozen
        self.register_buffer("text", text.reshape(E, st, -1).float())       # (E, S_t, F_t)
        a = cfg.attention_dim
        self.si, self.st = si, st
        self.w_img = linear(self.image.shape[2], a, generator)
        self.w_txt = linear(self.text.shape[2], a, generator)
        self.gate_img = linear(relation_width, si * st, generator)
        self.gate_txt = linear(relation_width, si * st, generator)
        self.proj_img = linear(st * a, a, generator)
        self.proj_txt = linear(si * a, a, generator)
        self.norm = nn.LayerNorm(a)
        self.gate1 = linear(entity_width + relation_width, cfg.gate_hidden, generator)
        self.gate2 = linear(cfg.gate_hidden, entity_width, generator)

    def views(self, ids: Tensor, rel: Tensor, structure: Tensor, paired: bool) -> list[Tensor]:
        """The image, text and structure views of entities `ids` under relation vectors rel (B, w_r).

        paired: ids (B,) each with its own relation -> views (B, ·); else ids (P,) under every relation
        -> views (B, P, ·). structure: the entities' rows of the model's entity table."""
        act = lambda x: F.leaky_relu(x, 0.1)                                     # noqa: E731
        I, T = act(self.w_img(self.image[ids])), act(self.w_txt(self.text[ids]))   # (n, S_i, a), (n, S_t, a)
        C = I @ T.transpose(1, 2)                                                # (n, S_i, S_t)
        B = rel.shape[0]
        g1 = torch.sigmoid(self.gate_img(rel)).view(B, self.si, self.st)
        g2 = torch.sigmoid(self.gate_txt(rel)).view(B, self.si, self.st)
        plain_img = self.norm(torch.softmax(C.transpose(1, 2), -1) @ I)           # (n, S_t, a)
        plain_txt = self.norm(torch.softmax(C, -1) @ T)                           # (n, S_i, a)
        if paired:
            guided_img = torch.einsum("nij,nia->nja", g1 * C, I)
            guided_txt = torch.einsum("nij,nja->nia", g2 * C, T)
            img = self.proj_img((self.norm(guided_img) + plain_img).flatten(1))
            txt = self.proj_txt((self.norm(guided_txt) + plain_txt).flatten(1))
            gate = self.gate2(act(self.gate1(torch.cat([structure, rel], -1))))
            return [img, txt, structure * torch.sigmoid(gate)]
        guided_img = torch.einsum("bij,pij,pia->bpja", g1, C, I)                  # (B, P, S_t, a)
        guided_txt = torch.einsum("bij,pij,pja->bpia", g2, C, T)                  # (B, P, S_i, a)
        img = self.proj_img((self.norm(guided_img) + plain_img).flatten(2))       # (B, P, a)
        txt = self.proj_txt((self.norm(guided_txt) + plain_txt).flatten(2))
        w = structure.shape[1]
        # W_1 [s; r] = W_1s s + W_1r r: per candidate and per relation, summed, not concatenated B x P times
        w1s, w1r = self.gate1.weight[:, :w], self.gate1.weight[:, w:]
        hidden = act((structure @ w1s.T)[None] + (rel @ w1r.T + self.gate1.bias)[:, None])   # (B, P, h)
        gate = torch.sigmoid(self.gate2(hidden))                                  # (B, P, w)
        return [img, txt, structure[None] * gate]


def cosine_detached(x: Tensor, anchor: Tensor) -> Tensor:
    """<x, anchor> / stop_grad(|x| |anchor|): x (B, P, w), anchor (B, w) -> (B, P) (the code's form)."""
    dot = torch.einsum("bpw,bw->bp", x, anchor)
    norm = (x.norm(dim=-1) * anchor.norm(dim=-1)[:, None]).clamp_min(1e-12)
    return dot / norm.detach()


class MMRNS(NegativeSampler):
    """Negatives drawn by Gumbel-top-k from a relation-aware cross-modal distribution over a pool."""

    Config = MMRNSConfig
    reference = "Xu et al. 2022 (MMRNS), relation-enhanced negative sampling"
    modalities = (IMAGE, TEXT)

    def bind(self, model, inputs=None, seed: int = 0) -> None:
        entity, relation = getattr(model, "entity", None), getattr(model, "relation", None)
        if not isinstance(entity, torch.Tensor) or not isinstance(relation, torch.Tensor) or entity.dim() != 2:
            raise ValueError(f"sampler 'mmrns' reads the model's structural tables `entity` (E, w) and `relation` "
                             f"(2R, w_r); {type(model).__name__} has no such tables (TransE, DistMult, ComplEx, "
                             f"RotatE, PairRE and the NATIVE-family baselines do)")
        if inputs is None or any(m not in inputs.features for m in self.modalities):
            raise ValueError("sampler 'mmrns' reads image and text features; the run passed none "
                             "(mmkgbench.runner.sampler_inputs gives them)")
        self.model = model
        self.generator = torch.Generator().manual_seed(seed)
        device = entity.device
        self.kca = KCA(inputs.features[IMAGE], inputs.features[TEXT], self.cfg, entity.shape[1], relation.shape[1],
                       torch.Generator().manual_seed(seed + 1)).to(device)
        self.steps = 0
        self.pending = None

    def parameters(self) -> list:
        return list(self.kca.parameters())

    def temperature(self) -> float:
        tau = self.cfg.exploration_temperature
        return tau / (1.0 + math.log(self.steps + 1)) if self.cfg.anneal else tau

    def draw(self, hrt: Tensor, generator: torch.Generator) -> Tensor:
        device = self.model.entity.device
        E, k = self.num_entities, self.num_negatives
        P = min(self.cfg.pool, E)
        pool = torch.randperm(E, generator=generator)[:P]                          # shared by the batch
        B = len(hrt)
        known = self.known.contains(hrt[:, 0].repeat_interleave(P), hrt[:, 1].repeat_interleave(P),
                                    pool.repeat(B)).view(B, P)                      # (B, P) known answers
        h, r, t = (x.to(device) for x in hrt.unbind(1))
        pool_d = pool.to(device)
        rel = self.model.relation[r]
        cand = self.kca.views(pool_d, rel, self.model.entity[pool_d], paired=False)   # 3 x (B, P, ·)
        anchor = self.kca.views(t, rel, self.model.entity[t], paired=True)             # 3 x (B, ·)
        sims = [cosine_detached(c, a) for c, a in zip(cand, anchor)]
        tau = self.temperature()
        with torch.no_grad():
            q = sum(torch.softmax(s / tau, dim=1) for s in sims)                       # (B, P), rows sum to 3
            logits = torch.log(q).cpu().masked_fill(known, -math.inf)
            gumbel = -torch.log(-torch.log(torch.rand(B, P, generator=self.generator).clamp_min(1e-20)))
            picks = torch.topk(logits + gumbel, min(k, P), dim=1).indices            # distinct per row
        neg = pool[picks]
        if neg.shape[1] < k:                                                          # pool smaller than k
            neg = torch.cat([neg, torch.randint(E, (B, k - neg.shape[1]), generator=generator)], 1)
        neg = self.exclude_known(hrt, neg, generator)       # rows with fewer than k allowed pool members
        self.steps += 1
        self.pending = (neg, pool, known, picks, sims)
        return neg

    def loss(self, hrt: Tensor, negatives: Tensor, w: Tensor) -> Tensor | None:
        if self.pending is None or not self.model.training:
            return None
        neg, pool, known, picks, sims = self.pending
        self.pending = None
        if not torch.equal(neg, negatives.cpu()):
            raise RuntimeError("sampler 'mmrns': the loss was asked for negatives it did not draw last")
        B, P = known.shape
        device = sims[0].device
        known = known.to(device)
        if not known.any():
            return None
        omega = torch.full((B, P), 1.0 / P, device=device)
        kk = min(picks.shape[1], w.shape[1])
        omega.scatter_(1, picks[:, :kk].to(device), (1.0 / P) * w[:, :kk].to(device).float())
        total = 0.0
        for s in sims:
            ws = torch.log(omega) + s
            top = torch.logsumexp(ws[known], 0)
            bottom = torch.logsumexp(ws[~known], 0)
            total = total + (bottom - top)
        return total / (3.0 * self.cfg.loss_rate)
