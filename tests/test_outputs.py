"""`report` end to end: stored runs in, every table and figure out, deterministic, nothing trained."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmkgbench.cli import main
from mmkgbench.outputs import cd_scores, default_reference, parse_formats, write_report
from mmkgbench.results import (VIEWS_FILE, load_config, load_interpretation_views, load_per_query, load_rows,
                               run_id_of, runs_dir, write_run)
from mmkgbench.grid import GRID_DIR, grid_from_dict, tomllib
from mmkgbench.runner import run_grid


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The smoke grid's models with two seeds, clean and one feature scenario: 2 epochs each."""
    root = tmp_path_factory.mktemp("results")
    smoke = tomllib.loads((GRID_DIR / "smoke.toml").read_text())
    spec = {**smoke, "models": ["distmult", "tucker", "momok", "mocme"], "seeds": [0, 1],
            "scenarios": {"clean": [0.0], "missing": [0.5], "sparse": [0.3]}}
    run_grid(grid_from_dict(spec), root, progress=False, log=quiet)
    rows = load_rows(root)
    store_declared_views(root, rows)
    return root, rows


def store_declared_views(root, rows):
    """Give each run the views its model declares, where the runner has not stored them itself (the
    file write_run(views=model.interpretation_views) writes), as the report reads them."""
    from mmkgbench.models import MODELS
    for rid, model in rows.drop_duplicates("run_id")[["run_id", "model"]].itertuples(index=False):
        base = load_config(root, rid)["config"].get("base_model", model)
        path = runs_dir(root) / rid / VIEWS_FILE
        if MODELS[base].interpretation_views and not path.exists():
            path.write_text(json.dumps(MODELS[base].interpretation_views))


def test_report_writes_every_table_and_figure(stored, tmp_path):
    root, rows = stored
    out = write_report(rows, root, formats=("md", "tex", "png", "pdf"), out=tmp_path, resamples=500)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in out["paths"])
    for expected in ["tables/summary.csv", "tables/significance.csv", "tables/main.md", "tables/main.tex",
                     "tables/robustness.md", "tables/robustness.tex", "figures/cd_diagram.png",
                     "figures/cd_diagram.pdf", "figures/cd_diagram.csv",
                     "figures/robustness_synthetic-tiny_missing.pdf",
                     # the views the models' runs declare: <model>_<view>_<data set>, each with its numbers
                     "figures/momok_expert-gates_synthetic-tiny.png", "figures/momok_expert-gates_synthetic-tiny.csv",
                     "figures/momok_fusion-weights_synthetic-tiny.pdf",
                     "figures/momok_decision-probability_synthetic-tiny.csv",
                     "figures/mocme_modality-weights_synthetic-tiny.png",
                     "figures/mocme_modality-weights_synthetic-tiny.csv"]:
        assert expected in names
    assert not [n for n in names if n.startswith(("figures/distmult_", "figures/tucker_"))]   # they declare none
    # per-relation MRR: the reference against the strongest other model on clean
    assert len([n for n in names if n.startswith("figures/per-relation_synthetic-tiny_") and
                n.endswith("_vs_momok.png")]) == 1
    assert all(p.is_file() for p in out["paths"])
    assert out["reference"] == "momok"                                  # the suite's subject, when present
    sig = pd.read_csv(tmp_path / "tables" / "significance.csv")
    # clean: 3 models x 4 metrics; missing: mocme only (structure-only models are not run under it);
    # sparse: 3 x 4
    assert len(sig) == 12 + 4 + 12 and set(sig["reference"]) == {"momok"}
    assert sig["p"].between(1 / 501, 1).all() and (sig["p_holm"] >= sig["p"]).all()
    main_md = (tmp_path / "tables" / "main.md").read_text()
    assert "momok (ref.)" in main_md and "after Holm correction over the 12 comparisons" in main_md
    assert r"\toprule" in (tmp_path / "tables" / "main.tex").read_text()
    weights = pd.read_csv(tmp_path / "figures" / "mocme_modality-weights_synthetic-tiny.csv")
    assert list(dict.fromkeys(weights["scenario"])) == ["clean", "missing", "sparse"]
    assert set(weights["seeds"]) == {2} and list(dict.fromkeys(weights["modality"]))[0] == "structure"
    np.testing.assert_allclose(weights.groupby("cell")["weight"].sum(), 1.0, rtol=1e-5)   # a distribution per cell
    gates = pd.read_csv(tmp_path / "figures" / "momok_expert-gates_synthetic-tiny.csv")
    assert gates["label"].notna().all() and set(gates["modality"]) == {"structure", "image", "text"}
    assert "paper_momok-main" not in " ".join(names)                  # no run on a published benchmark
    # the same rows give the same files, byte for byte
    again = write_report(rows, root, formats=("md", "tex", "png"), out=tmp_path / "again", resamples=500)
    for p in again["paths"]:
        assert p.read_bytes() == (tmp_path / p.relative_to(tmp_path / "again")).read_bytes(), p.name


