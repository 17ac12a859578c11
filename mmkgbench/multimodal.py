"""Pieces shared by the multi-modal baselines of the translational and early-fusion family
(IKRL, TBKGC, TransAE, MMKRL, RSME, VBKGC, QEB; MoMoK's Table 1): entity vectors projected from the
modality features, and scores that are sums of translation (or rotation) energies over combinations
of structural and multi-modal vectors.

* `FeatureEncoder`: modality features -> an entity vector of width `out`. Every modality the data
  has is read (image, text, numeric, audio, ...), through `mmkgbench.features.FeatureTable`, so the
  run's fill policy decides what absent entities get ("learned" adds a trainable vector). "joint"
  concatenates the modalities and projects once (QEB, MMKRL; IKRL and RSME with an image only);
  "split" projects each modality to its share of `out` and concatenates (TBKGC's d/2 image + d/2 text).
  `trainable` fine-tunes the feature tables themselves, as NATIVE does for IKRL, TBKGC, MMKRL and QEB
  (docs/reference/native-mm-baselines.md §0.4).
* `energy_all` / `energy_hrt`: the sum of energies of a list of terms (head kind, relation kind,
  tail kind), e.g. IKRL's four terms ("s", "r", "s"), ("i", "r", "i"), ("i", "r", "s"), ("s", "r", "i").
  Kernels: "l1" / "l2" (TransE, ||a + r - b||_p, with a, r, b L2-normalised first when `normalize`,
  inside every term, as NATIVE's `_calc` does) and "rotate" (RotatE, sum_k |a_k e^{i theta_k} - b_k|,
  vectors [re; im] of width 2d, relation phases of width d). For 1-vs-all scores, terms that share a
  tail kind are computed in one call on stacked queries, so IKRL needs two (2B, E, d) passes, not four.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkgbench.features import FeatureTable
from mmkgbench.layers import linear
from mmkgbench.model import ModelInputs, l1_distance_all, modulus_distance_all

KERNELS = ("l1", "l2", "rotate")
ENCODINGS = ("joint", "split")


def split_sizes(total: int, parts: int) -> list[int]:
    """`total` columns shared among `parts` as evenly as possible, the first ones one wider."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def per_entity(fn, idx: Tensor | None) -> Tensor:
    """fn(ids) -> (n, w) computed once per distinct entity of idx and gathered back to (*idx.shape, w).

    A training batch names each entity many times (1,024 positives x 129 tail columns against
    12,842 DB15K entities): projecting 4,864 feature columns per occurrence instead of per entity
    cost 54 s a batch on 2 cores (benchmarks/bench_mm_baselines.py). Row-wise maps give the same
    numbers either way."""
    if idx is None:
        return fn(None)
    ids, inverse = torch.unique(idx.reshape(-1), return_inverse=True)
    out = fn(ids)
    return out[inverse].view(*idx.shape, out.shape[-1])


def require_features(inputs: ModelInputs, owner: str) -> None:
    """The error every model that reads features raises when the data has none (owner: its name)."""
    if not inputs.features:
        raise ValueError(f"{owner} reads feature modalities (image, text, ...), but the data has none: give the "
                         "data set features (a grid's `features = ...`) or use a structure-only model")


class FeatureEncoder(nn.Module):
    """Entity vectors from the modality features: forward(idx) -> (..., out) for entity ids idx (all
    E rows when idx is None). See the module docstring for `how` and `trainable`.

    out = None: no projection, forward returns `raw` (TransAE's auto-encoder input). owner names the
    model in the error raised when the data has no feature modality.
    """

    def __init__(self, inputs: ModelInputs, out: int | None, *, how: str, trainable: bool, generator: torch.Generator,
                 owner: str, bias: bool = True):
        super().__init__()
        if how not in ENCODINGS:
            raise ValueError(f"{owner}: feature encoding must be one of {list(ENCODINGS)}, got {how!r}")
        require_features(inputs, owner)
        self.modalities = list(inputs.features)
        self.tables = nn.ModuleDict({m: FeatureTable(inputs.features[m], inputs.present[m], inputs.fill, trainable)
                                     for m in self.modalities})
        dims = [inputs.features[m].shape[1] for m in self.modalities]
        self.how = how
        if out is None:
            self.proj = nn.ModuleList()
        elif how == "joint":
            self.proj = nn.ModuleList([linear(sum(dims), out, generator, bias)])
        else:
            sizes = split_sizes(out, len(dims))
            if min(sizes) < 1:
                raise ValueError(f"{owner}: width {out} cannot be split among {len(dims)} modalities")
            self.proj = nn.ModuleList(linear(d, s, generator, bias) for d, s in zip(dims, sizes))
        self.in_dim = sum(dims)

    def raw(self, idx: Tensor | None = None) -> Tensor:
        """The (filled) features of all modalities, concatenated: (..., sum d_m)."""
        return torch.cat([self.tables[m](idx) for m in self.modalities], -1)

    def forward(self, idx: Tensor | None = None) -> Tensor:
        return per_entity(self._project, idx)

    def _project(self, idx: Tensor | None) -> Tensor:
        if not len(self.proj):
            return self.raw(idx)
        if self.how == "joint":
            return self.proj[0](self.raw(idx))
        return torch.cat([p(self.tables[m](idx)) for p, m in zip(self.proj, self.modalities)], -1)


