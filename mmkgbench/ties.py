"""Tie rules: which rank a metric reads, and exact expectations over uniformly random tie orders.

NumPy only (no torch), so the report and its significance tests can use it without the evaluator.

A query whose target ties with other candidates has optimistic rank `opt` and pessimistic rank
`pess` (mmkgbench.ranking); a uniformly random order of the tie block puts the target at R, uniform
on {opt, ..., pess}, n = pess - opt + 1 places. Then exactly

    E[R]        = (opt + pess) / 2                      (the realistic rank)
    E[1/R]      = (H(pess) - H(opt - 1)) / n            (H: harmonic numbers)
    P(R <= k)   = clip((k - opt + 1) / n, 0, 1)

The realistic rank gives the expected MR, but 1/E[R] is not E[1/R] and [E[R] <= k] is not
P(R <= k): a 2-way tie at the top has realistic rank 1.5 and Hits@1 = 0, yet half of the tie orders
put the target first (E[Hits@1] = 0.5, E[1/R] = 0.75 against 1/1.5 = 0.667). Tie rule "expected"
reports the exact expectations; "random" (MoMoK) reports one draw of them.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

# tie policy (EvalConfig.tie) -> per-query column the metrics are computed from. "realistic" (the
# default) is the mean rank of the tie block, PyKEEN's and LibKGE's convention: E[R], but its MRR and
# Hits@k are not expected values (module docstring). "random" is MoMoK's evaluation: the target put at
# a uniformly random place among the candidates that tie with it (methods.md §1.8), one draw.
# "expected" has no column of its own (None): E[1/R], P(R <= k) and E[R] over that random place,
# computed exactly from rank_opt and rank_pess (expected_metrics): "random" without the noise.
TIE_POLICIES = {"realistic": "rank_real", "optimistic": "rank_opt", "pessimistic": "rank_pess",
                "random": "rank_rand", "expected": None}


def query_values(per_query: pd.DataFrame, metric: str, tie: str = "realistic") -> np.ndarray:
    """Per-query value of `metric` under tie policy `tie`, (n,) float64: what the metric averages.

    per_query: rows with the rank columns of mmkgbench.evaluate.QUERY_COLUMNS (rank_opt and rank_pess
    for "expected").
    metric: "mrr" (reciprocal rank), "hits@k" (hit indicator) or "mr" (rank). Under "expected" these are
    E[1/R], P(R <= k) and E[R] for R uniform on {rank_opt, ..., rank_pess}; otherwise they are read from
    the rank column TIE_POLICIES[tie].
    """
    if tie not in TIE_POLICIES:
        raise ValueError(f"unknown tie policy {tie!r}; choose from {list(TIE_POLICIES)}")
    col = TIE_POLICIES[tie]
    needed = ["rank_opt", "rank_pess"] if col is None else [col]
    missing = [c for c in needed if c not in per_query.columns]
    if missing:
        raise ValueError(f"per-query ranks lack column(s) {missing}, needed for tie policy {tie!r}")
    is_hits = metric.startswith("hits@") and metric[5:].isdigit()
    if metric not in ("mrr", "mr") and not is_hits:
        raise ValueError(f"unknown metric {metric!r}: use mrr, mr or hits@k")
    if col is None:
        opt, pess = (per_query[c].to_numpy(dtype=np.float64) for c in ("rank_opt", "rank_pess"))
        if metric == "mrr":
            return expected_reciprocal_rank(opt, pess)
        if metric == "mr":
            return (opt + pess) / 2.0
        return expected_hits(opt, pess, int(metric[5:]))
    rank = per_query[col].to_numpy(dtype=np.float64)
    if metric == "mrr":
        return 1.0 / rank
    if metric == "mr":
        return rank
    return (rank <= int(metric[5:])).astype(np.float64)


def _tie_block(opt, pess) -> tuple[np.ndarray, np.ndarray]:
    """opt, pess as float64 (n,) arrays, checked: integers with 1 <= opt <= pess."""
    a, b = np.asarray(opt, dtype=np.float64), np.asarray(pess, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"optimistic and pessimistic ranks must be 1-d arrays of one length, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("no ranks to summarise (empty split?)")
    if not (np.all(a == np.round(a)) and np.all(b == np.round(b)) and np.all(a >= 1) and np.all(a <= b)):
        raise ValueError("expected ranks need integer optimistic and pessimistic ranks with 1 <= opt <= pess")
    return a, b


# Bernoulli-number terms of psi(z) = ln z - 1/(2z) - sum_k B_2k / (2k z^2k) (Abramowitz & Stegun 6.3.18):
# (coefficient, power). With z >= 32 the first omitted term, 691/32760 z^-12, is below 2e-20.
_PSI_TERMS = ((1 / 2, 1), (1 / 12, 2), (-1 / 120, 4), (1 / 252, 6), (-1 / 240, 8), (1 / 132, 10))
_DIRECT = 64        # blocks up to this many places are summed term by term


def _psi_gap(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """psi(y) - psi(x) = sum_{j=x}^{y-1} 1/j for integers 32 <= x < y, each (m,), to a few ulps.

    ln(y/x) is taken as log1p((y - x)/x), which keeps its relative precision when y is close to x; the
    remaining series terms are small against it (the largest, (y - x)/(2xy), is at most 1/(2x) of it
    when y is close to x), so their rounding does not show.
    """
    gap = np.log1p((y - x) / x)
    for c, k in _PSI_TERMS:
        gap += c * (x ** -k - y ** -k)
    return gap


def expected_reciprocal_rank(opt, pess) -> np.ndarray:
    """E[1/R] per query for R uniform on {opt, ..., pess}: (H(pess) - H(opt - 1)) / (pess - opt + 1).

    opt, pess: (n,) integer optimistic and pessimistic ranks. Returns (n,) float64. Blocks of up to
    64 places are summed term by term; longer ones sum directly up to place 32 and use the asymptotic
    digamma difference beyond it, which avoids subtracting two large harmonic numbers (the naive
    digamma(pess + 1) - digamma(opt) loses ~log10(pess) digits). Checked against exact fractions.
    """
    a, b = _tie_block(opt, pess)
    n = b - a + 1
    stop = np.where(n <= _DIRECT, b + 1, np.maximum(a, 32.0))     # direct sum over places [a, stop)
    total = np.zeros_like(a)
    for off in range(_DIRECT):
        j = a + off
        total += np.where(j < stop, 1.0 / j, 0.0)
    tail = stop <= b
    total[tail] += _psi_gap(stop[tail], b[tail] + 1)
    return total / n


def expected_hits(opt, pess, k: int) -> np.ndarray:
    """P(R <= k) per query for R uniform on {opt, ..., pess}: clip((k - opt + 1) / n, 0, 1), (n,) float64."""
    a, b = _tie_block(opt, pess)
    return np.clip((k - a + 1) / (b - a + 1), 0.0, 1.0)


def expected_metrics(opt, pess, ks=(1, 3, 10)) -> dict[str, float]:
    """MRR, MR and Hits@k in expectation over uniformly random tie orders, exactly (no sampling).

    opt, pess: (n,) optimistic and pessimistic ranks (1-based, n > 0). mrr = mean E[1/R], hits@k =
    mean P(R <= k), mr = mean E[R] = mean (opt + pess) / 2, the realistic MR.
    """
    a, b = _tie_block(opt, pess)
    out = {"mrr": float(np.mean(expected_reciprocal_rank(a, b))), "mr": float(np.mean((a + b) / 2))}
    for k in ks:
        out[f"hits@{k}"] = float(np.mean(expected_hits(a, b, k)))
    return out


def run_tie(config_json) -> str:
    """The tie rule a run's metrics used: eval.tie of its resolved config (JSON text). Runs stored
    before EvalConfig had `tie` used realistic ranks, the only rule then."""
    if not isinstance(config_json, str) or not config_json:
        raise ValueError(f"a harness run's rows need its config_json to tell which tie rule its table used, "
                         f"got {config_json!r}")
    tie = json.loads(config_json).get("eval", {}).get("tie", "realistic")
    if tie not in TIE_POLICIES:
        raise ValueError(f"run config names an unknown tie rule {tie!r}; known: {list(TIE_POLICIES)}")
    return tie
