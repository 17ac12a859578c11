"""Robustness curves, the relative area under them, their tables and figures, from fixed frames."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmkgbench.robustness import curve_frame, level_label, relative_auc, robustness_markdown


def rows_of(points, protocol="harness-v2", dataset="toy", metric="mrr"):
    """Result rows from (model, scenario, level, seed, value) tuples (test split, both sides); a
    scenario "x+y" is a composition whose first step is fixed."""
    out = []
    for i, (model, scenario, level, seed, value) in enumerate(points):
        names = [] if scenario == "clean" else scenario.split("+")
        steps = [{"name": n, "level": level, "swept": j == len(names) - 1} for j, n in enumerate(names)]
        out.append({"run_id": f"r{i}", "model": model, "dataset": dataset, "scenario": scenario, "level": level,
                    "seed": seed, "split": "test", "side": "both", "metric": metric, "value": value,
                    "protocol": protocol, "config_json": json.dumps({"scenario": {"name": scenario, "steps": steps}})})
    return pd.DataFrame(out)


POINTS = [
    # model a: clean 0.5 / 0.4 (seeds 0 / 1), falls under missing
    ("a", "clean", 0.0, 0, 0.5), ("a", "clean", 0.0, 1, 0.4),
    ("a", "missing", 0.5, 0, 0.25), ("a", "missing", 0.5, 1, 0.3),
    ("a", "missing", 1.0, 0, 0.25), ("a", "missing", 1.0, 1, 0.2),
    # model b: flat
    ("b", "clean", 0.0, 0, 0.3), ("b", "missing", 0.5, 0, 0.3), ("b", "missing", 1.0, 0, 0.3),
]


def test_clean_runs_are_level_zero_of_every_curve():
    curves = curve_frame(rows_of(POINTS))
    assert set(curves["scenario"]) == {"missing"}
    a0 = curves[(curves["model"] == "a") & (curves["level"] == 0)]
    assert sorted(a0["value"]) == [0.4, 0.5]
    assert len(curves) == 9


def test_relative_area_by_hand():
    auc = relative_auc(curve_frame(rows_of(POINTS))).set_index("model")
    # seed 0: trapezoid over [0, 1] of (0.5, 0.25, 0.25) = 0.1875 + 0.125 = 0.3125, / 0.5 -> 0.625
    # seed 1: (0.4, 0.3, 0.2): 0.175 + 0.125 = 0.3, / 0.4 -> 0.75
    assert auc.loc["a", "rel_auc"] == pytest.approx((0.625 + 0.75) / 2)
    assert auc.loc["a", "rel_auc_std"] == pytest.approx(np.std([0.625, 0.75], ddof=1))
    assert auc.loc["a", "clean"] == pytest.approx(0.45) and auc.loc["a", "n_seeds"] == 2
    assert auc.loc["b", "rel_auc"] == pytest.approx(1.0) and np.isnan(auc.loc["b", "rel_auc_std"])
    assert auc.loc["a", "levels"] == "0, 0.5, 1"


def test_a_seed_missing_a_level_is_left_out_not_interpolated():
    pts = [p for p in POINTS if not (p[0] == "a" and p[2] == 1.0 and p[3] == 1)]
    auc = relative_auc(curve_frame(rows_of(pts))).set_index("model")
    assert auc.loc["a", "n_seeds"] == 1 and auc.loc["a", "rel_auc"] == pytest.approx(0.625)


def test_a_composition_with_a_fixed_step_starts_at_its_own_level_zero_but_divides_by_clean():
    pts = POINTS + [("a", "sparse+missing", 0.0, 0, 0.35), ("a", "sparse+missing", 1.0, 0, 0.2)]
    curves = curve_frame(rows_of(pts))
    comp = curves[curves["scenario"] == "sparse+missing"]
    assert sorted(comp["value"]) == [0.2, 0.35]             # the clean run is not its level 0
    auc = relative_auc(curves).set_index("scenario").loc["sparse+missing"]
    assert auc["rel_auc"] == pytest.approx((0.35 + 0.2) / 2 / 0.5)   # seed 0's clean score is 0.5
    one = relative_auc(curve_frame(rows_of(POINTS + [("a", "sparse+missing", 0.5, 0, 0.3)])))
    assert one.set_index("scenario").loc["sparse+missing", "rel_auc"] == pytest.approx(0.3 / 0.5)


def test_a_seed_without_its_clean_run_is_left_out():
    pts = [p for p in POINTS if not (p[0] == "a" and p[1] == "clean" and p[3] == 1)]
    auc = relative_auc(curve_frame(rows_of(pts))).set_index("model")
    assert auc.loc["a", "n_seeds"] == 1 and auc.loc["a", "rel_auc"] == pytest.approx(0.625)


def test_protocols_and_data_sets_never_share_a_curve():
    ref = [(m, s, lv, seed, v + 0.1) for m, s, lv, seed, v in POINTS]
    rows = pd.concat([rows_of(POINTS), rows_of(ref, protocol="reference-v1"), rows_of(POINTS, dataset="other")])
    auc = relative_auc(curve_frame(rows))
    assert len(auc) == 6 and set(auc["protocol"]) == {"harness-v2", "reference-v1"}


def test_markdown_has_the_summary_column_and_the_levels():
    text = robustness_markdown(rows_of(POINTS))
    assert "relative area under the MRR curve" in text and "Levels: missing 0, 0.5, 1" in text
    # the summary: clean MRR x100 and rel. AUC mean ± std; highlights on the printed values
    assert "| a       | **45.00**   | *0.688 ± 0.088* |" in text and "| b       | *30.00*     | **1.000**       |" in text
    # the level table: level 0 is the clean run, MRR x100, mean over seeds, then rel. AUC
    assert "| model   | 0         | 0.5       | 1         | rel. AUC   |" in text
    assert "| a       | **45.00** | *27.50*   | *22.50*   | *0.688*    |" in text
    assert robustness_markdown(rows_of([p for p in POINTS if p[1] == "clean"])) == ""


def test_robustness_latex_comes_from_the_same_cells():
    from mmkgbench.robustness import robustness_tables
    from mmkgbench.tables import to_latex
    summary, levels = robustness_tables(rows_of(POINTS))
    tex = to_latex(summary)
    assert r"a & \textbf{45.00} & \underline{0.688}{\scriptsize$\pm$0.088} \\" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and "|" not in tex.split("tabular}{")[1].split("}")[0]
    # a's clean 45 is best at level 0 (b second); b is best at every level and in rel. AUC
    assert r"b & \underline{30.00} & \textbf{30.00} & \textbf{30.00} & \textbf{1.000} \\" in to_latex(levels)


def test_the_axis_names_the_swept_scenario():
    assert level_label(rows_of(POINTS), "missing") == "fraction of entities missing the modality"


def test_robustness_figure_has_a_line_per_model_and_a_seed_band(tmp_path):
    from mmkgbench.plots import robustness_curves, robustness_figure
    rows = rows_of(POINTS)
    fig = robustness_figure(curve_frame(rows), xlabel="fraction missing")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "fraction missing" and ax.get_ylabel().startswith("MRR ×100")
    assert ax.get_title() == "toy: missing"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.get_legend().get_title().get_text() == "band: ± 1 std\nover 2 seeds"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [45.0, 27.5, 22.5])
    assert len(ax.collections) == 1          # a band for a (2 seeds), none for b (1 seed)
    paths = robustness_curves(rows, tmp_path, formats=("png", "pdf"))
    assert [p.name for p in paths] == ["robustness_toy_missing.png", "robustness_toy_missing.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    again = robustness_curves(rows, tmp_path / "again", formats=("png",))
    assert again[0].read_bytes() == paths[0].read_bytes()      # same rows, same bytes
