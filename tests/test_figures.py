"""Analysis figures (mmkgbench.figures) from small fixed frames: values, labels, files."""
from __future__ import annotations

import inspect
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from mmkgbench import plots
from mmkgbench.figures import (DRAW, bars, cd_diagram, check_view, heatmap, per_relation_figure, per_relation_mrr,
                               view_frame)
from mmkgbench.modelinfo import MODEL_INFO
from mmkgbench.models import MODELS
from mmkgbench.plots import pyplot, save_figure
from tests.test_models import build

PNG, PDF = b"\x89PNG\r\n\x1a\n", b"%PDF-"


@pytest.fixture(autouse=True)
def _close_all():
    yield
    pyplot().close("all")


def saved_ok(fig, tmp_path, name="x"):
    png, pdf = save_figure(fig, tmp_path / name, ("png", "pdf"))
    assert png.read_bytes()[:8] == PNG and pdf.read_bytes()[:5] == PDF
    return png


def ticks(labels):
    return [t.get_text() for t in labels]


# -- per-relation MRR ------------------------------------------------------------------------
# (split, query_id, h, r, t, side, rank_real): r2 has 3 test queries, r1 two, r0 one.
QUERIES = [("test", 0, 0, 2, 1, "tail"), ("test", 0, 0, 2, 1, "head"), ("test", 1, 3, 2, 4, "tail"),
           ("test", 2, 5, 1, 6, "tail"), ("test", 2, 5, 1, 6, "head"), ("test", 3, 7, 0, 8, "head"),
           ("valid", 0, 7, 0, 9, "tail")]
RANKS_A = [1, 2, 4, 2.5, 1, 10, 1]          # test: r2 (1+1/2+1/4)/3, r1 (0.4+1)/2, r0 0.1
RANKS_B = [1, 1, 1, 5, 2, 1, 100]           # test: r2 1, r1 (0.2+0.5)/2, r0 1


def per_query(ranks, queries=QUERIES):
    frame = pd.DataFrame(queries, columns=["split", "query_id", "h", "r", "t", "side"])
    frame["rank_real"] = np.asarray(ranks, dtype=float)
    frame["rank_opt"] = np.floor(frame["rank_real"])
    frame["rank_pess"] = np.ceil(frame["rank_real"])
    frame["n_cand"] = 10
    return frame


def test_per_relation_mrr_by_hand():
    out = per_relation_mrr(per_query(RANKS_A), per_query(RANKS_B), relation_names=["born_in", "works_for", "cites"])
    assert list(out.columns) == ["relation", "label", "queries", "mrr_a", "mrr_b", "diff"]
    assert out["relation"].tolist() == [2, 1, 0]                      # most queries first
    assert out["label"].tolist() == ["cites", "works_for", "born_in"]
    assert out["queries"].tolist() == [3, 2, 1]
    np.testing.assert_allclose(out["mrr_a"], [(1 + 0.5 + 0.25) / 3, (0.4 + 1.0) / 2, 0.1])   # valid row ignored
    np.testing.assert_allclose(out["mrr_b"], [1.0, (0.2 + 0.5) / 2, 1.0])
    np.testing.assert_allclose(out["diff"], out["mrr_b"] - out["mrr_a"])
    assert per_relation_mrr(per_query(RANKS_A), per_query(RANKS_B))["label"].tolist() == ["r2", "r1", "r0"]
    assert per_relation_mrr(per_query(RANKS_A), per_query(RANKS_B), min_queries=2)["relation"].tolist() == [2, 1]
    assert per_relation_mrr(per_query(RANKS_A), per_query(RANKS_B), top=1)["relation"].tolist() == [2]
    valid = per_relation_mrr(per_query(RANKS_A), per_query(RANKS_B), split="valid")
    assert valid["relation"].tolist() == [0] and valid["mrr_b"].tolist() == [0.01]


def test_per_relation_mrr_refuses_different_queries():
    flipped = list(QUERIES)
    flipped[5] = ("test", 3, 7, 0, 8, "tail")
    with pytest.raises(ValueError, match="1 only in A, 1 only in B"):
        per_relation_mrr(per_query(RANKS_A), per_query(RANKS_B, flipped))
    with pytest.raises(ValueError, match="0 only in base, 1 only in new"):
        per_relation_mrr(per_query(RANKS_A[1:], QUERIES[1:]), per_query(RANKS_B), names=("base", "new"))
    with pytest.raises(ValueError, match="repeats 1"):
        per_relation_mrr(per_query(RANKS_A + [3], QUERIES + [QUERIES[0]]), per_query(RANKS_B))


