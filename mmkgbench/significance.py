"""Which differences in a results table are real: paired tests against a reference model, from the
stored per-query ranks, corrected for multiplicity (anchors.md §5).

The unit is the ranking query: both models answered the identical test queries under identical
filters, so each query gives a paired difference of its reciprocal rank (MRR) or hit indicator
(Hits@k), computed under the tie rule the table used for that run (its `eval.tie`, realistic by
default; under "expected", E[1/R] and P(R <= k) per query), so a marker tests the very numbers it
is printed beside; a model and reference evaluated under different tie rules are not compared. With
several seeds the per-query score is first averaged over a model's seeds (anchors.md §5.2 (5)): the
test then asks whether the seed-averaged models differ on these queries; training randomness is the
separate seed-level test (`p_seeds`, a paired t-test over per-seed scores when both models share >= 2
seeds).

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
from mmkgbench.protocol import is_tested
from mmkgbench.report import METRICS, TABLE_KEYS
from mmkgbench.ties import query_values, run_tie


def query_scores(per_query: pd.DataFrame, metric: str, split: str = "test", tie: str = "realistic") -> pd.Series:
    """Per-query score of one run, indexed by (query_id, side), under the run's tie rule `tie` (its
    eval.tie, the rank its table rows were computed from): the reciprocal rank for "mrr", the hit
    indicator for "hits@k"; under tie="expected", E[1/R] and P(R <= k) from rank_opt and rank_pess
    (mmkgbench.ties.query_values). per_query: the run's per_query.csv.gz
    (mmkgbench.results.load_per_query)."""
    if not (metric == "mrr" or metric.startswith("hits@")):
        raise ValueError(f"no per-query test for metric {metric!r}: use mrr or hits@k")
    pq = per_query[per_query["split"] == split]
    value = query_values(pq, metric, tie)
    return pd.Series(value, index=pd.MultiIndex.from_arrays([pq["query_id"], pq["side"]]), name=metric)


def _seed_mean(run_ids: list[str], load: Callable[[str], pd.DataFrame], metric: str, split: str,
               cache: dict, tie: str) -> pd.Series:
    """Per-query score (under tie rule `tie`) averaged over the runs (seeds) of one model; memoised in
    `cache`, since the reference's is needed once per compared model."""
    key = (tuple(run_ids), metric)
    if key not in cache:
        parts = []
        for rid in run_ids:
            if rid not in cache:
                cache[rid] = load(rid)
            parts.append(query_scores(cache[rid], metric, split, tie))
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
    Per-query scores follow each run's eval.tie (from `config_json`), the rank its table values use;
    ValueError if the model and the reference (or two seeds of one) used different tie rules.
    Deterministic: the resampling seed is fixed per call.
    """
    metrics = [m for m in metrics if m != "mr"]
    sel = rows[(rows["split"] == split) & (rows["side"] == "both") & rows["protocol"].map(is_tested).astype(bool)]
    if not sel.empty and "config_json" not in sel.columns:
        raise ValueError("rows lack the config_json column: cannot tell which tie rule each run's table used")
    runs = sel.drop_duplicates("run_id").reindex(columns=["run_id", "protocol", "dataset", "scenario", "level",
                                                          "model", "seed", "config_json"])
    ties = {rid: run_tie(blob) for rid, blob in zip(runs["run_id"], runs["config_json"])}
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
            t_mine, t_ref = ({ties[rid] for rid in runs_of["run_id"]} for runs_of in (mine, ref))
            if len(t_mine | t_ref) > 1:
                raise ValueError(f"{model} ({', '.join(sorted(t_mine))}) and {reference} ({', '.join(sorted(t_ref))}) "
                                 f"on {dataset} ({scenario} {level:g}) were evaluated under different tie rules "
                                 "(eval.tie): their numbers are not comparable, so no test is made; evaluate them "
                                 "under one rule")
            tie = t_mine.pop()
            for metric in metrics:
                a = _seed_mean(list(mine["run_id"]), load_per_query, metric, split, cache, tie)
                b = _seed_mean(list(ref["run_id"]), load_per_query, metric, split, cache, tie)
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
