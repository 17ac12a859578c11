"""The report's tables: pure functions of result rows, which never average different configurations."""
from __future__ import annotations

import pandas as pd
import pytest

from mmkgbench.report import markdown_table, summarise


def rows(spec) -> pd.DataFrame:
    """spec: (run_id, model, dataset, seed, mrr) tuples -> tidy rows (test split, both sides)."""
    return pd.DataFrame([{"run_id": rid, "model": m, "dataset": d, "scenario": "clean", "level": 0.0, "seed": s, "protocol": "harness-v2",
                          "split": "test", "side": "both", "metric": "mrr", "value": v}
                         for rid, m, d, s, v in spec])


def test_mean_and_sample_std_over_seeds():
    out = summarise(rows([("a", "tucker", "DB15K", 0, 0.30), ("b", "tucker", "DB15K", 1, 0.34)]), metrics=("mrr",))
    assert out.loc[0, "mean"] == pytest.approx(0.32) and out.loc[0, "std"] == pytest.approx(0.0282842712)
    assert out.loc[0, "n_seeds"] == 2
    assert "32.00 ± 2.83" in markdown_table(rows([("a", "tucker", "DB15K", 0, 0.30), ("b", "tucker", "DB15K", 1, 0.34)]),
                                           metrics=("mrr",))


def test_two_configurations_of_one_seed_are_refused_not_averaged():
    frame = rows([("a", "tucker", "DB15K", 0, 0.30), ("b", "tucker", "DB15K", 0, 0.40)])
    with pytest.raises(ValueError, match=r"2 runs that differ in their settings .* tucker on DB15K, seed 0: runs a, b"):
        summarise(frame, metrics=("mrr",))


def test_feature_variants_are_different_data_sets_in_tables():
    frame = rows([("a", "tucker", "DB15K", 0, 0.30), ("b", "tucker", "DB15K+text~e5-small", 0, 0.40)])
    assert len(summarise(frame, metrics=("mrr",))) == 2