def test_per_relation_figure_pairs_bars_by_frequency(tmp_path):
    plt = pyplot()
    frame = per_relation_mrr(per_query(RANKS_A), per_query(RANKS_B), relation_names=["born_in", "works_for", "cites"])
    fig = per_relation_figure(frame.iloc[::-1], names=("MoMoK", "MoCME"))      # sorts by itself
    ax = fig.axes[0]
    assert ticks(ax.get_yticklabels()) == ["cites (n=3)", "works_for (n=2)", "born_in (n=1)"]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 2
    np.testing.assert_allclose([p.get_width() for p in bars[0]], [175 / 3, 70.0, 10.0])
    np.testing.assert_allclose([p.get_width() for p in bars[1]], [100.0, 35.0, 100.0])
    assert ax.get_ylim()[0] > ax.get_ylim()[1]                        # first relation drawn on top
    assert ticks(ax.get_legend().get_texts()) == ["MoMoK", "MoCME"]
    assert ax.get_xlabel() == "MRR ×100"
    assert ax.get_title() == "MRR ×100 per relation: MoMoK vs MoCME (3 most frequent)"
    png = saved_ok(fig, tmp_path)
    again = save_figure(fig, tmp_path / "again", ("png",))[0]
    assert again.read_bytes() == png.read_bytes()                     # same figure, same bytes
    plt.close(fig)
    fig = per_relation_figure(frame, names=("a", "b"), top=2, title="top two", metric_label="MRR (%)")
    ax = fig.axes[0]
    assert ticks(ax.get_yticklabels()) == ["cites (n=3)", "works_for (n=2)"]
    assert ax.get_title() == "top two" and ax.get_xlabel() == "MRR (%)"
    plt.close(fig)


# -- interpretation views: heatmap --------------------------------------------------------------
TAIL = {(0, "structure"): [0.7, 0.3], (0, "image"): [0.2, 0.8], (1, "structure"): [0.4, 0.6], (1, "image"): [0.5, 0.5]}
HEAD = {(0, "structure"): [0.1, 0.9], (0, "image"): [0.6, 0.4], (1, "structure"): [0.8, 0.2], (1, "image"): [0.9, 0.1]}
QUERY_COUNT = {("tail", 0): 2, ("head", 0): 6, ("tail", 1): 5, ("head", 1): 2}
GATES = {"table": "expert_gates", "kind": "heatmap", "index": "relation", "columns": ["modality", "expert"],
         "value": "weight", "where": {"direction": "tail"}, "order": ["structure", "*"], "range": [0.0, 1.0],
         "value_label": "mean gate weight", "title": "gates (tail)"}


def expert_gates():
    rows = []
    for direction, table in (("tail", TAIL), ("head", HEAD)):
        for (rel, modality), weights in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1])):   # image first
            for k, w in enumerate(weights):
                rows.append({"relation": rel, "modality": modality, "expert": k, "weight": w,
                             "queries": QUERY_COUNT[(direction, rel)], "direction": direction})
    return pd.DataFrame(rows)


