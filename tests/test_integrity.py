"""Damaged run folders: every kind is found, named, moved to quarantine/, never read, and redone."""
from __future__ import annotations

import gzip
import json
import shutil

import pandas as pd
import pytest

from mmkgbench.cli import main
from mmkgbench.evaluate import QUERY_COLUMNS
from mmkgbench.grid import grid_from_dict
from mmkgbench.results import (PER_QUERY_COLUMNS, check_run, load_rows, runs_dir, valid_runs)
from mmkgbench.runner import run_grid

SEEDS = list(range(9))
GRID = {"models": ["distmult"], "datasets": ["synthetic_tiny"], "seeds": SEEDS,
        "train": {"max_epochs": 1, "eval_every": 1, "batch_size": 64, "num_negatives": 4},
        "overrides": {"distmult": {"dim": 8}}}


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A results folder with one stored run per seed, and the run ids in seed order."""
    root = tmp_path_factory.mktemp("stored")
    out = run_grid(grid_from_dict(GRID), root, progress=False, log=quiet)
    assert out["trainings"] == len(SEEDS) and not out["failed"]
    ids = sorted(out["done"], key=lambda rid: json.loads((runs_dir(root) / rid / "config.json").read_text())
                 ["config"]["seed"])
    return root, ids


def set_cell(path, column, text):
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows.loc[0, column] = text
    rows.to_csv(path, index=False)


def truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


# Each damage, as a user's editor, a full disk or a careless copy leaves it.
DAMAGES = {
    "truncated rows.csv": lambda f: truncate(f / "rows.csv"),
    "empty rows.csv": lambda f: (f / "rows.csv").write_text(""),
    "non-numeric value": lambda f: set_cell(f / "rows.csv", "value", "oops"),
    "damaged header": lambda f: (f / "rows.csv").write_text((f / "rows.csv").read_text().replace("model,", "modle,", 1)),
    "garbage config.json": lambda f: (f / "config.json").write_text("{ this is not json"),
    "no rows.csv": lambda f: (f / "rows.csv").unlink(),
    "truncated per_query": lambda f: truncate(f / "per_query.csv.gz", 0.5),
    "other model in rows": lambda f: (f / "rows.csv").write_text((f / "rows.csv").read_text().replace(",distmult,", ",-,")),
}


def test_per_query_columns_match_the_evaluator():
    assert PER_QUERY_COLUMNS == ["run_id", *QUERY_COLUMNS, "split"]


def test_a_stored_run_is_valid(stored):
    root, ids = stored
    assert all(check_run(runs_dir(root) / rid) == [] for rid in ids)


def test_damaged_folders_are_quarantined_never_read_and_redone(stored, tmp_path):
    template, ids = stored
    root = tmp_path / "results"
    shutil.copytree(template, root)
    damaged = {}
    for (what, damage), rid in zip(DAMAGES.items(), ids):
        damage(runs_dir(root) / rid)
        damaged[rid] = what
    assert check_run(runs_dir(root) / ids[0]) != []
    healthy = ids[len(DAMAGES):]
    shutil.copytree(runs_dir(root) / healthy[0], runs_dir(root) / f"{healthy[0]}_bak")   # a backup copy
    messages = []
    rows = load_rows(root, log=messages.append)
    # report reads only the healthy run, once (not its copy)
    assert set(rows["run_id"]) == set(healthy) and len(rows) == len(load_rows(template, run_ids=set(healthy)))
    for rid, what in damaged.items():
        assert not (runs_dir(root) / rid).exists(), what
        assert (root / "quarantine" / rid / "QUARANTINE.txt").is_file(), what
        assert any(str(runs_dir(root) / rid) in m for m in messages), what
    assert (root / "quarantine" / f"{healthy[0]}_bak").is_dir()
    # run trains exactly the damaged runs again; afterwards every run is valid and read once
    out = run_grid(grid_from_dict(GRID), root, progress=False, log=quiet)
    assert sorted(out["done"]) == sorted(damaged) and out["trainings"] == len(damaged) and not out["failed"]
    assert sorted(valid_runs(root)) == sorted(ids)
    again = load_rows(root)
    assert again.groupby("run_id").size().nunique() == 1 and set(again["run_id"]) == set(ids)


def test_report_names_the_damaged_folder(stored, tmp_path, capsys):
    template, ids = stored
    root = tmp_path / "results"
    shutil.copytree(template, root)
    (runs_dir(root) / ids[0] / "rows.csv").write_text("")
    assert main(["--results", str(root), "report", "--format", "md"]) == 0
    err = capsys.readouterr().err
    assert str(runs_dir(root) / ids[0]) in err and "rows.csv does not parse" in err and "quarantine" in err


def test_prune_dry_run_moves_nothing(stored, tmp_path, capsys):
    template, ids = stored
    root = tmp_path / "results"
    shutil.copytree(template, root)
    (runs_dir(root) / ids[0] / "config.json").write_text("[]")
    assert main(["--results", str(root), "prune", "--stale", "--dry-run"]) == 0
    assert (runs_dir(root) / ids[0]).is_dir() and "would be moved" in capsys.readouterr().out


def copy_run(stored, tmp_path):
    """A copy of the first stored run's folder, to damage."""
    template, ids = stored
    folder = tmp_path / ids[0]
    shutil.copytree(runs_dir(template) / ids[0], folder)
    return folder


def test_a_per_query_file_with_bad_ranks_is_invalid(stored, tmp_path):
    folder = copy_run(stored, tmp_path)
    path = folder / "per_query.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("rank_real")] = "0"
    path.write_bytes(gzip.compress("\n".join([lines[0], ",".join(cells), *lines[2:]]).encode()))
    assert any("rank_real" in p for p in check_run(folder))


def test_a_reference_protocol_run_is_valid(tmp_path):
    """The reference protocol stores test only, side "both": still exactly the rows it should."""
    grid = grid_from_dict({**GRID, "seeds": [0], "protocol": "reference", "train": {**GRID["train"], "max_epochs": 2}})
    out = run_grid(grid, tmp_path, progress=False, log=quiet)
    assert out["done"] and check_run(runs_dir(tmp_path) / out["done"][0]) == []


@pytest.mark.parametrize("rank_real, ok", [("2.5", True), ("3", True), ("2.3", False), ("0.5", False)])
def test_a_realistic_rank_may_end_in_a_half(stored, tmp_path, rank_real, ok):
    """The realistic rank is (optimistic + pessimistic) / 2: a tie of two gives x.5, which is valid."""
    folder = copy_run(stored, tmp_path)
    pq = pd.read_csv(folder / "per_query.csv.gz", dtype=str)
    pq.loc[0, "rank_real"] = rank_real
    pq.to_csv(folder / "per_query.csv.gz", index=False, compression="gzip")
    assert (check_run(folder) == []) == ok
