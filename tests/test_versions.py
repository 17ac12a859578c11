"""Every number traceable and current: model versions in the run id, reports that refuse to pool
versions, `prune --stale`, shared trainings for scoring-only variants, and order-independent
composition checks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmkgbench.cli import main
from mmkgbench.datasets import load_dataset
from mmkgbench.grid import GRID_DIR, grid_from_dict, load_grid
from mmkgbench.models import MODELS
from mmkgbench.resolve import resolve, run_id_of, stale_reasons, training_id
from mmkgbench.results import load_config, load_per_query, load_rows, runs_dir
from mmkgbench.runner import GridPlan, build_model, run_grid

TINY = {"models": ["distmult"], "datasets": ["synthetic_tiny"], "seeds": [0],
        "train": {"max_epochs": 2, "eval_every": 1, "batch_size": 64, "num_negatives": 4},
        "overrides": {"distmult": {"dim": 8}}}


def quiet(*_):
    pass


def test_the_model_version_is_part_of_the_run_id(monkeypatch):
    cell = grid_from_dict(TINY).cells[0]
    data = load_dataset("synthetic_tiny")
    config = resolve(cell, data)
    assert config["model_version"] == MODELS["distmult"].version
    before = run_id_of(config)
    monkeypatch.setattr(MODELS["distmult"], "version", MODELS["distmult"].version + 1)
    after = resolve(cell, data)
    assert run_id_of(after) != before
    assert stale_reasons(after) == []
    assert stale_reasons(config) == [f"distmult version {config['model_version']} != current "
                                     f"{config['model_version'] + 1}"]


def test_report_refuses_to_pool_seeds_of_two_model_versions_and_prune_moves_the_stale_ones(tmp_path, monkeypatch,
                                                                                           capsys):
    assert not run_grid(grid_from_dict(TINY), tmp_path, progress=False, log=quiet)["failed"]
    old = load_rows(tmp_path)["run_id"].unique().tolist()
    # after a `git pull` that bumped distmult's version, a second seed is added
    monkeypatch.setattr(MODELS["distmult"], "version", MODELS["distmult"].version + 1)
    out = run_grid(grid_from_dict({**TINY, "seeds": [0, 1]}), tmp_path, progress=False, log=quiet)
    assert len(out["done"]) == 2 and not out["skipped"]        # seed 0 is retrained: its run id changed
    capsys.readouterr()
    assert main(["--results", str(tmp_path), "report", "--format", "md"]) == 2
    err = capsys.readouterr().err
    assert "different model versions" in err and old[0] in err and "prune --stale" in err
    assert main(["--results", str(tmp_path), "prune", "--stale", "--dry-run"]) == 0
    assert (runs_dir(tmp_path) / old[0]).is_dir()
    assert main(["--results", str(tmp_path), "prune", "--stale"]) == 0
    assert not (runs_dir(tmp_path) / old[0]).exists() and (tmp_path / "stale" / old[0] / "rows.csv").is_file()
    capsys.readouterr()
    assert main(["--results", str(tmp_path), "report", "--format", "md"]) == 0
    assert "2 seeds" in capsys.readouterr().out


def test_seeds_of_one_version_from_different_commits_are_pooled():
    from mmkgbench.report import summarise
    rows = pd.DataFrame([{"run_id": f"r{s}", "model": "tucker", "model_version": 1, "dataset": "d", "scenario": "clean",
                          "scenario_version": 1, "level": 0.0, "seed": s, "split": "test", "side": "both",
                          "metric": "mrr", "value": 0.1 * (s + 1), "protocol": "harness-v2",
                          "code_version": f"0.1.0+{'abc' if s else 'def'}"} for s in (0, 1)])
    summ = summarise(rows)
    assert summ["n_seeds"].tolist() == [2] and np.isclose(summ["mean"].iloc[0], 0.15)
    with pytest.raises(ValueError, match="different scenario versions"):
        summarise(rows.assign(scenario_version=[1, 2]))


# ---------------------------------------------------------------------------- shared trainings

MOMOK = {"models": ["momok", "momok_structure", "momok_joint", "momok_no_exid"], "datasets": ["synthetic_tiny"],
         "seeds": [0], "train": {"max_epochs": 2, "eval_every": 1, "batch_size": 64},
         "overrides": {"momok": {"dim": 8, "relation_dim": 4}},
         "variants": {"momok_structure": {"model": "momok", "decision": "structure"},
                      "momok_joint": {"model": "momok", "decision": "joint"},
                      "momok_no_exid": {"model": "momok", "exid": False}}}


def test_decision_rows_are_scored_from_one_training(tmp_path):
    grid = grid_from_dict(MOMOK)
    out = run_grid(grid, tmp_path, progress=False, log=quiet)
    assert not out["failed"] and len(out["done"]) == 4 and out["trainings"] == 2
    rows = load_rows(tmp_path)
    ids = rows.drop_duplicates("model").set_index("model")["run_id"]
    histories = {m: pd.read_csv(runs_dir(tmp_path) / ids[m] / "history.csv") for m in ids.index}
    pd.testing.assert_frame_equal(histories["momok"], histories["momok_structure"])
    trained = {m: load_config(tmp_path, ids[m])["training"]["id"] for m in ids.index}
    assert trained["momok"] == trained["momok_structure"] == trained["momok_joint"] != trained["momok_no_exid"]
    assert load_config(tmp_path, ids["momok_joint"])["config"]["model_config"]["decision"] == "joint"
    # the structure row is exactly the shared checkpoint scored by the structure decision alone
    from mmkgbench.evaluate import EvalConfig, evaluate
    from mmkgbench.ranking import KnownAnswers
    from mmkgbench.train import TrainConfig, train
    import torch
    from mmkgbench.runner import deterministic
    data = load_dataset("synthetic_tiny")
    cell = next(c for c in grid.cells if c.model == "momok")
    config = resolve(cell, data)
    with torch.random.fork_rng(), deterministic(torch.device("cpu")):
        torch.manual_seed(0)
        model = build_model(cell, config, data)
        R = data.num_relations
        known_valid = KnownAnswers(np.concatenate([data.train, data.valid]), R)
        train(model, data.train, R, data.num_entities, TrainConfig(**config["train"]), valid_triples=data.valid,
              known_valid=known_valid, eval_cfg=EvalConfig(**config["eval"]), seed=0)
        model.rescore(decision="structure")
        known = KnownAnswers(np.concatenate([data.train, data.valid, data.test]), R)
        ev = evaluate(model, data.test, known, num_relations=R, cfg=EvalConfig(**config["eval"]), seed=0)
    stored = load_per_query(tmp_path, ids["momok_structure"])
    stored = stored[stored["split"] == "test"].reset_index(drop=True)
    np.testing.assert_array_equal(stored["rank_opt"], ev.per_query["rank_opt"])
    assert not np.array_equal(stored["rank_opt"], load_per_query(tmp_path, ids["momok"]).query("split == 'test'")
                              ["rank_opt"])
    # resuming: everything stored, nothing trained
    again = run_grid(grid, tmp_path, progress=False, log=quiet)
    assert again["trainings"] == 0 and len(again["skipped"]) == 4


def test_the_reference_protocol_trains_every_decision_row_separately():
    grid = grid_from_dict({**MOMOK, "protocol": "reference"})
    data = load_dataset("synthetic_tiny")
    ids = {c.model: training_id(resolve(c, data), c.model_class) for c in grid.cells}
    assert len(set(ids.values())) == 4


def test_the_synthetic_ablation_grid_trains_six_models_per_seed_for_its_ten_rows():
    # the full model and rows (1.1)-(1.4) are one training; the five switches (2.1)-(2.5) one each
    grid = load_grid(GRID_DIR / "momok-ablation-synthetic.toml")
    plan = GridPlan(grid)
    seeds = len({c.seed for c in grid.cells})
    assert len(plan.runs) == 10 * seeds and plan.trainings == 6 * seeds


# --------------------------------------------------------------------------------- compositions

@pytest.mark.parametrize("order", [("missing", "sparse"), ("sparse", "missing")])
def test_whether_a_composition_runs_a_model_does_not_depend_on_the_order_of_its_steps(order):
    grid = grid_from_dict({"models": ["tucker", "momok"], "datasets": ["synthetic_tiny"], "seeds": [0],
                           "scenarios": {"both": {"levels": [0.2], "steps": [{"scenario": s} for s in order]},
                                         "missing_only": {"levels": [0.2], "steps": [{"scenario": "missing"},
                                                                                     {"scenario": "sparse",
                                                                                      "level": 0.3}]}}})
    run = {(c.model, c.scenario) for c in grid.cells}
    # sparse is swept in "both": it changes TuckER's input whichever step comes first
    assert ("tucker", "both") in run and ("momok", "both") in run
    # a fixed sparse step with a swept feature step gives TuckER a flat curve: not expanded
    assert ("tucker", "missing_only") not in run and ("tucker", "missing_only") in grid.skipped