def test_heatmap_matrix_labels_and_separator(tmp_path):
    plt = pyplot()
    fig = heatmap(expert_gates(), GATES)
    ax = fig.axes[0]
    # tail rows only: r1 (5 queries) above r0 (2); columns: structure first (the view's order), then image
    np.testing.assert_allclose(np.ma.getdata(ax.images[0].get_array()),
                               [[0.4, 0.6, 0.5, 0.5], [0.7, 0.3, 0.2, 0.8]])
    assert ticks(ax.get_xticklabels()) == ["structure 0", "structure 1", "image 0", "image 1"]
    assert ticks(ax.get_yticklabels()) == ["1 (n=5)", "0 (n=2)"]
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert fig.axes[1].get_ylabel() == "mean gate weight"             # the colorbar
    assert [tuple(line.get_xdata()) for line in ax.lines] == [(1.5, 1.5)]   # one separator between modalities
    assert ax.get_title() == "gates (tail)"
    assert ax.get_xlabel() == "modality × expert" and ax.get_ylabel() == "relation (queries)"
    saved_ok(fig, tmp_path)
    plt.close(fig)
    # without an order: modalities ascending; a labels column names the rows; the title from the caller
    named = expert_gates().assign(relation_name=lambda f: f["relation"].map({0: "born_in", 1: "cites"}))
    fig = heatmap(named, {**GATES, "order": None, "labels": "relation_name"}, title="DB15K: m gates")
    ax = fig.axes[0]
    assert ticks(ax.get_xticklabels()) == ["image 0", "image 1", "structure 0", "structure 1"]
    assert ticks(ax.get_yticklabels()) == ["cites (n=5)", "born_in (n=2)"]
    assert ax.get_title() == "DB15K: m gates"
    plt.close(fig)


def test_heatmap_weighs_by_queries_and_keeps_max_rows():
    plt = pyplot()
    both = {k: v for k, v in GATES.items() if k != "where"}          # tail and head rows together
    fig = heatmap(expert_gates(), both)
    # r0: 2 tail + 6 head queries, r1: 5 + 2
    expected = [[(0.7 * 2 + 0.1 * 6) / 8, (0.3 * 2 + 0.9 * 6) / 8, (0.2 * 2 + 0.6 * 6) / 8, (0.8 * 2 + 0.4 * 6) / 8],
                [(0.4 * 5 + 0.8 * 2) / 7, (0.6 * 5 + 0.2 * 2) / 7, (0.5 * 5 + 0.9 * 2) / 7, (0.5 * 5 + 0.1 * 2) / 7]]
    np.testing.assert_allclose(np.ma.getdata(fig.axes[0].images[0].get_array()), expected)
    assert ticks(fig.axes[0].get_yticklabels()) == ["0 (n=8)", "1 (n=7)"]
    plt.close(fig)
    frame = view_frame(expert_gates(), {**GATES, "where": {"direction": ["head"]}, "max_rows": 1})
    assert frame.columns.tolist() == ["relation", "label", "modality", "expert", "weight", "queries"]
    assert frame["relation"].tolist() == [0] * 4 and frame["queries"].tolist() == [6] * 4
    np.testing.assert_allclose(frame["weight"], [0.1, 0.9, 0.6, 0.4])
    # no queries column: plain means, rows by index, colour limits from the data
    plain = expert_gates().drop(columns="queries")
    fig = heatmap(plain, {**GATES, "range": None, "where": {}})
    ax = fig.axes[0]
    np.testing.assert_allclose(np.ma.getdata(ax.images[0].get_array())[0], [0.4, 0.6, 0.4, 0.6])   # r0
    assert ticks(ax.get_yticklabels()) == ["0", "1"] and ax.get_ylabel() == "relation"
    np.testing.assert_allclose(ax.images[0].get_clim(), (0.3, 0.7))     # r1: image 0 = 0.7, image 1 = 0.3
    plt.close(fig)


# -- interpretation views: bars -----------------------------------------------------------------
FUSION = {"table": "fusion_weights", "kind": "bars", "x": "modality", "value": "weight",
          "order": ["structure", "*"], "range": [0.0, 1.0], "value_label": "mean fusion weight"}
DECISION = {"table": "decision_probability", "kind": "bars", "x": "modality", "value": "probability",
            "order": ["structure", "*", "joint"], "range": [0.0, 1.0], "title": "decisions"}


def fusion_weights():
    rows = [(0, "structure", 0.5, 3, "tail"), (0, "image", 0.3, 3, "tail"), (0, "text", 0.2, 3, "tail"),
            (1, "structure", 0.1, 1, "tail"), (1, "image", 0.6, 1, "tail"), (1, "text", 0.3, 1, "tail"),
            (0, "structure", 0.2, 4, "head"), (0, "image", 0.2, 4, "head"), (0, "text", 0.6, 4, "head")]
    return pd.DataFrame(rows, columns=["relation", "modality", "weight", "queries", "direction"])


