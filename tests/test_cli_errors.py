"""Command-line mistakes end in one error line and exit code 2, never a traceback; logs that are not
a terminal get one line per run instead of progress bars; a failed download says how to fetch offline.
"""
from __future__ import annotations

import urllib.error

import pytest
import torch

from mmkgbench import catalog
from mmkgbench.cli import main
from mmkgbench.grid import grid_from_dict
from mmkgbench.runner import run_grid

# A one-run grid of seconds; `run --dry-run` on it lists the run without training, so the tests that
# reach past the checks under test (as the code before the checks did) stay fast.
TINY_TOML = """name = "tiny"
models = ["transe"]
datasets = ["synthetic_tiny"]
seeds = [0]
[train]
max_epochs = 2
eval_every = 1
"""


@pytest.fixture
def grid_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


def run_cli(argv, capsys) -> tuple[int, str]:
    """main(argv) -> (exit code, stderr)."""
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def test_cuda_without_a_gpu_is_an_error_line(tmp_path, grid_file, capsys, monkeypatch):
    # Forced, so the test means the same on a machine that has a GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, err = run_cli(["--results", tmp_path / "r", "run", "--grid", grid_file, "--device", "cuda", "--dry-run"],
                      capsys)
    assert rc == 2
    assert "--device cuda: torch sees no CUDA device on this machine" in err
    assert "use --device cpu or auto" in err


def test_cuda_index_beyond_the_devices_is_an_error_line(tmp_path, grid_file, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    rc, err = run_cli(["--results", tmp_path / "r", "run", "--grid", grid_file, "--device", "cuda:3", "--dry-run"],
                      capsys)
    assert rc == 2
    assert "--device cuda:3: torch sees 2 CUDA device(s)" in err and "cuda:0 to cuda:1" in err


@pytest.mark.parametrize("value", ["gpu0", "cuda:x", "meta"])
def test_an_invalid_device_names_the_value_and_the_accepted_forms(value, tmp_path, grid_file, capsys):
    rc, err = run_cli(["--results", tmp_path / "r", "run", "--grid", grid_file, "--device", value, "--dry-run"],
                      capsys)
    assert rc == 2
    assert f"--device {value!r}" in err and "auto, cpu, cuda or cuda:N" in err


@pytest.mark.parametrize("command", [["run", "--grid", "GRID", "--dry-run"], ["report"], ["prune", "--stale"],
                                     ["data", "audit", "synthetic_tiny"]], ids=lambda c: " ".join(c[:2]))
def test_results_that_is_a_file_is_an_error_line(command, tmp_path, grid_file, capsys):
    results = tmp_path / "results.txt"
    results.write_text("not a folder\n")
    argv = ["--results", results, *[grid_file if a == "GRID" else a for a in command]]
    rc, err = run_cli(argv, capsys)
    assert rc == 2
    assert f"--results {results}: is a file, not a folder" in err
    assert results.read_text() == "not a folder\n"


def test_results_that_is_a_file_does_not_stop_commands_that_do_not_use_it(tmp_path, capsys):
    results = tmp_path / "results.txt"
    results.write_text("")
    rc, _ = run_cli(["--results", results, "perturb", "synthetic_tiny", "clean", "0"], capsys)
    assert rc == 0


@pytest.mark.parametrize("item", ["x", "=image"])
def test_perturb_option_without_key_value_speaks_of_option(item, capsys):
    rc, err = run_cli(["perturb", "synthetic_tiny", "missing", "0.4", "--option", item], capsys)
    assert rc == 2
    assert f"--option {item!r}: expected KEY=VALUE, e.g. modality=image" in err
    assert "--set" not in err


def test_perturb_option_key_value_still_works(capsys):
    rc = main(["perturb", "synthetic_tiny", "missing", "0.4", "--option", "modality=image"])
    assert rc == 0
    assert "'modality': 'image'" in capsys.readouterr().out


def test_no_progress_bar_when_stderr_is_not_a_terminal_and_a_done_line_per_run(tmp_path, capfd):
    grid = grid_from_dict({"models": ["transe"], "datasets": ["synthetic_tiny"], "seeds": [0],
                           "train": {"max_epochs": 2, "eval_every": 1}})
    lines = []
    out = run_grid(grid, tmp_path, progress=True, log=lines.append)   # stderr is captured: not a terminal
    assert len(out["done"]) == 1 and not out["failed"]
    err = capfd.readouterr().err
    assert "\r" not in err and len(err) < 2000, err[:500]
    done = [line for line in lines if ": done in " in line]
    assert len(done) == len(grid.cells) == 1
    assert done[0].startswith(f"[1/1] {grid.cells[0].label()}: done in ")
    assert "2 epochs (best " in done[0] and "valid MRR 0." in done[0]


def test_a_failed_download_suggests_a_mirror(home, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(catalog.urllib.request, "urlopen", offline)
    with pytest.raises(catalog.FetchError) as info:
        catalog.fetch("KVC16K", log=lambda *a: None)
    msg = str(info.value)
    assert "download failed: URLError" in msg
    assert "no network?" in msg and "`run_bench.py data fetch KVC16K --mirror DIR_OR_URL`" in msg
    assert "Kuai16K/entity2id.txt" in msg           # the layout the mirror needs (its folder, not the name)
    assert not catalog.is_fetched("KVC16K") and not list((home / "datasets").iterdir())   # nothing left
