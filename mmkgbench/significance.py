"""Which differences in a results table are real: paired tests against a reference model, from the
stored per-query ranks, corrected for multiplicity (anchors.md §5).

The unit is the ranking query: both models answered the identical test queries under identical
filters, so each query gives a paired difference of its reciprocal rank (MRR) or hit indicator
(Hits@k), computed from realistic ranks, the ranks every table reports. With several seeds the
per-query score is first averaged over a model's seeds (anchors.md §5.2 (5)): the test then asks
whether the seed-averaged models differ on these queries; training randomness is the separate
seed-level test (`p_seeds`, a paired t-test over per-seed scores when both models share >= 2 seeds).

Multiplicity: Holm within each printed table (every model x metric x data set compared with the
reference in it) decides the markers; Benjamini–Hochberg over every comparison of the report is
given beside it for grid-wide reading (anchors.md §5.2 (6)). Only harness-protocol runs are tested:
the reference protocol's numbers are the best of each metric over many test evaluations, which no
single set of per-query ranks produced.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from mmkgbench import stats
# TABLE_KEYS: one printed results table (report.main_tables), the family Holm corrects over
from mmkgbench.modelinfo import model_order
from mmkgbench.report import METRICS, TABLE_KEYS


def query_scores(per_query: pd.DataFrame, metric: str, split: str = "test") -> pd.Series:
    """Per-query score of one run, indexed by (query_id, side): 1/rank_real for "mrr", the indicator
    rank_real <= k for "hits@k" (realistic ranks, as in every table). per_query: the run's
    per_query.csv.gz (mmkgbench.results.load_per_query)."""
    pq = per_query[per_query["split"] == split]
    rank = pq["rank_real"].to_numpy(dtype=np.float64)
    if metric == "mrr":
        value = 1.0 / rank
    elif metric.startswith("hits@"):
        value = (rank <= int(metric.split("@")[1])).astype(np.float64)
    else:
        raise ValueError(f"no per-query test for metric {metric!r}: use mrr or hits@k")
    return pd.Series(value, index=pd.MultiIndex.from_arrays([pq["query_id"], pq["side"]]), name=metric)


def _seed_mean(run_ids: list[str], load: Callable[[str], pd.DataFrame], metric: str, split: str,
               cache: dict) -> pd.Series:
    """Per-query score averaged over the runs (seeds) of one model; memoised in `cache`, since the
    reference's is needed once per compared model."""
    key = (tuple(run_ids), metric)
    if key not in cache:
        parts = []
        for rid in run_ids:
            if rid not in cache:
                cache[rid] = load(rid)
            parts.append(query_scores(cache[rid], metric, split))
        joined = pd.concat(parts, axis=1, join="inner")
        if len(joined) != len(parts[0]):
            raise ValueError(f"runs {', '.join(run_ids)} were evaluated on different {split} queries")
        cache[key] = joined.mean(axis=1).sort_index()
    return cache[key]


def compare_to_reference(rows: pd.DataFrame, load_per_query: Callable[[str], pd.DataFrame], *, reference: str,
                         metrics=METRICS, split: str = "test", test: str = "randomization",
                         resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """One row per (protocol, dataset, scenario, level, model != reference, metric) where both the
    model and the reference have harness runs: diff (model − reference, as a fraction), low/high (95 %
    interval), p, n (queries), n_nonzero, seeds_model, seeds_reference, test, resamples, p_t (the paired
    t-test, a cross-check), p_seeds (paired t over shared seeds; NaN below 2), and p_holm (within the table of that protocol, scenario, level),
    p_bh (across all rows returned).

    rows: stored result rows; load_per_query: run_id -> per-query frame (results.load_per_query).
    Deterministic: the resampling seed is fixed per call.
    """
    metrics = [m for m in metrics if m != "mr"]
    sel = rows[(rows["split"] == split) & (rows["side"] == "both") & rows["protocol"].str.startswith("harness")]
    runs = sel.drop_duplicates("run_id")[["run_id", "protocol", "dataset", "scenario", "level", "model", "seed"]]
    values = sel.set_index(["run_id", "metric"])["value"]
    cache, out = {}, []
    for (protocol, dataset, scenario, level), cell in runs.groupby(["protocol", "dataset", "scenario", "level"],
                                                                   sort=True):
        ref = cell[cell["model"] == reference].sort_values("seed")
        if ref.empty:
            continue
        for model in model_order(cell["model"].unique()):
            if model == reference:
                continue
            mine = cell[cell["model"] == model].sort_values("seed")
            shared = sorted(set(mine["seed"]) & set(ref["seed"]))
            for metric in metrics:
                a = _seed_mean(list(mine["run_id"]), load_per_query, metric, split, cache)
                b = _seed_mean(list(ref["run_id"]), load_per_query, metric, split, cache)
                if not a.index.equals(b.index):
                    raise ValueError(f"{model} and {reference} on {dataset} ({scenario} {level:g}) were evaluated "
                                     f"on different {split} queries; they cannot be compared query by query")
                res = stats.paired_test(a.to_numpy(), b.to_numpy(), test=test, resamples=resamples, seed=seed)
                p_t = res.p if test == "t" else stats.paired_test(a.to_numpy(), b.to_numpy(), test="t").p
                p_seeds = np.nan
                if len(shared) >= 2:
                    va = [values[(mine[mine["seed"] == s]["run_id"].iloc[0], metric)] for s in shared]
                    vb = [values[(ref[ref["seed"] == s]["run_id"].iloc[0], metric)] for s in shared]
                    p_seeds = stats.seed_test(va, vb, paired=True).p
                out.append({"protocol": protocol, "dataset": dataset, "scenario": scenario, "level": float(level),
                            "model": model, "reference": reference, "metric": metric, "diff": res.diff,
                            "low": res.low, "high": res.high, "p": res.p, "n": res.n, "n_nonzero": res.n_nonzero,
                            "seeds_model": len(mine), "seeds_reference": len(ref), "test": res.test,
                            "resamples": res.resamples, "p_t": p_t,
                            "p_seeds": p_seeds})
    cols = ["protocol", "dataset", "scenario", "level", "model", "reference", "metric", "diff", "low", "high", "p",
            "p_holm", "p_bh", "n", "n_nonzero", "seeds_model", "seeds_reference", "test", "resamples", "p_t", "p_seeds"]
    frame = pd.DataFrame(out, columns=[c for c in cols if c not in ("p_holm", "p_bh")])
    if frame.empty:
        return pd.DataFrame(columns=cols)
    frame["p_holm"] = frame.groupby(TABLE_KEYS, sort=False)["p"].transform(lambda p: stats.holm(p.to_numpy()))
    frame["p_bh"] = stats.benjamini_hochberg(frame["p"].to_numpy())
    return frame[cols]
