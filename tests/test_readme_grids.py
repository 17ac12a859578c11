"""Every TOML example of the README loads as a grid file, with its data sets, so the documentation
cannot drift from the code.

Each ```toml block is written to a grid file (keys it leaves out are filled with a one-model
default, so fragments such as a [scenarios] table are complete grids). The folders and feature files
the examples name are made in a temporary home (tiny graphs in the MoMoK layout, random feature
tables of the right height, cached text features); the benchmarks come from ../shared/datasets. Then
the grid is read and planned as `run --dry-run` plans it: every data set loaded, every run resolved.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmkgbench import catalog
from mmkgbench.datasets import DATASETS, encoder_of, load_dataset
from mmkgbench.features import PUBLISHED_DIMS
from mmkgbench.grid import load_grid
from mmkgbench.runner import GridPlan
from mmkgbench.synthetic import synthetic_mmkg
from mmkgbench.text import cache_paths
from conftest import SHARED

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

README = Path(__file__).resolve().parent.parent / "README.md"
FILL = {"models": '["transe"]', "datasets": '["synthetic_tiny"]', "seeds": "[0]"}


def toml_blocks() -> list[tuple[int, str]]:
    """(line number, text) of every ```toml block of the README."""
    text = README.read_text(encoding="utf-8")
    return [(text[:m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(r"^```toml\n(.*?)^```", text, flags=re.S | re.M)]


BLOCKS = toml_blocks()


def test_the_readme_has_toml_examples():
    assert len(BLOCKS) >= 4


def write_graph(folder: Path):
    """A tiny graph in the MoMoK layout (entity2id, relation2id, train/valid/test label triples)."""
    data = synthetic_mmkg(num_entities=30, num_relations=3, num_triples=200, latent_dim=4, num_types=2,
                          modalities={}, seed=1, name=folder.name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "entity2id.txt").write_text("".join(f"{e} {i}\n" for i, e in enumerate(data.entities)))
    (folder / "relation2id.txt").write_text("".join(f"{r} {i}\n" for i, r in enumerate(data.relations)))
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text("".join(
            f"{data.entities[h]} {data.relations[r]} {data.entities[t]}\n" for h, r, t in data.split(split).tolist()))


def write_table(path: Path, rows: int, width: int = 6):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).normal(size=(rows, width)).astype(np.float32)
    if path.suffix == ".npy":
        np.save(path, x)
    else:
        torch.save(torch.from_numpy(x), path)


def provide(entry, base: Path):
    """Make what a data set entry names exist: its folder, its feature files, its cached text features."""
    if isinstance(entry, str) and entry.lower() in DATASETS:
        return
    if isinstance(entry, str):
        entry = {"benchmark": entry} if catalog.is_benchmark(entry) else {"path": entry}

    def where(p):
        p = Path(p).expanduser()
        return p if p.is_absolute() else base / p

    if "benchmark" in entry:
        bench = catalog.get_benchmark(entry["benchmark"])
        if not (SHARED / bench.folder / "train.txt").is_file():
            pytest.skip(f"the README example names {bench.name}, which is not at {SHARED}")
        catalog.fetch(bench.name, mirror=str(SHARED), log=lambda *_: None)
        data = load_dataset(bench.name)
    else:
        if not where(entry["path"]).is_dir():
            write_graph(where(entry["path"]))
        data = load_dataset({"path": str(where(entry["path"])), "name": entry.get("name")} if entry.get("name")
                            else {"path": str(where(entry["path"]))})
    features = entry.get("features")
    # MoMoK's transform pools the published widths (DB15K's images: 64 x 64), so give those.
    widths = PUBLISHED_DIMS.get(data.meta.get("benchmark"), {}) if entry.get("transform") == "momok" else {}
    if isinstance(features, str) and not where(features).is_dir():
        for name, modality in (("img_features.pth", "image"), ("text_features.pth", "text")):
            write_table(where(features) / name, data.num_entities, widths.get(modality, 6))
    for modality, source in (features.items() if isinstance(features, dict) else ()):
        encoder = encoder_of(source)
        if encoder is not None:
            npy, note = cache_paths(data.name, encoder)
            write_table(npy, data.num_entities)
            note.write_text("{}")
        elif source != "literals" and not where(source).is_file():
            write_table(where(source), data.num_entities)


@pytest.mark.parametrize("line, block", BLOCKS, ids=[f"README-line-{n}" for n, _ in BLOCKS])
def test_readme_toml_example_loads_with_its_data(line, block, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))                  # `~/...` in the examples
    monkeypatch.setenv("MMKGBENCH_HOME", str(tmp_path / "cache"))
    spec = tomllib.loads(block)
    head = "".join(f"{key} = {value}\n" for key, value in FILL.items() if key not in spec)
    path = tmp_path / "grids" / "example.toml"
    path.parent.mkdir()
    path.write_text(head + block, encoding="utf-8")
    for entry in tomllib.loads(head + block)["datasets"]:
        provide(entry, path.parent)
    grid = load_grid(path)
    plan = GridPlan(grid)
    assert grid.cells and plan.runs
    for entry in tomllib.loads(head + block)["datasets"]:
        if isinstance(entry, dict) and isinstance(entry.get("features"), dict):
            # the nested features table reached the loader as a table: each modality is in the data
            loaded = [d for d in plan.datasets.values() if set(entry["features"]) <= set(d.modalities)]
            assert loaded, f"README line {line}: {entry}"
