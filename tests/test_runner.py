"""Grids, resumable runs, atomic results, failure isolation, the CLI and the report."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

import mmkgbench.runner as run_mod
from mmkgbench.protocol import PROTOCOL
from mmkgbench.cli import main
from mmkgbench.models import MODELS
from mmkgbench.results import ROW_COLUMNS, clean_stale, load_config, load_per_query, load_rows, runs_dir
from mmkgbench.grid import GRID_DIR, GridError, grid_from_dict, load_grid
from mmkgbench.resolve import resolve, run_id_of
from mmkgbench.runner import run_grid
from mmkgbench.train import TrainingDiverged

TINY_GRID = {"models": ["distmult", "tucker"], "datasets": ["synthetic_tiny"], "seeds": [0],
             "train": {"max_epochs": 2, "eval_every": 1, "batch_size": 64, "num_negatives": 4},
             "overrides": {"distmult": {"dim": 8}, "tucker": {"entity_dim": 8, "relation_dim": 4}}}


def quiet(*_):
    pass


@pytest.mark.parametrize("path", sorted(GRID_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_grid_file_resolves(path):
    grid = load_grid(path)
    assert grid.cells
    for cell in grid.cells:
        assert (cell.base or cell.model) in MODELS


@pytest.mark.parametrize("spec, message", [
    ({**TINY_GRID, "modles": ["x"]}, "unknown top-level keys"),
    ({**TINY_GRID, "models": ["transx"]}, "unknown model 'transx'"),
    ({**TINY_GRID, "seeds": []}, "seeds must be a non-empty list"),
    ({**TINY_GRID, "seeds": [0.5]}, "seeds must be integers"),
    ({**TINY_GRID, "scenarios": {"clean": [1.5]}}, "levels in \\[0, 1\\]"),
    ({**TINY_GRID, "scenarios": {"bogus": [0.0]}}, "unknown scenario 'bogus'"),
    ({**TINY_GRID, "train": {"epochs": 3}}, "unknown key 'epochs'"),
    ({**TINY_GRID, "train": {"max_epochs": "3"}}, "has type str, expected int"),
    ({**TINY_GRID, "overrides": {"distmult": {"dimension": 8}}}, "unknown setting 'dimension' for distmult"),
    ({**TINY_GRID, "overrides": {"distmult": {"lr": "fast"}}}, "expected float"),
    ({**TINY_GRID, "overrides": {"nomodel": {"dim": 8}}}, "unknown model"),
])
def test_grid_errors_are_clear(spec, message):
    with pytest.raises(GridError, match=message):
        grid_from_dict(spec)


def test_unknown_setting_lists_valid_keys():
    with pytest.raises(GridError) as err:
        grid_from_dict({**TINY_GRID, "overrides": {"tucker": {"dim": 8}}})
    assert "entity_dim" in str(err.value) and "max_epochs" in str(err.value)


def test_grid_expansion_and_set_overrides():
    grid = grid_from_dict({**TINY_GRID, "seeds": [0, 1, 2]}, sets=["distmult.lr=0.5", "train.max_epochs=3",
                                                                    "tucker.regime=negative"])
    assert len(grid.cells) == 2 * 3
    dm = next(c for c in grid.cells if c.model == "distmult")
    assert dict(dm.train_overrides)["lr"] == 0.5 and dict(dm.train_overrides)["max_epochs"] == 3
    tk = next(c for c in grid.cells if c.model == "tucker")
    assert dict(tk.train_overrides)["regime"] == "negative" and "lr" not in dict(tk.train_overrides)
    with pytest.raises(GridError, match="SECTION.KEY=VALUE"):
        grid_from_dict(TINY_GRID, sets=["lr=3"])


def test_run_id_is_the_hash_of_the_resolved_config(tiny):
    grid = grid_from_dict(TINY_GRID)
    a, b = (resolve(c, tiny) for c in grid.cells)
    assert run_id_of(a) != run_id_of(b)
    assert run_id_of(a) == run_id_of(json.loads(json.dumps(a)))
    assert a["model_config"]["dim"] == 8 and a["train"]["regime"] == "negative"   # model default filled in
    assert a["filter"] == {"test": "train+valid+test", "valid": "train+valid"}


def test_end_to_end_grid_resume_and_report(tmp_path, capsys):
    grid = grid_from_dict(TINY_GRID)
    out = run_grid(grid, tmp_path, progress=False, log=quiet)
    assert len(out["done"]) == 2 and not out["failed"]
    rows = load_rows(tmp_path)
    assert list(rows.columns) == ROW_COLUMNS
    # 2 runs x 2 splits x 3 sides x 5 metrics (mrr, mr, hits@1/3/10)
    assert len(rows) == 2 * 2 * 3 * 5
    assert set(rows["metric"]) == {"mrr", "mr", "hits@1", "hits@3", "hits@10"}
    assert set(rows["split"]) == {"valid", "test"} and set(rows["side"]) == {"both", "head", "tail"}
    assert (rows["source"] == "bench").all() and (rows["scenario"] == "clean").all()
    test_filter = rows[rows["split"] == "test"]["filter"].unique().tolist()
    assert test_filter == ["train+valid+test"]
    for rid in rows["run_id"].unique():
        cfg = load_config(tmp_path, rid)
        assert run_id_of(cfg["config"]) == rid
        pq = load_per_query(tmp_path, rid)
        from mmkgbench.datasets import load_dataset
        data = load_dataset("synthetic_tiny")
        assert len(pq) == 2 * (len(data.valid) + len(data.test))
        assert (pq["rank_opt"] <= pq["rank_real"]).all() and (pq["rank_real"] <= pq["rank_pess"]).all()
        mrr = rows[(rows.run_id == rid) & (rows.split == "test") & (rows.side == "both") & (rows.metric == "mrr")]
        assert mrr["value"].item() == pytest.approx((1 / pq[pq.split == "test"]["rank_real"]).mean())
    # started again: everything is skipped
    again = run_grid(grid, tmp_path, progress=False, log=quiet)
    assert not again["done"] and len(again["skipped"]) == 2
    # a changed setting is a new run
    changed = run_grid(grid_from_dict(TINY_GRID, sets=["distmult.dim=6"]), tmp_path, progress=False, log=quiet)
    assert len(changed["done"]) == 1 and len(changed["skipped"]) == 1
    # Two distmult configurations for seed 0 now sit side by side: a report over everything refuses
    # to average them as if they were seeds; a report of one grid shows that grid's runs.
    assert main(["--results", str(tmp_path), "report"]) == 2
    assert "differ in their settings" in capsys.readouterr().err
    toml = tmp_path / "tiny.toml"
    toml.write_text('models = ["distmult", "tucker"]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n'
                    "[train]\nmax_epochs = 2\neval_every = 1\nbatch_size = 64\nnum_negatives = 4\n"
                    "[overrides.distmult]\ndim = 8\n[overrides.tucker]\nentity_dim = 8\nrelation_dim = 4\n")
    assert main(["--results", str(tmp_path), "report", "--grid", str(toml)]) == 0
    text = capsys.readouterr().out
    assert "| distmult" in text and "| tucker" in text and "MRR" in text


def test_interrupted_grid_keeps_finished_runs_and_resumes(tmp_path, monkeypatch):
    grid = grid_from_dict(TINY_GRID)
    real = run_mod.run_cells
    calls = []

    def interrupting(cells, *a, **kw):
        calls.append(cells[0].model)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cells, *a, **kw)

    monkeypatch.setattr(run_mod, "run_cells", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, progress=False, log=quiet)
    assert len(load_rows(tmp_path)["run_id"].unique()) == 1
    monkeypatch.setattr(run_mod, "run_cells", real)
    out = run_grid(grid, tmp_path, progress=False, log=quiet)
    assert len(out["skipped"]) == 1 and len(out["done"]) == 1


def test_write_is_atomic(tmp_path, monkeypatch):
    grid = grid_from_dict({**TINY_GRID, "models": ["distmult"]})
    real_to_csv = pd.DataFrame.to_csv

    def failing(self, path, *a, **kw):
        if str(path).endswith("history.csv"):
            raise OSError("disk full")
        return real_to_csv(self, path, *a, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing)
    out = run_grid(grid, tmp_path, progress=False, log=quiet)
    assert len(out["failed"]) == 1 and "disk full" in out["failed"][0][1]
    assert load_rows(tmp_path).empty
    assert not [p for p in runs_dir(tmp_path).iterdir()]            # no partial or temporary folder
    assert len(list((tmp_path / "failed").glob("*.json"))) == 1
    monkeypatch.setattr(pd.DataFrame, "to_csv", real_to_csv)
    assert len(run_grid(grid, tmp_path, progress=False, log=quiet)["done"]) == 1
    assert not list((tmp_path / "failed").glob("*.json"))           # the failure record is cleared


def test_a_diverging_run_does_not_poison_the_others(tmp_path, monkeypatch):
    grid = grid_from_dict(TINY_GRID)
    real = run_mod.train

    def diverge_tucker(model, *a, **kw):
        if type(model).__name__ == "TuckER":
            raise TrainingDiverged("loss became nan at epoch 1, step 1/1")
        return real(model, *a, **kw)

    monkeypatch.setattr(run_mod, "train", diverge_tucker)
    out = run_grid(grid, tmp_path, progress=False, log=quiet)
    assert len(out["done"]) == 1 and len(out["failed"]) == 1
    assert set(load_rows(tmp_path)["model"]) == {"distmult"}
    record = json.loads(next((tmp_path / "failed").glob("*.json")).read_text())
    assert "TrainingDiverged" in record["error"] and "tucker" in record["cell"]


def test_clean_stale_removes_dead_temporaries(tmp_path):
    d = runs_dir(tmp_path)
    dead = d / ".tmp-abc-999999999-deadbeef"
    alive = d / f".tmp-abc-{os.getpid()}-cafe0000"
    for p in (dead, alive):
        p.mkdir(parents=True)
    assert clean_stale(tmp_path) == [dead]
    assert alive.exists() and not dead.exists()


def test_cli_list_and_errors(capsys, tmp_path):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert name in out
    from mmkgbench.samplers import SAMPLERS
    for name in SAMPLERS:                    # the sampler registry with each sampler's options
        assert f"\n  {name} " in out
    assert "pool=1500" in out
    assert "default" in out and "smoke" in out
    assert "momok-main       21 rows (248 published, 4 not reported)" in out
    assert "mocme-main       1 rows (15 not yet obtained)" in out
    assert main(["run", "--grid", "no_such_grid"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["--results", str(tmp_path), "report"]) == 1
    assert main(["run", "--grid", "smoke", "--dry-run"]) == 0
    assert "tucker | synthetic_tiny | clean@0 | seed 0" in capsys.readouterr().out


def test_smoke_grid_through_the_cli(tmp_path, capsys):
    assert main(["--results", str(tmp_path), "run", "--grid", "smoke", "--no-progress"]) == 0
    out = capsys.readouterr().out
    n = len(load_grid("smoke").cells)
    assert f"{n} run(s) done" in out and "synthetic_tiny" in out
    rows = load_rows(tmp_path)
    assert rows["run_id"].nunique() == n
    from mmkgbench.scenarios import SCENARIOS
    # every registered model ran, plus the grid's variants of them (MoSE's fitted ensembles)
    cells = load_grid("smoke").cells
    assert {c.base or c.model for c in cells} == set(MODELS) and set(rows["model"]) == {c.model for c in cells}
    assert set(SCENARIOS) <= set(rows["scenario"])
    assert "relative area under the MRR curve" in out and "robustness_synthetic-tiny_noisy.png" in out
    assert (tmp_path / "figures" / "robustness_synthetic-tiny_noisy.png").is_file()


def test_same_seed_same_numbers_in_two_processes(tmp_path):
    """Bit-identical results from two separate processes on the CPU (multi-threaded kernels included)."""
    import subprocess
    import sys
    # Large enough that the order of gradient accumulation matters (it did before kernels were made
    # deterministic: the two processes then differed in the last bits and in some ranks).
    grid = {"models": ["distmult"], "datasets": ["synthetic"], "seeds": [0],
            "train": {"max_epochs": 3, "eval_every": 3, "batch_size": 256, "num_negatives": 32, "lr": 0.01},
            "overrides": {"distmult": {"dim": 32}}}
    script = ("import sys; from mmkgbench.grid import grid_from_dict; from mmkgbench.runner import run_grid; "
              f"run_grid(grid_from_dict({grid!r}), sys.argv[1], progress=False, log=lambda *a: None)")
    root = Path(__file__).resolve().parents[1]
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], check=True, cwd=root,
                       env={**os.environ, "OMP_NUM_THREADS": "2"})
    a, b = load_rows(tmp_path / "a"), load_rows(tmp_path / "b")
    key = ["run_id", "split", "side", "metric"]
    merged = a.merge(b, on=key)
    assert len(merged) == len(a) == 30
    assert (merged["value_x"] == merged["value_y"]).all()
    rid = a["run_id"].iloc[0]
    history = [pd.read_csv(tmp_path / name / "runs" / rid / "history.csv") for name in ("a", "b")]
    assert history[0]["loss"].tolist() == history[1]["loss"].tolist()     # bit-identical training


def test_reference_protocol_config_is_recorded_and_a_new_run(tiny):
    harness = grid_from_dict(TINY_GRID).cells[1]
    ref = grid_from_dict({**TINY_GRID, "protocol": "reference"}).cells[1]
    assert ref.protocol == "reference" and "reference protocol" in ref.label()
    assert grid_from_dict(TINY_GRID, protocol="reference").cells[1] == ref      # the CLI's --protocol
    a, b = resolve(harness, tiny), resolve(ref, tiny)
    assert (a["protocol"], b["protocol"]) == (PROTOCOL, "reference-v1")
    assert run_id_of(a) != run_id_of(b)
    assert a["eval"]["tie"] == "realistic" and b["eval"]["tie"] == "random"
    assert b["train"]["patience"] >= b["train"]["max_epochs"]          # the reference never stops early
    assert b["filter"] == {"test": "train+valid+test"}
    with pytest.raises(GridError, match="protocol must be one of"):
        grid_from_dict({**TINY_GRID, "protocol": "test-selected"})
    with pytest.raises(GridError, match="eval_every must be > 0"):
        resolve(grid_from_dict({**TINY_GRID, "protocol": "reference"}, sets=["train.eval_every=0"]).cells[0], tiny)


def test_reference_protocol_keeps_the_best_of_each_metric_on_test(tmp_path, capsys):
    spec = {**TINY_GRID, "models": ["tucker"], "train": {**TINY_GRID["train"], "max_epochs": 6, "lr": 0.05,
                                                          "patience": 1}}
    out = run_grid(grid_from_dict(spec, protocol="reference"), tmp_path, progress=False, log=quiet)
    assert len(out["done"]) == 1 and not out["failed"]
    rows = load_rows(tmp_path)
    assert set(rows["split"]) == {"test"} and set(rows["side"]) == {"both"}
    assert (rows["protocol"] == "reference-v1").all() and rows["selection"].str.contains("not a single").all()
    rid = rows["run_id"].iloc[0]
    hist = pd.read_csv(tmp_path / "runs" / rid / "history.csv")
    assert len(hist) == 6 and hist["test_mrr"].notna().all() and "valid_mrr" not in hist   # no early stop
    value = rows.set_index("metric")["value"]
    assert value["mrr"] == pytest.approx(hist["test_mrr"].max())
    assert value["hits@10"] == pytest.approx(hist["test_hits@10"].max())
    assert value["mr"] == pytest.approx(hist["test_mr"].min())
    # Per-query ranks: the checkpoint with the best test MRR, random ties, test split only.
    pq = load_per_query(tmp_path, rid)
    assert set(pq["split"]) == {"test"}
    assert (1 / pq["rank_rand"]).mean() == pytest.approx(value["mrr"])
    # A harness run of the same cell sits beside it: the report shows both, never averaged together.
    run_grid(grid_from_dict(spec), tmp_path, progress=False, log=quiet)
    from mmkgbench.report import markdown_table, summarise
    summ = summarise(load_rows(tmp_path))
    assert set(summ["protocol"]) == {PROTOCOL, "reference-v1"} and (summ["n_seeds"] == 1).all()
    text = markdown_table(load_rows(tmp_path))
    assert "realistic ranks" in text and "reference-v1 protocol" in text
    assert main(["--results", str(tmp_path), "report", "--format", "md"]) == 0
    # the protocol table: the same cell under both protocols, and how much the reference one inflates
    proto = (tmp_path / "tables" / "protocol.md").read_text()
    inflation = summ.pivot_table(index="metric", columns="protocol", values="mean").loc["mrr"]
    assert "tucker: inflation" in proto and \
        f"{(inflation['reference-v1'] - inflation[PROTOCOL]) * 100:.2f}" in proto


def test_best_per_metric_takes_each_metric_separately():
    from mmkgbench.train import best_per_metric
    history = [{"epoch": 1, "loss": 1.0},
               {"epoch": 2, "test_mrr": 0.3, "test_mr": 9.0, "test_hits@10": 0.7},
               {"epoch": 3, "test_mrr": 0.4, "test_mr": 12.0, "test_hits@10": 0.6}]
    assert best_per_metric(history, "test") == {"mrr": 0.4, "mr": 9.0, "hits@10": 0.7}
    with pytest.raises(ValueError, match="no valid evaluations"):
        best_per_metric(history, "valid")


def test_dataset_overrides_apply_to_one_data_set_only():
    spec = {**TINY_GRID, "datasets": ["synthetic_tiny", {"path": "data/DB15K", "name": "DB15K"}],
            "dataset_overrides": {"DB15K": {"tucker": {"entity_dim": 16, "lr": 5e-4}}}}
    grid = grid_from_dict(spec)
    tucker = {str(c.dataset): c for c in grid.cells if c.model == "tucker"}
    db = next(c for k, c in tucker.items() if "DB15K" in k)
    assert dict(db.model_overrides)["entity_dim"] == 16 and dict(db.train_overrides)["lr"] == 5e-4
    assert dict(tucker["synthetic_tiny"].model_overrides)["entity_dim"] == 8
    assert "lr" not in dict(tucker["synthetic_tiny"].train_overrides)
    with pytest.raises(GridError, match="names no data set of the grid; use one of"):
        grid_from_dict({**spec, "dataset_overrides": {"MKG-Y": {"tucker": {"lr": 1e-3}}}})
    with pytest.raises(GridError, match="unknown setting 'width' for tucker"):
        grid_from_dict({**spec, "dataset_overrides": {"DB15K": {"tucker": {"width": 3}}}})


def test_paper_main_uses_momoks_published_settings_per_data_set():
    grid = load_grid("paper-main")
    momok = {dict(c.dataset)["benchmark"]: c for c in grid.cells if c.model == "momok"}
    assert sorted(momok) == ["DB15K", "KVC16K", "MKG-W", "MKG-Y"]
    settings = {k: (dict(c.model_overrides)["dim"], dict(c.train_overrides)["lr"]) for k, c in momok.items()}
    assert settings == {"MKG-W": (200, 1e-3), "MKG-Y": (300, 5e-4), "DB15K": (256, 5e-4), "KVC16K": (256, 5e-4)}
    assert {c.scenario for c in grid.cells} == {"clean"} and {c.seed for c in grid.cells} == {0, 1, 2}
