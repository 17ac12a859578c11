"""Filtered link-prediction evaluation of any model with `score_t`, in both directions.

Every triple (h, r, t) of a split gives two queries: a tail query (h, r, ?) with target t and a
head query asked as (t, r + R, ?) with target h (reciprocal relations; Lacroix et al. 2018,
Dettmers et al. 2018). Scores are computed in batches, known answers are filtered through the
CSR index, and ranks are counted without sorting. The benchmark owns this code path: no model
evaluates itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from mmkgbench.ranges import check_config
from mmkgbench.ranking import KnownAnswers, filtered_ranks, metrics
# TIE_POLICIES: tie rule -> the rank column its metrics read (None for "expected"), torch-free for the report
from mmkgbench.ties import TIE_POLICIES, expected_metrics


# Filtering and counting work on blocks of at least this many scores (several score batches when E
# is small): 8 MB of float32, which stays in cache (docs/performance.md).
GROUP_ENTRIES = 2 ** 21


@dataclass(frozen=True)
class EvalConfig:
    """How ranks are computed; recorded with every result."""

    batch_size: int = 128            # queries per scoring block; 64-256 keeps a block cache-resident on CPU
    hits_at: tuple[int, ...] = (1, 3, 10)
    filter_valid_with_test: bool = False  # PyKEEN's policy: model selection never sees test answers
    compile: str = "auto"            # fused counting kernel: "auto" (by measurement, mmkgbench.counting), "on", "off"
    tie: str = "realistic"           # which rank the metrics use: one of TIE_POLICIES

    ranges: ClassVar[dict] = {"batch_size": "[1, inf)", "hits_at": "[1, inf)", "filter_valid_with_test": None,
                              "compile": ("auto", "on", "off"), "tie": tuple(TIE_POLICIES)}

    def __post_init__(self):
        check_config(self)             # each field against its rule in `ranges` (mmkgbench.ranges)


@dataclass
class EvalResult:
    """per_query: one row per query (columns QUERY_COLUMNS); metrics: side -> metric -> value."""

    per_query: pd.DataFrame
    metrics: dict[str, dict[str, float]]


QUERY_COLUMNS = ["query_id", "h", "r", "t", "side", "rank_opt", "rank_pess", "rank_real", "rank_rand", "n_cand"]


def random_tie_ranks(opt: np.ndarray, pess: np.ndarray, seed: int) -> np.ndarray:
    """Ranks with ties broken at random: opt + U{0, ..., pess - opt}, per query, int64.

    opt, pess: (n,) optimistic and pessimistic ranks. Drawn from a generator of its own, seeded
    with `seed`, so the same seed gives the same ranks and no global RNG is touched.
    """
    rng = np.random.default_rng(seed)
    return rng.integers(opt, pess + 1).astype(np.int64)


def queries(triples: np.ndarray, num_relations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(e, r, target, side) for the 2n queries of triples (n, 3): first the n tail queries, then the n head ones.

    side is 0 for tail queries (h, r, ?) and 1 for head queries (t, r + R, ?).
    """
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    e = np.concatenate([h, t])
    rel = np.concatenate([r, r + num_relations])
    target = np.concatenate([t, h])
    side = np.repeat(np.array([0, 1], dtype=np.int8), len(triples))
    return e, rel, target, side