def decision_probability():
    rows = [(0, "image", 0.1, 3), (0, "joint", 0.8, 3), (0, "structure", 0.2, 3), (0, "text", 0.4, 3),
            (1, "image", 0.5, 1), (1, "joint", 0.4, 1), (1, "structure", 0.6, 1), (1, "text", 0.0, 1)]
    return pd.DataFrame(rows, columns=["relation", "modality", "probability", "queries"]).assign(direction="tail")


def heights(ax):
    return [p.get_height() for c in ax.containers if isinstance(c, BarContainer) for p in c]


def test_bars_of_one_run_are_query_weighted_in_the_views_order(tmp_path):
    plt = pyplot()
    fig = bars(fusion_weights(), FUSION, title="DB15K: m fusion")
    ax = fig.axes[0]
    assert ticks(ax.get_xticklabels()) == ["structure", "image", "text"]
    np.testing.assert_allclose(heights(ax), [2.4 / 8, 2.3 / 8, 3.3 / 8])          # not the plain means
    assert [t.get_text() for t in ax.texts] == ["0.30", "0.29", "0.41"]          # the value labels
    assert ax.get_ylabel() == "mean fusion weight\n(query-weighted)" and ax.get_xlabel() == "modality"
    assert ax.get_title() == "DB15K: m fusion" and ax.get_ylim() == (0.0, 1.05)
    saved_ok(fig, tmp_path)
    plt.close(fig)
    fig = bars(decision_probability(), DECISION)
    ax = fig.axes[0]
    assert ticks(ax.get_xticklabels()) == ["structure", "image", "text", "joint"]   # "*" between, joint last
    np.testing.assert_allclose(heights(ax), [1.2 / 4, 0.8 / 4, 1.2 / 4, 2.8 / 4])
    assert ax.get_title() == "decisions" and ax.get_ylabel() == "mean probability\n(query-weighted)"
    plt.close(fig)
    drawn = view_frame(decision_probability(), DECISION)
    assert drawn.columns.tolist() == ["modality", "probability", "queries"]
    assert drawn["modality"].tolist() == ["structure", "image", "text", "joint"] and drawn["queries"].tolist() == [4] * 4


WEIGHTS = {"table": "modality_weights", "kind": "bars", "x": "modality", "value": "weight", "runs": "all",
           "order": ["structure", "*"], "value_label": "mean modality weight"}


def weights_of_runs():
    """One modality_weights table per run (scenario, level, seed), concatenated as the report does."""
    rows = []
    cells = [("noisy", 0.5, {"structure": (0.6, 0.7), "image": (0.1, 0.2), "text": (0.3, 0.1)}),
             ("clean", 0.0, {"structure": (0.4, 0.5), "image": (0.35, 0.3), "text": (0.25, 0.2)}),
             ("missing", 0.25, {"structure": (0.5, 0.5), "image": (0.2, 0.3), "text": (0.3, 0.2)})]
    for scenario, level, weights in cells:
        for modality in ("text", "image", "structure"):
            for seed, w in enumerate(weights[modality]):
                rows.append({"scenario": scenario, "level": level, "modality": modality, "weight": w, "seed": seed})
    return pd.DataFrame(rows)


