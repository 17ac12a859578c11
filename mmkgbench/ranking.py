"""Filtered ranks from scores, and metrics from ranks. No model is ever seen here.

Tie policy (Sun et al., ACL 2020; PyKEEN's rank types; LibKGE's tie discussion): with candidate
scores s and the target's score s*,

    optimistic  = 1 + #{c : s_c >  s*}       (ties resolved in the target's favour)
    pessimistic = 1 + #{c != target : s_c >= s*}  (ties resolved against it)
    realistic   = (optimistic + pessimistic) / 2  (the mean rank of the tie block)

The realistic rank is E[R] for R uniform on {optimistic, ..., pessimistic} (a random tie order), so
its MR is the expected MR; its MRR and Hits@k are *not* expectations (1/E[R] != E[1/R]: a 2-way tie
at the top has realistic rank 1.5, Hits@1 = 0, while half the tie orders put the target first).
`mmkgbench.ties.expected_metrics` gives E[1/R] and P(R <= k) exactly. `realistic` is what metrics
report by default (PyKEEN's and LibKGE's convention); optimistic and pessimistic are kept per query,
because a gap between them flags models that emit constant or saturated scores.

Filtering ("filtered setting", Bordes et al. 2013): every other known true answer of the same
query is removed by setting its score to -inf, so it neither beats nor ties the target. Using -inf
rather than 0 (MoMoK) or -1e6 (kbc) is correct for every score range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mmkgbench.counting import KERNEL_CHOICE


@dataclass(frozen=True)
class Ranks:
    """Per-query ranks, 1-based, each of shape (B,): optimistic and pessimistic int64, realistic float64."""

    optimistic: Tensor
    pessimistic: Tensor

    @property
    def realistic(self) -> Tensor:
        return (self.optimistic + self.pessimistic).double() / 2


def ranks(scores: Tensor, target: Tensor, known: Tensor | None = None) -> Ranks:
    """Filtered ranks of `target` among all candidates: the reference implementation.

    scores: (B, E) float, higher is better; target: (B,) int64 in [0, E);
    known: optional (B, E) bool, other true answers to filter (a set target bit is ignored).
    Pure: `scores` is not modified. The evaluator's fast path (`count_ranks`) is tested against it.
    """
    scores = scores.clone()
    ar = torch.arange(len(target), device=scores.device)
    s_target = scores[ar, target]
    if known is not None:
        scores[known] = float("-inf")
    scores[ar, target] = float("-inf")        # the target never competes with itself
    better = (scores > s_target[:, None]).sum(1)
    tied = (scores == s_target[:, None]).sum(1)
    return Ranks(optimistic=1 + better, pessimistic=1 + better + tied)


def filtered_ranks(scores: Tensor, target: Tensor, rows: Tensor, cols: Tensor, *, compile: str = "auto") -> Ranks:
    """Filtered ranks of `target` (the evaluator's fast path; tested against `ranks`).

    scores: (B, E) float32, **overwritten**: every known answer (rows[i], cols[i]) and the target
    itself are set to -inf, so the two counts below only see competitors. target: (B,); rows/cols
    from `KnownAnswers.lookup`. compile: "auto", "on" or "off", the counting kernel's choice
    (`mmkgbench.counting`: every kernel counts exactly, so it never changes a rank). Raises
    ValueError if a target score is not finite, since a NaN or inf target cannot be ranked meaningfully.
    """
    ar = torch.arange(len(target), device=scores.device)
    s_target = scores[ar, target]
    if not torch.isfinite(s_target).all():
        bad = int((~torch.isfinite(s_target)).nonzero()[0, 0])
        raise ValueError(f"model produced a non-finite score ({float(s_target[bad])}) for the target of query "
                         f"{bad} of this block; cannot rank")
    scores[rows, cols] = float("-inf")
    scores[ar, target] = float("-inf")
    gt, ge = KERNEL_CHOICE.count(scores, s_target[:, None], compile)
    return Ranks(optimistic=gt.long() + 1, pessimistic=ge.long() + 1)


def metrics(ranks: np.ndarray, ks=(1, 3, 10)) -> dict[str, float]:
    """MRR, MR and Hits@k from ranks of shape (n,) (1-based, n > 0): the rank column of one tie rule,
    realistic by default. For exact expectations over random tie orders see mmkgbench.ties.expected_metrics."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no ranks to summarise (empty split?)")
    out = {"mrr": float(np.mean(1.0 / r)), "mr": float(np.mean(r))}
    for k in ks:
        out[f"hits@{k}"] = float(np.mean(r <= k))
    return out