def unit(x: Tensor) -> Tensor:
    """x / max(||x||_2, 1e-12) along the last axis (F.normalize; NATIVE's norm_flag)."""
    return F.normalize(x, p=2, dim=-1)


def rotation(phase: Tensor, d: int, a: Tensor) -> Tensor:
    """a (..., 2d) as [re; im] rotated by e^{i phase}, phase (..., d) in radians -> (..., 2d)."""
    re, im = a[..., :d], a[..., d:]
    c, s = torch.cos(phase), torch.sin(phase)
    return torch.cat([re * c - im * s, re * s + im * c], -1)


def _query(kernel: str, head: Tensor, rel: Tensor, normalize: bool) -> Tensor:
    if kernel == "rotate":
        return rotation(rel, rel.shape[-1], head)
    return unit(head) + unit(rel) if normalize else head + rel


def _tails(kernel: str, tails: Tensor, normalize: bool) -> Tensor:
    return unit(tails) if normalize and kernel != "rotate" else tails


def distance_all(kernel: str, q: Tensor, tails: Tensor) -> Tensor:
    """Distances of queries q (B, w) to every row of tails (E, w) -> (B, E), by kernel."""
    if kernel == "l1":
        return l1_distance_all(q, tails)
    if kernel == "l2":
        # ||q - t||^2 = |q|^2 - 2 q.t + |t|^2 as one GEMM; rounding can go below 0, so clamp.
        sq = (q * q).sum(-1, keepdim=True) - 2 * q @ tails.t() + (tails * tails).sum(-1)[None]
        return sq.clamp_min(0).sqrt()
    d = q.shape[1] // 2
    return modulus_distance_all(q[:, :d], q[:, d:], tails[:, :d], tails[:, d:])


def distance_hrt(kernel: str, q: Tensor, tails: Tensor) -> Tensor:
    """Distances of q (B, w) to tails (B, w) -> (B,), or to tails (B, n, w) -> (B, n)."""
    if tails.dim() == 3:
        q = q[:, None]
    diff = q - tails
    if kernel == "l1":
        return diff.abs().sum(-1)
    if kernel == "l2":
        return torch.linalg.vector_norm(diff, ord=2, dim=-1)
    d = diff.shape[-1] // 2
    return torch.complex(diff[..., :d], diff[..., d:]).abs().sum(-1)


def energy_all(terms, heads: dict, rels: dict, tails: dict, kernel: str, normalize: bool = False) -> Tensor:
    """Sum over `terms` [(head kind, relation kind, tail kind), ...] of the energies of every query
    against every entity: heads[kind] (B, w), rels[kind] (B, w) (phases (B, d) for "rotate"),
    tails[kind] (E, w) -> (B, E). Lower is more plausible."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {list(KERNELS)}")
    total = None
    for tail_kind in dict.fromkeys(t for _, _, t in terms):          # in order of first use
        queries = [(h, r) for h, r, t in terms if t == tail_kind]
        q = torch.cat([_query(kernel, heads[h], rels[r], normalize) for h, r in queries])
        dist = distance_all(kernel, q, _tails(kernel, tails[tail_kind], normalize))
        part = dist.view(len(queries), -1, dist.shape[1]).sum(0)
        total = part if total is None else total + part
    return total


def energy_hrt(terms, heads: dict, rels: dict, tails: dict, kernel: str, normalize: bool = False) -> Tensor:
    """As `energy_all` for given tails: tails[kind] (B, w) -> (B,) or (B, n, w) -> (B, n)."""
    return sum(distance_hrt(kernel, _query(kernel, heads[h], rels[r], normalize), _tails(kernel, tails[t], normalize))
               for h, r, t in terms)


def uniform_range(gamma: float, epsilon: float, dim: int) -> float:
    """The RotatE code base's initialisation range (gamma + epsilon) / d, used by NATIVE's models too."""
    return (gamma + epsilon) / dim


def phase_of(raw: Tensor, embedding_range: float) -> Tensor:
    """Relation phases in radians from stored values uniform in +-range (RotatE's convention)."""
    return raw / (embedding_range / math.pi)


# The training of the group's only published scripts for these baselines (zjukg/MACO, MMKGC/run_ikrl.py,
# run_tbkgc.py, run_rsme.py and scripts/*.sh; docs/reference/native-mm-baselines.md §8.2): negative
# sampling with Bernoulli corruption, the self-adversarial margin loss (margin 6, alpha 2), Adam lr 2e-5,
# batch 1024 positives, 1000 epochs. Models add their number of negatives.
MARGIN_REGIME = dict(regime="negative", loss="margin", margin=6.0, adversarial_temperature=2.0, corruption="bern",
                     optimizer="adam", lr=2e-5, batch_size=1024, max_epochs=1000)


def relation_means(rows: list, keys: list[str], value: str, R: int) -> pd.DataFrame:
    """Interpretation rows (frames with a `relation` column holding reciprocal ids 0..2R-1) -> the mean
    of `value` per `keys`, with `queries` (the count), `direction` ("tail" for r < R, "head" for its
    reciprocal) and `relation` folded back to 0..R-1: the table form the report draws."""
    frame = pd.concat(rows, ignore_index=True)
    out = frame.groupby(keys, sort=True)[value].agg(["mean", "count"]).reset_index()
    out["direction"] = np.where(out["relation"] >= R, "head", "tail")
    out["relation"] = out["relation"] % R
    return out.rename(columns={"mean": value, "count": "queries"})