def test_bars_over_all_runs_group_by_scenario_cell_with_std_over_seeds(tmp_path):
    plt = pyplot()
    fig = bars(weights_of_runs(), WEIGHTS)
    ax = fig.axes[0]
    assert ticks(ax.get_xticklabels()) == ["clean", "missing 0.25", "noisy 0.5"]     # clean first
    assert ticks(ax.get_legend().get_texts()) == ["structure", "image", "text"]
    assert ax.get_legend().get_title().get_text() == "modality\n± 1 std over 2 seeds"
    drawn = [c for c in ax.containers if isinstance(c, BarContainer)]
    np.testing.assert_allclose([p.get_height() for p in drawn[0]], [0.45, 0.5, 0.65])       # structure
    np.testing.assert_allclose([p.get_height() for p in drawn[1]], [0.325, 0.25, 0.15])     # image
    np.testing.assert_allclose([p.get_height() for p in drawn[2]], [0.225, 0.25, 0.2])      # text
    segments = drawn[0].errorbar.lines[2][0].get_segments()           # structure's ± 1 std (ddof=1)
    half = [(s[1, 1] - s[0, 1]) / 2 for s in segments]
    np.testing.assert_allclose(half, [0.1 / math.sqrt(2), 0.0, 0.1 / math.sqrt(2)], atol=1e-12)
    assert ax.get_ylabel() == "mean modality weight" and ax.get_title() == "modality weights"
    saved_ok(fig, tmp_path)
    plt.close(fig)
    one = weights_of_runs().query("seed == 0")
    fig = bars(one, WEIGHTS, title="one seed")
    ax = fig.axes[0]
    drawn = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert all(c.errorbar is None for c in drawn) and ax.get_legend().get_title().get_text() == "modality"
    np.testing.assert_allclose([p.get_height() for p in drawn[0]], [0.4, 0.5, 0.6])
    plt.close(fig)
    frame = view_frame(weights_of_runs(), WEIGHTS)
    assert frame.columns.tolist() == ["cell", "scenario", "level", "modality", "weight", "std", "seeds"]
    assert frame["cell"].tolist()[:3] == ["clean"] * 3 and frame["seeds"].tolist() == [2] * 9
    with pytest.raises(ValueError, match="lacks column.*seed"):
        bars(weights_of_runs().drop(columns="seed"), WEIGHTS)


# -- interpretation views: validation -----------------------------------------------------------
@pytest.mark.parametrize("change, problem", [
    ({"kind": "pie"}, "unknown kind 'pie'; choose from heatmap, bars"),
    ({"index": None}, None),
    ({"colour": "red"}, "unknown key.*colour"),
    ({"value": "gate"}, "table 'expert_gates' lacks column.*gate.*has relation"),
    ({"where": {"side": "tail"}}, "table 'expert_gates' lacks column.s. side"),
    ({"runs": "all"}, "a heatmap draws one run"),
    ({"runs": "some"}, "runs must be one of clean, all, not 'some'"),
    ({"range": [1.0, 0.0]}, "range must be"),
    ({"columns": []}, "columns must be"),
    ({"max_rows": 0}, "max_rows"),
])
def test_check_view_names_the_run_and_the_view(change, problem):
    view = {k: v for k, v in {**GATES, **change}.items() if v is not None}
    problem = problem or "a heatmap needs index"
    with pytest.raises(ValueError, match=f"^results/runs/abc: interpretation view 'gates': {problem}"):
        check_view(view, expert_gates().columns, name="gates", where="results/runs/abc")


def test_check_view_fills_defaults_and_figures_refuse_the_wrong_view():
    full = check_view(GATES, expert_gates().columns, name="expert_gates")
    assert full["runs"] == "clean" and full["max_rows"] == 40 and full["labels"] is None
    assert full["title"] == "gates (tail)" and full["value_label"] == "mean gate weight"
    plain = check_view(FUSION, name="fusion_weights")                 # title from the name
    assert plain["title"] == "fusion weights" and plain["where"] == {} and plain["order"] == ["structure", "*"]
    assert check_view({"table": "t", "kind": "heatmap", "index": "r", "columns": "m", "value": "v"})["columns"] == ["m"]
    with pytest.raises(ValueError, match="heatmap\\(\\) got a bars view"):
        heatmap(fusion_weights(), FUSION)
    with pytest.raises(ValueError, match="no rows of table 'fusion_weights' match"):
        bars(fusion_weights(), {**FUSION, "where": {"direction": "sideways"}})


def test_source_names_no_model():
    """The report draws what the runs declare: figures.py and outputs.py name no model, except the
    default reference choice (outputs.PREFERRED_REFERENCES)."""
    from mmkgbench import figures, outputs
    names = {k.lower() for k in MODEL_INFO} | {i.name.lower() for i in MODEL_INFO.values()}
    names -= {"complex"}          # ComplEx's key is an English word
    for module in (figures, outputs, plots):
        lines = inspect.getsource(module).lower().splitlines()
        hits = [(i + 1, line) for i, line in enumerate(lines) if not line.startswith("preferred_references =")
                and any(re.search(rf"\b{re.escape(n)}\b", line) for n in names)]
        assert not hits, f"{module.__name__} names a model: {hits}"