def test_a_chosen_reference_and_format_errors(stored, tmp_path):
    root, rows = stored
    out = write_report(rows, root, formats=("md",), reference="tucker", out=tmp_path, resamples=200)
    assert [p.name for p in out["paths"]] == ["summary.csv", "significance.csv", "main.md", "robustness.md"]
    assert "tucker (ref.)" in (tmp_path / "tables" / "main.md").read_text()
    with pytest.raises(ValueError, match="reference model 'transe' has no stored runs here; models present: "
                                         "distmult, tucker, momok, mocme"):
        write_report(rows, root, reference="transe", out=tmp_path)
    with pytest.raises(ValueError, match="unknown report format.*svg.*valid: md, tex, png, pdf"):
        parse_formats("md,svg")


def test_default_reference_without_momok_or_mocme_is_the_best_clean_model():
    rows = pd.DataFrame({"model": ["a", "b", "a", "b"], "scenario": "clean", "metric": "mrr", "side": "both",
                         "value": [0.2, 0.3, 0.2, 0.1]})
    assert default_reference(rows) == "a"


def test_cd_blocks_are_data_sets_when_there_are_two(stored):
    _, rows = stored
    scores, kind = cd_scores(rows)
    assert kind.startswith("scenario cells") and list(scores.columns) == ["distmult", "tucker", "momok", "mocme"]
    assert len(scores) == 2                 # clean and sparse: missing lacks the structure-only models
    two = pd.concat([rows, rows.assign(dataset="other")])
    scores, kind = cd_scores(two)
    assert kind == "data sets (clean)" and list(scores.index) == ["other", "synthetic_tiny"]


def test_report_command_prints_markers_and_lists_files(stored, capsys):
    root, _ = stored
    assert main(["--results", str(root), "report", "--format", "md,png", "--resamples", "300"]) == 0
    text = capsys.readouterr().out
    assert "momok (ref.)" in text and "† differs from momok" in text and "reference model momok" in text
    assert str(root / "figures" / "cd_diagram.png") in text
    assert main(["--results", str(root), "report", "--format", "gif"]) == 2


TOY_VIEWS = {
    "attention": {"table": "attention", "kind": "heatmap", "index": "relation", "columns": "source",
                  "value": "weight", "labels": "relation_name", "title": "attention"},
    "trust": {"table": "trust", "kind": "bars", "x": "source", "value": "trust", "runs": "all"},
}


def toy_tables(seed: int, level: float) -> dict:
    """What a made-up model says about itself: attention per (relation, source), trust per source."""
    attention = pd.DataFrame({"relation": [0, 0, 1, 1], "relation_name": ["a", "a", "b", "b"],
                              "source": ["left", "right", "left", "right"],
                              "weight": [0.25, 0.75, 0.5, 0.5], "queries": [4, 4, 2, 2]})
    trust = pd.DataFrame({"source": ["left", "right"], "trust": [0.1 + seed / 10, 0.9 - level]})
    return {"attention": attention, "trust": trust}


def store_as(root, source, rid: str, rows: pd.DataFrame, model: str, extra=None, views=None) -> str:
    """Store run `rid` of `source` again as a valid run of `model` (its config renamed, so its run id
    changes with it: a folder's name is the hash of its config); returns the new run id."""
    config = {**load_config(source, rid)["config"], "model": model}
    new = run_id_of(config)
    per_query = load_per_query(source, rid).assign(run_id=new)
    history = pd.read_csv(runs_dir(source) / rid / "history.csv")
    run = rows[rows["run_id"] == rid].assign(run_id=new, model=model)
    write_run(root, new, {"run_id": new, "config": config}, run, per_query, history, extra, views=views)
    return new