@torch.inference_mode()
def evaluate(model, triples: np.ndarray, known: KnownAnswers, *, num_relations: int,
             cfg: EvalConfig = EvalConfig(), device: torch.device | str = "cpu",
             progress=None, seed: int = 0) -> EvalResult:
    """Filtered ranks of every query of `triples` (n, 3) under `model`.

    known: answers to filter (built from the splits the filter policy names, on `device`).
    Scores are ranked in float32 even under mixed precision (bf16 scores would tie massively).
    seed: for the random tie-breaking column rank_rand (always logged; metrics use it only
    under cfg.tie = "random").
    Returns per-query ranks and metrics for sides "both", "tail" and "head", from the rank
    column `cfg.tie` names (under "expected": exact expectations from rank_opt and rank_pess).
    """
    triples = np.asarray(triples, dtype=np.int64)
    if len(triples) == 0:
        raise ValueError("cannot evaluate an empty split")
    was_training = model.training
    model.eval()
    e, rel, target, side = queries(triples, num_relations)
    n_q = len(e)
    E = model.num_entities
    e_t, r_t, y_t = (torch.from_numpy(a).to(device) for a in (e, rel, target))
    # Spans of known answers and candidate counts for all queries at once (two binary searches per
    # query); the answers themselves are expanded per batch: DB15K's test queries have 7.5M known
    # answers in all, and a batch's share stays in cache (docs/performance.md).
    start, count = known.spans(e_t, r_t)
    n_cand = E - count + known.contains(e_t, r_t, y_t).long()
    opt = torch.empty(n_q, dtype=torch.long, device=device)
    pess = torch.empty_like(opt)
    # Scores come in batches of cfg.batch_size queries (what a query's scores are computed with);
    # filtering and counting take `group` batches at a time, so that their fixed cost per call
    # (some 30 small tensor operations) is spread over at least GROUP_ENTRIES scores when E is
    # small. Counts are exact, so grouping never changes a rank.
    bs = cfg.batch_size
    group = max(1, GROUP_ENTRIES // (bs * E))
    buf = torch.empty(min(n_q, group * bs), E, device=device) if group > 1 else None
    try:
        for g_lo in range(0, n_q, group * bs):
            g_hi = min(n_q, g_lo + group * bs)
            if buf is None:
                scores = model.score_t(e_t[g_lo:g_hi], r_t[g_lo:g_hi]).float()
            else:
                scores = buf[: g_hi - g_lo]
                for lo in range(g_lo, g_hi, bs):
                    scores[lo - g_lo: lo - g_lo + bs].copy_(model.score_t(e_t[lo:lo + bs], r_t[lo:lo + bs]))
            sl = slice(g_lo, g_hi)
            rows, cols = known.expand(start[sl], count[sl])
            rk = filtered_ranks(scores, y_t[sl], rows, cols, compile=cfg.compile)
            opt[sl], pess[sl] = rk.optimistic, rk.pessimistic
            if progress is not None:
                progress(g_hi, n_q)
    finally:
        model.train(was_training)
    opt, pess, n_cand = opt.cpu().numpy(), pess.cpu().numpy(), n_cand.cpu().numpy()
    real = (opt + pess) / 2.0
    rand = random_tie_ranks(opt, pess, seed)
    n = len(triples)
    per_query = pd.DataFrame({
        "query_id": np.concatenate([np.arange(n), np.arange(n)]),
        "h": np.tile(triples[:, 0], 2), "r": np.tile(triples[:, 1], 2), "t": np.tile(triples[:, 2], 2),
        "side": np.where(side == 0, "tail", "head"),
        "rank_opt": opt, "rank_pess": pess, "rank_real": real, "rank_rand": rand,
        "n_cand": n_cand,
    }, columns=QUERY_COLUMNS)
    col = TIE_POLICIES[cfg.tie]
    used = None if col is None else per_query[col].to_numpy(dtype=np.float64)
    # queries() puts the n tail queries first: slices select a side without comparing strings
    return EvalResult(per_query=per_query, metrics=side_metrics(opt, pess, used, slice(0, n), slice(n, None),
                                                                cfg.hits_at))


def side_metrics(opt: np.ndarray, pess: np.ndarray, used: np.ndarray | None, tail, head,
                 hits_at=(1, 3, 10)) -> dict[str, dict[str, float]]:
    """side ("both", "tail", "head") -> metric -> value: of the rank column `used` (n,), or exact
    expectations over tie orders from opt and pess (n,) where `used` is None; tail and head select
    each side's queries (slices or bool masks)."""
    return {name: expected_metrics(opt[sel], pess[sel], hits_at) if used is None else metrics(used[sel], hits_at)
            for name, sel in (("both", slice(None)), ("tail", tail), ("head", head))}


def tie_metrics(per_query: pd.DataFrame, tie: str, hits_at=(1, 3, 10)) -> dict[str, dict[str, float]]:
    """side ("both", "tail", "head") -> metric -> value of per-query ranks (QUERY_COLUMNS) under one
    tie rule: the rank column TIE_POLICIES[tie] names, or exact expectations under "expected"."""
    col = TIE_POLICIES[tie]
    side = per_query["side"].to_numpy()
    opt, pess = per_query["rank_opt"].to_numpy(), per_query["rank_pess"].to_numpy()
    used = None if col is None else per_query[col].to_numpy(dtype=np.float64)
    return side_metrics(opt, pess, used, side == "tail", side == "head", hits_at)