@pytest.mark.parametrize("name", [n for n in MODELS if MODELS[n].interpretation_views])
def test_interpretation_views_of_every_model_draw_its_own_tables(name, tiny):
    """Every declared view is valid JSON, reads columns its model's interpretation() returns, and draws."""
    import torch
    plt = pyplot()
    model = build(name, tiny)
    tables = model.interpretation(torch.tensor(np.array(tiny.train)))
    views = MODELS[name].interpretation_views
    assert json.loads(json.dumps(views)) == views                     # stored as interpretation.json
    for vname, view in views.items():
        assert view["table"] in tables, vname
        frame = tables[view["table"]]
        if check_view(view, name=vname)["runs"] == "all":             # what the report adds per run
            frame = frame.assign(scenario="clean", level=0.0, seed=0)
        fig = DRAW[view["kind"]](frame, check_view(view, frame.columns, name=vname))
        assert np.isfinite(view_frame(frame, view).select_dtypes("number").to_numpy()).any()
        plt.close(fig)


# -- critical-difference diagram -------------------------------------------------------------
RANKS = pd.Series({"E": 5.0, "B": 2.0, "A": 1.2, "D": 4.2, "C": 2.6})


def thick(ax):
    return [line for line in ax.lines if line.get_linewidth() >= 3]


def test_cd_diagram_layout_cliques_and_cd_bar(tmp_path):
    plt = pyplot()
    fig = cd_diagram(RANKS, 1.5, n_blocks=8)
    ax = fig.axes[0]
    texts = {t.get_text(): t for t in ax.texts}
    assert "CD = 1.50" in texts
    assert [str(v) for v in range(1, 6)] == [s for s in texts if s.isdigit()]          # rank ticks 1..5
    for name in ("A (1.20)", "B (2.00)", "C (2.60)"):
        assert texts[name].get_ha() == "right"          # the better half labelled on the left
    for name in ("D (4.20)", "E (5.00)"):
        assert texts[name].get_ha() == "left"
    assert texts["A (1.20)"].get_position()[0] < texts["E (5.00)"].get_position()[0]   # best on the left
    bars = thick(ax)
    assert len(bars) == 2
    spans = sorted(tuple(np.round(b.get_xdata(), 2)) for b in bars)
    assert spans == [(1.16, 2.64), (4.16, 5.04)]           # each clique's ranks, ± 0.04
    cd_bar = [line for line in ax.lines if tuple(line.get_xdata()) == (1, 2.5)]
    assert len(cd_bar) == 1
    assert ax.get_title() == "Average ranks (1 = best) over 8 data sets, CD at α = 0.05"
    assert not any("descriptive" in s for s in texts) and "descriptive" not in ax.get_title()
    png = saved_ok(fig, tmp_path)
    plt.close(fig)
    again = cd_diagram(RANKS, 1.5, n_blocks=8)
    assert save_figure(again, tmp_path / "again", ("png",))[0].read_bytes() == png.read_bytes()   # same input, same bytes
    plt.close(again)


def test_cd_diagram_given_cliques_and_descriptive_label():
    plt = pyplot()
    fig = cd_diagram(RANKS, 1.5, cliques=[["B", "C", "D"]], descriptive=True, n_blocks=3, title="toy", alpha=0.1)
    ax = fig.axes[0]
    bars = thick(ax)
    assert len(bars) == 1
    np.testing.assert_allclose(bars[0].get_xdata(), [1.96, 4.24])
    assert ax.get_title() == "toy\ndescriptive: 3 < 5 data sets, not a significance test"
    plt.close(fig)
    fig = cd_diagram(RANKS, 1.5, descriptive=True)
    assert "descriptive: N < 5 data sets" in fig.axes[0].get_title()
    assert "α = 0.05" in fig.axes[0].get_title()
    plt.close(fig)
    fig = cd_diagram(RANKS, 1.5, descriptive="blocks are cells of one data set", title="t")
    assert fig.axes[0].get_title() == "t\ndescriptive: blocks are cells of one data set, not a significance test"
    plt.close(fig)
    with pytest.raises(ValueError, match="Z"):
        cd_diagram(RANKS, 1.5, cliques=[["A", "Z"]])
    with pytest.raises(ValueError, match="lie in"):
        cd_diagram(pd.Series({"a": 0.5, "b": 2.0}), 1.0)