def test_a_made_up_model_gets_the_figures_it_declares(stored, tmp_path):
    """No report code names the model: its runs' views alone make its figures (named after it)."""
    source, rows = stored
    root = tmp_path / "results"
    for model in ("distmult", "tucker"):       # their runs, stored again as another model's
        for rid in rows[rows["model"] == model]["run_id"].unique():
            run = rows[rows["run_id"] == rid]
            seed, level = int(run["seed"].iloc[0]), float(run["level"].iloc[0])
            toy = model == "distmult"
            store_as(root, source, rid, rows, "toy_model" if toy else model, toy_tables(seed, level) if toy else None,
                     views=TOY_VIEWS if toy else None)
    stored_rows = load_rows(root)
    toy = stored_rows[stored_rows["model"] == "toy_model"]["run_id"].unique()
    assert len(toy) == 4 and all(load_interpretation_views(root, rid) == TOY_VIEWS for rid in toy)
    out = write_report(stored_rows, root, formats=("png",), out=tmp_path / "report", resamples=100)
    figures = {p.name for p in out["paths"] if p.parent.name == "figures"}
    assert {"toy-model_attention_synthetic-tiny.png", "toy-model_attention_synthetic-tiny.csv",
            "toy-model_trust_synthetic-tiny.png", "toy-model_trust_synthetic-tiny.csv"} <= figures
    assert not [n for n in figures if n.startswith("tucker_")]
    attention = pd.read_csv(tmp_path / "report" / "figures" / "toy-model_attention_synthetic-tiny.csv")
    assert attention["label"].tolist() == ["a", "a", "b", "b"] and attention["weight"].tolist() == [0.25, 0.75, 0.5, 0.5]
    trust = pd.read_csv(tmp_path / "report" / "figures" / "toy-model_trust_synthetic-tiny.csv")
    # toy_model (distmult's runs) ran clean and sparse 0.3, seeds 0 and 1: left = mean(0.1, 0.2), right = 0.9 - level
    assert trust["cell"].tolist() == ["clean", "clean", "sparse 0.3", "sparse 0.3"]
    assert trust["source"].tolist() == ["left", "right"] * 2 and trust["seeds"].tolist() == [2] * 4
    np.testing.assert_allclose(trust["trust"], [0.15, 0.9, 0.15, 0.6])
    np.testing.assert_allclose(trust["std"], [np.std([0.1, 0.2], ddof=1), 0] * 2, atol=1e-12)

    # a view that reads a column its table lacks: an error naming the run folder and the view
    bad = tmp_path / "bad"
    first = rows[(rows["model"] == "distmult") & (rows["scenario"] == "clean")]["run_id"].iloc[0]
    x1 = store_as(bad, source, first, rows, "distmult", toy_tables(0, 0.0),
                  views={"attention": {**TOY_VIEWS["attention"], "value": "strength"}})
    with pytest.raises(ValueError, match=rf"runs/{x1}: interpretation view 'attention': table 'attention' lacks "
                                         r"column.s. strength"):
        write_report(load_rows(bad), bad, formats=("png",), out=tmp_path / "bad-report", resamples=100)


def test_write_run_stores_views_only_with_their_tables(stored, tmp_path):
    source, rows = stored
    run = rows[rows["run_id"] == rows["run_id"].iloc[0]]
    args = (run, load_per_query(source, run["run_id"].iloc[0]), pd.DataFrame())
    write_run(tmp_path, "plain", {}, *args, toy_tables(0, 0.0), views={})
    assert not (runs_dir(tmp_path) / "plain" / VIEWS_FILE).exists() and load_interpretation_views(tmp_path, "plain") == {}
    with pytest.raises(ValueError, match="run y: interpretation view 'trust' draws table 'trust', which the model "
                                         "did not return .its tables: attention."):
        write_run(tmp_path, "y", {}, *args, {"attention": toy_tables(0, 0.0)["attention"]}, views=TOY_VIEWS)
    with pytest.raises(ValueError, match="plain JSON"):
        write_run(tmp_path, "z", {}, *args, toy_tables(0, 0.0),
                  views={"trust": {**TOY_VIEWS["trust"], "range": {0.0, 1.0}}})
    assert not (runs_dir(tmp_path) / "y").exists() and not (runs_dir(tmp_path) / "z").exists()
