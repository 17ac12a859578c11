"""Bad grid input is refused when the grid is read or planned, before anything trains, naming the
grid file and the key; every config field declares its range (conformance over every registry)."""
from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from mmkgbench.cli import main
from mmkgbench.evaluate import EvalConfig
from mmkgbench.grid import GridError, grid_from_dict, load_grid
from mmkgbench.models import MODELS
from mmkgbench.ranges import parse_interval, violation
from mmkgbench.samplers import SAMPLERS
from mmkgbench.resolve import resolve, run_id_of
from mmkgbench.results import runs_dir
from mmkgbench.runner import GridPlan, run_grid
from mmkgbench.train import TrainConfig

BASE = {"models": ["distmult"], "datasets": ["synthetic_tiny"], "seeds": [0],
        "train": {"max_epochs": 1, "eval_every": 1, "batch_size": 64, "num_negatives": 4},
        "overrides": {"distmult": {"dim": 8}}}


def write(tmp_path, text: str, name="grid.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, message", [
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [-1]\n', r"seeds must be integers in \[0, 2\*\*32\)"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [100000000000000000000]\n', "seeds must be integers"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [1, 1]\n', "repeat a seed"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n[eval]\nbatch_size = 0\n',
     r"\[eval\]: batch_size = 0 must be in \[1, inf\)"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n[eval]\nhits_at = [0, 10]\n', "hits_at"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n[overrides.transe]\ndim = -4\n',
     r"\[overrides.transe\]: dim = -4 must be in \[1, inf\)"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n[overrides.transe]\np = 3\n',
     r"p must be one of \[1, 2\], got 3"),
    ('models = ["tucker"]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n[overrides.tucker]\ninput_dropout = 1.0\n',
     r"input_dropout = 1.0 must be in \[0, 1\)"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n[train]\nlr = 0\n', r"lr = 0.0 must be in \(0, inf\)"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n[train]\nthreads = 0\n', "threads = 0"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n[train]\nselection_metric = "hits@5"\n',
     r"selection_metric = 'hits@5' needs 5 in \[eval\] hits_at"),
    ('models = "transe"\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n', "models must be a non-empty list"),
    ('models = [1]\ndatasets = ["synthetic_tiny"]\nseeds = [0]\n', "models must be a list of model names"),
    ('models = ["transe"]\ndatasets = "synthetic_tiny"\nseeds = [0]\n', "datasets must be a non-empty list"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny", {benchmark = "DB15K", feature = "x"}]\nseeds = [0]\n',
     r"datasets\[2\] = .*unknown keys \['feature'\]"),
    ('models = ["transe"]\ndatasets = ["synthetic_tiny", {benchmark = "DB16K"}]\nseeds = [0]\n',
     r"datasets\[2\] = .*unknown benchmark 'DB16K'"),
    ('models = ["transe"]\ndatasets = [{benchmark = "MKG-Y", features = {image = "encoded"}}]\nseeds = [0]\n',
     r"datasets\[1\] = .*only text can be encoded"),
    ('models = ["transe"]\ndatasets = [{benchmark = "MKG-Y", features = {text = "encoded:bert"}}]\nseeds = [0]\n',
     r"unknown encoder 'bert'"),
    ('models = ["transe"]\ndatasets = [{benchmark = "MKG-Y", splits = "cleaned"}]\nseeds = [0]\n',
     "splits must be one of"),
])
def test_bad_values_are_refused_when_the_grid_is_read(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(GridError, match=message) as err:
        load_grid(path)
    assert str(path) in str(err.value)


def test_a_grid_file_that_is_not_utf8_is_named_with_line_and_column(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes('models = ["transe"]\n# caf\xe9\n'.encode("latin-1"))
    with pytest.raises(GridError, match=r"latin1.toml: line 2, column 6: byte 0xe9 is not UTF-8"):
        load_grid(path)
    assert main(["--results", str(tmp_path / "r"), "run", "--grid", str(path)]) == 2
    assert "line 2, column 6" in capsys.readouterr().err


def test_a_bad_second_data_set_stops_the_grid_before_anything_trains(tmp_path):
    path = write(tmp_path, 'models = ["distmult"]\ndatasets = ["synthetic_tiny", "data/missing_kg"]\nseeds = [0]\n'
                           '[train]\nmax_epochs = 1\n')
    grid = load_grid(path)                        # structure is fine: the folder is looked for when planned
    with pytest.raises(GridError, match=r"grid.toml: datasets\[2\] = 'data/missing_kg': unknown data set") as err:
        run_grid(grid, tmp_path / "results", progress=False, log=lambda *_: None)
    assert "not a folder" in str(err.value)
    assert not runs_dir(tmp_path / "results").exists() or not any(runs_dir(tmp_path / "results").iterdir())


def test_a_missing_feature_file_is_named_before_training(tmp_path):
    (tmp_path / "kg").mkdir()
    path = write(tmp_path, 'models = ["distmult"]\ndatasets = ["synthetic_tiny", {path = "kg", features = '
                           '{image = "nope.npy"}}]\nseeds = [0]\n')
    with pytest.raises(GridError, match=r"datasets\[2\]"):
        GridPlan(load_grid(path))


CONFIGS = {**{f"{name}.Config": cls.Config for name, cls in MODELS.items()},
           **{f"sampler {name}.Config": cls.Config for name, cls in SAMPLERS.items()},
           "TrainConfig": TrainConfig, "EvalConfig": EvalConfig}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_config_field_declares_its_range(name):
    cls = CONFIGS[name]
    declared = getattr(cls, "ranges", None)
    assert isinstance(declared, dict), f"{name} declares no `ranges`"
    assert set(declared) == {f.name for f in fields(cls)}, f"{name}: ranges and fields differ"
    default = cls()
    for f in fields(cls):
        rule = declared[f.name]
        if isinstance(rule, str):
            parse_interval(rule)
            assert isinstance(f.default, (int, float, tuple)) and not isinstance(f.default, bool), f.name
        assert violation(rule, getattr(default, f.name)) is None, f"{name}.{f.name}: the default breaks its rule"


@pytest.mark.parametrize("name", [n for n, c in CONFIGS.items() if "dim" in {f.name for f in fields(c)}])
def test_a_negative_dimension_is_refused_by_the_config_itself(name):
    with pytest.raises(ValueError, match="dim = -4 must be in"):
        CONFIGS[name](dim=-4)


def test_the_thread_count_is_part_of_the_run(tmp_path):
    """1 and 2 threads are different runs (CPU kernels sum in a thread-dependent order), and each run
    records and uses its own count."""
    one, two = (grid_from_dict({**BASE, "train": {**BASE["train"], "threads": n}}) for n in (1, 2))
    plan_one, plan_two = GridPlan(one), GridPlan(two)
    assert plan_one.run_ids.isdisjoint(plan_two.run_ids)
    config = resolve(one.cells[0], plan_one.data(one.cells[0]))
    assert config["train"]["threads"] == 1 and run_id_of(config) in plan_one.run_ids
    default = grid_from_dict(BASE).cells[0]
    assert resolve(default, plan_two.data(default))["train"]["threads"] == 2 == TrainConfig().threads
    before = torch.get_num_threads()
    out = run_grid(one, tmp_path, progress=False, log=lambda *_: None)
    rows = (runs_dir(tmp_path) / out["done"][0] / "rows.csv").read_text()
    assert "x1 threads" in rows and torch.get_num_threads() == before
