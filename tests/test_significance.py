"""Paired tests against a reference model, from per-query ranks; Holm per table, BH over the grid."""
from __future__ import annotations

import json
from fractions import Fraction

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


def result_rows(runs, values=None, ties=None):
    """runs: (run_id, model, scenario, seed) -> result rows whose mrr/hits@1 are the per-query means of
    realistic ranks, or values[run_id] = {metric: value}; ties: run_id -> eval.tie in config_json."""
    out = []
    for rid, model, scenario, seed in runs:
        r = PQ[rid]["rank_real"] if values is None else None
        mine = values[rid] if values is not None else {"mrr": (1 / r).mean(), "hits@1": (r <= 1).mean()}
        config = {"eval": {"tie": (ties or {}).get(rid, "realistic")}}
        for metric, v in mine.items():
            out.append({"run_id": rid, "model": model, "dataset": "toy", "scenario": scenario, "level": 0.0 if
                        scenario == "clean" else 0.5, "seed": seed, "split": "test", "side": "both", "metric": metric,
                        "value": v, "protocol": "harness-v2", "config_json": json.dumps(config)})
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


def tied_per_query(seed, n=150, top=4):
    """Per-query frame with many ties: rank_opt in 1..top-1, 0-2 more tied places, rank_real their mean."""
    g = np.random.default_rng(seed)
    opt = g.integers(1, top, 2 * n)
    pess = opt + g.integers(0, 3, 2 * n)
    return pd.DataFrame({"split": "test", "query_id": list(range(n)) * 2, "side": ["tail"] * n + ["head"] * n,
                         "rank_opt": opt, "rank_pess": pess, "rank_real": (opt + pess) / 2,
                         "rank_rand": g.integers(opt, pess + 1)})


def table_values(pq, tie):
    """What evaluate() puts in the table under `tie`, computed here by hand: MRR and Hits@1 of the rank
    column, or for "expected" the exact means of 1/R and [R <= 1] over the tied places (fractions)."""
    if tie == "expected":
        blocks = list(zip(pq["rank_opt"], pq["rank_pess"]))
        rr = [sum(Fraction(1, j) for j in range(a, b + 1)) / (b - a + 1) for a, b in blocks]
        hit = [Fraction(1, b - a + 1) if a == 1 else Fraction(0) for a, b in blocks]
        return {"mrr": float(sum(rr) / len(rr)), "hits@1": float(sum(hit) / len(hit))}
    r = pq[{"optimistic": "rank_opt", "pessimistic": "rank_pess"}[tie]]
    return {"mrr": float((1 / r).mean()), "hits@1": float((r <= 1).mean())}


@pytest.mark.parametrize("tie", ["optimistic", "pessimistic", "expected"])
def test_markers_test_the_rank_the_table_used(tie, monkeypatch):
    """The paired difference is the difference of the table's values, under the runs' eval.tie;
    realistic ranks would give another one (what this module did before it read eval.tie)."""
    frames = {"m0": tied_per_query(1, top=6), "m1": tied_per_query(2, top=6), "r0": tied_per_query(3),
              "r1": tied_per_query(4)}
    monkeypatch.setitem(globals(), "PQ", frames)
    runs = [("m0", "transe", "clean", 0), ("m1", "transe", "clean", 1), ("r0", "momok", "clean", 0),
            ("r1", "momok", "clean", 1)]
    values = {rid: table_values(frames[rid], tie) for rid in frames}
    rows = result_rows(runs, values=values, ties=dict.fromkeys(frames, tie))
    sig = compare_to_reference(rows, frames.__getitem__, reference="momok", metrics=("mrr", "hits@1"), resamples=500)
    for metric in ("mrr", "hits@1"):
        row = sig[sig["metric"] == metric].iloc[0]
        table_diff = (values["m0"][metric] + values["m1"][metric]) / 2 - (values["r0"][metric] + values["r1"][metric]) / 2
        assert row["diff"] == pytest.approx(table_diff, rel=1e-12, abs=1e-15)
        if metric == "mrr":       # (Hits@1 of realistic and pessimistic ranks coincide: both need no tie at 1)
            real = {rid: (1 / f["rank_real"]).mean() for rid, f in frames.items()}
            real_diff = (real["m0"] + real["m1"]) / 2 - (real["r0"] + real["r1"]) / 2
            assert abs(real_diff - table_diff) > 1e-3           # the realistic test would mark another number
        # and the p-value is the test on those per-query scores, seed-averaged
        a = (query_scores(frames["m0"], metric, tie=tie) + query_scores(frames["m1"], metric, tie=tie)) / 2
        b = (query_scores(frames["r0"], metric, tie=tie) + query_scores(frames["r1"], metric, tie=tie)) / 2
        ab = pd.concat([a, b], axis=1).sort_index()
        assert row["p"] == stats.paired_test(ab.iloc[:, 0].to_numpy(), ab.iloc[:, 1].to_numpy(), resamples=500).p


def test_model_and_reference_under_different_tie_rules_are_refused():
    runs = [("ref0", "momok", "clean", 0), ("bad0", "transe", "clean", 0)]
    rows = result_rows(runs, ties={"bad0": "optimistic"})
    with pytest.raises(ValueError, match=r"transe \(optimistic\) and momok \(realistic\).*different tie rules"):
        compare_to_reference(rows, PQ.__getitem__, reference="momok", metrics=("mrr",))


def test_tie_rule_comes_from_config_json():
    runs = [("ref0", "momok", "clean", 0), ("bad0", "transe", "clean", 0)]
    legacy = result_rows(runs).assign(config_json=json.dumps({"eval": {"batch_size": 128}}))  # before eval.tie
    now = result_rows(runs)
    kw = dict(reference="momok", metrics=("mrr",), resamples=200)
    assert compare_to_reference(legacy, PQ.__getitem__, **kw).equals(compare_to_reference(now, PQ.__getitem__, **kw))
    with pytest.raises(ValueError, match="config_json"):
        compare_to_reference(now.drop(columns="config_json"), PQ.__getitem__, **kw)
    with pytest.raises(ValueError, match="unknown tie rule 'average'"):
        compare_to_reference(now.assign(config_json=json.dumps({"eval": {"tie": "average"}})), PQ.__getitem__, **kw)
