"""Paired tests against a reference model, from per-query ranks; Holm per table, BH over the grid."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmkgbench import stats
from mmkgbench.significance import compare_to_reference, query_scores


def per_query(ranks, split="test"):
    """Per-query frame of one run: realistic ranks for queries 0..n-1, tail then head."""
    n = len(ranks) // 2
    return pd.DataFrame({"split": split, "query_id": list(range(n)) * 2, "side": ["tail"] * n + ["head"] * n,
                         "rank_real": np.asarray(ranks, dtype=float)})


def result_rows(runs):
    """runs: (run_id, model, scenario, seed) -> result rows whose mrr/hits@1 are the per-query means."""
    out = []
    for rid, model, scenario, seed in runs:
        r = PQ[rid]["rank_real"]
        for metric, v in (("mrr", (1 / r).mean()), ("hits@1", (r <= 1).mean())):
            out.append({"run_id": rid, "model": model, "dataset": "toy", "scenario": scenario, "level": 0.0 if
                        scenario == "clean" else 0.5, "seed": seed, "split": "test", "side": "both", "metric": metric,
                        "value": v, "protocol": "harness-v2"})
    return pd.DataFrame(out)


rng = np.random.default_rng(0)
GOOD = rng.integers(1, 4, 400)                 # ranks 1..3
BAD = GOOD + rng.integers(0, 6, 400)           # never better, often worse
PQ = {"ref0": per_query(GOOD), "ref1": per_query(np.maximum(GOOD - rng.integers(0, 2, 400), 1)),
      "bad0": per_query(BAD), "bad1": per_query(BAD + 1), "same0": per_query(GOOD), "same1": per_query(GOOD),
      "refx": per_query(GOOD), "badx": per_query(BAD)}
RUNS = [("ref0", "momok", "clean", 0), ("ref1", "momok", "clean", 1), ("bad0", "transe", "clean", 0),
        ("bad1", "transe", "clean", 1), ("same0", "tucker", "clean", 0), ("same1", "tucker", "clean", 1),
        ("refx", "momok", "noisy", 0), ("badx", "transe", "noisy", 0)]


def test_query_scores_are_reciprocal_ranks_and_hits_of_realistic_ranks():
    pq = per_query([1, 2.5, 4, 1])
    np.testing.assert_allclose(query_scores(pq, "mrr").to_numpy(), [1, 0.4, 0.25, 1])
    np.testing.assert_allclose(query_scores(pq, "hits@3").to_numpy(), [1, 1, 0, 1])
    assert list(query_scores(pq, "mrr").index) == [(0, "tail"), (1, "tail"), (0, "head"), (1, "head")]
    with pytest.raises(ValueError, match="no per-query test for metric 'mr'"):
        query_scores(pq, "mr")


def test_comparisons_use_seed_averaged_per_query_scores():
    sig = compare_to_reference(result_rows(RUNS), PQ.__getitem__, reference="momok", metrics=("mrr", "hits@1"),
                               resamples=2000)
    assert len(sig) == 2 * 2 + 2                 # (transe, tucker) x 2 metrics clean, transe x 2 under noise
    row = sig[(sig["model"] == "transe") & (sig["metric"] == "mrr") & (sig["scenario"] == "clean")].iloc[0]
    a = ((1 / PQ["bad0"]["rank_real"]) + (1 / PQ["bad1"]["rank_real"])) / 2
    b = ((1 / PQ["ref0"]["rank_real"]) + (1 / PQ["ref1"]["rank_real"])) / 2
    assert row["diff"] == pytest.approx((a - b).mean()) and row["diff"] < 0
    assert row["low"] < row["diff"] < row["high"] < 0 and row["p"] == pytest.approx(1 / 2001)
    assert row["n"] == 400 and row["seeds_model"] == 2 and row["seeds_reference"] == 2
    # the seed-level test: a paired t over the two shared seeds' MRRs
    va = [(1 / PQ[k]["rank_real"]).mean() for k in ("bad0", "bad1")]
    vb = [(1 / PQ[k]["rank_real"]).mean() for k in ("ref0", "ref1")]
    assert row["p_seeds"] == pytest.approx(stats.seed_test(va, vb).p)
    from scipy.stats import ttest_rel
    assert row["p_t"] == pytest.approx(ttest_rel(a, b).pvalue)       # the cross-check, on the same pairs
    noisy = sig[(sig["scenario"] == "noisy") & (sig["metric"] == "mrr")].iloc[0]
    assert np.isnan(noisy["p_seeds"])             # one seed: no seed-level test, never a made-up p


def test_holm_within_each_table_and_bh_across_all():
    sig = compare_to_reference(result_rows(RUNS), PQ.__getitem__, reference="momok", metrics=("mrr", "hits@1"),
                               resamples=2000)
    for _, table in sig.groupby(["scenario", "level"]):
        np.testing.assert_allclose(table["p_holm"], stats.holm(table["p"].to_numpy()))
    np.testing.assert_allclose(sig["p_bh"], stats.benjamini_hochberg(sig["p"].to_numpy()))
    # tucker ranks like momok on seed 0 and worse on seed 1 of momok: a real but small difference
    same = sig[(sig["model"] == "tucker") & (sig["metric"] == "mrr")].iloc[0]
    assert same["n_nonzero"] < same["n"]


def test_identical_models_give_no_difference():
    runs = [("ref0", "momok", "clean", 0), ("same0", "tucker", "clean", 0)]
    sig = compare_to_reference(result_rows(runs), PQ.__getitem__, reference="momok", metrics=("mrr",))
    row = sig.iloc[0]
    assert row["diff"] == 0 and row["p"] == 1.0 and row["n_nonzero"] == 0


def test_runs_on_different_queries_are_refused():
    pq = dict(PQ, bad0=per_query(BAD[:-2]))
    with pytest.raises(ValueError, match="different test queries"):
        compare_to_reference(result_rows(RUNS[:3]), pq.__getitem__, reference="momok", metrics=("mrr",))


def test_reference_protocol_rows_are_not_tested():
    rows = result_rows(RUNS).assign(protocol="reference-v1")
    assert compare_to_reference(rows, PQ.__getitem__, reference="momok").empty