def sorted_search(sorted_sequence: Tensor, values: Tensor) -> Tensor:
    """torch.searchsorted (left), through NumPy on the CPU: a binary search per value is too little
    work for a parallel region, and waking torch's second thread cost 0.3-6 ms per call on a 2-core
    VM (against 0.1 ms in one thread; docs/performance.md)."""
    if sorted_sequence.device.type == "cpu":
        return torch.from_numpy(np.searchsorted(sorted_sequence.numpy(), values.numpy()))
    return torch.searchsorted(sorted_sequence, values)


class KnownAnswers:
    """CSR index of all true answers per (entity, relation) query, reciprocal relations included.

    Built from triples (n, 3) as (h, r, t) with R relations: (h, r) -> t and (t, r + R) -> h.
    Query key = e * 2R + r. `keys` (K,) sorted unique keys, `ptr` (K + 1,) offsets into `answers`
    (A,), each key's answers sorted and unique. Memory is O(#known answers), never
    O(#queries x E) (anchors.md §1.5: the dense broadcast filter is what made PyKEEN's older
    evaluator run out of memory).
    """

    def __init__(self, triples: np.ndarray, num_relations: int, sources: tuple[str, ...] = ()):
        t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        R2 = 2 * num_relations
        key = np.concatenate([t[:, 0] * R2 + t[:, 1], t[:, 2] * R2 + t[:, 1] + num_relations])
        ans = np.concatenate([t[:, 2], t[:, 0]])
        pairs = np.unique(np.stack([key, ans], 1), axis=0) if len(key) else np.zeros((0, 2), np.int64)
        keys, starts = np.unique(pairs[:, 0], return_index=True)
        self.num_relations = num_relations
        self.sources = sources
        self.keys = torch.from_numpy(keys)
        self.ptr = torch.from_numpy(np.append(starts, len(pairs)).astype(np.int64))
        self.answers = torch.from_numpy(np.ascontiguousarray(pairs[:, 1]))
        # (key, answer) pairs as one sorted int64 code, for membership tests (`contains`)
        self.code_base = int(pairs[:, 1].max()) + 1 if len(pairs) else 1
        self.codes = torch.from_numpy(pairs[:, 0] * self.code_base + pairs[:, 1])

    def to(self, device) -> "KnownAnswers":
        self.keys, self.ptr, self.answers, self.codes = (x.to(device) for x in
                                                         (self.keys, self.ptr, self.answers, self.codes))
        return self

    def spans(self, e: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """Where the answers of queries (e, r) lie in `answers`: start and count, each (B,) (count 0 if none)."""
        q = e * (2 * self.num_relations) + r
        if len(self.keys) == 0:
            return torch.zeros_like(q), torch.zeros_like(q)
        idx = sorted_search(self.keys, q).clamp_(max=len(self.keys) - 1)
        start = self.ptr[idx]
        count = torch.where(self.keys[idx] == q, self.ptr[idx + 1] - start, torch.zeros_like(start))
        return start, count

    def expand(self, start: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
        """(rows, cols) of the answers in spans (start, count): cols[i] is an answer of query rows[i]."""
        rows = torch.repeat_interleave(count)                       # query index of each answer slot
        first = (start - (torch.cumsum(count, 0) - count))[rows]    # where that query's answers begin
        return rows, self.answers[first + torch.arange(len(rows), device=start.device)]

    def lookup(self, e: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """Known answers of queries (e, r), e/r (B,), r already in [0, 2R).

        Returns (rows, cols), int64 of equal length: cols[i] is a known answer of query rows[i].
        """
        return self.expand(*self.spans(e, r))

    def contains(self, e: Tensor, r: Tensor, answer: Tensor) -> Tensor:
        """Whether `answer` (B,) is a known answer of query (e, r): bool (B,), one binary search each."""
        if len(self.codes) == 0:
            return torch.zeros_like(answer, dtype=torch.bool)
        code = (e * (2 * self.num_relations) + r) * self.code_base + answer
        pos = sorted_search(self.codes, code).clamp_(max=len(self.codes) - 1)
        return (self.codes[pos] == code) & (answer < self.code_base)

    def mask(self, e: Tensor, r: Tensor, E: int) -> Tensor:
        """Dense (B, E) bool mask of known answers: for tests and small inputs only."""
        rows, cols = self.lookup(e, r)
        m = torch.zeros(len(e), E, dtype=torch.bool, device=e.device)
        m[rows, cols] = True
        return m
