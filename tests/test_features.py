"""Feature import (MoMoK and NATIVE names, published shapes), MoMoK's pooling against PyTorch's
pooling layers, and the fill policies, down to what a model receives in a run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SHARED, needs_shared
from mmkgbench.data import MMKG, DataError
from mmkgbench.datasets import load_dataset
from mmkgbench.features import (FEATURE_TRANSFORMS, FILL_POLICIES, MOMOK_POOLING, PUBLISHED_DIMS, FeatureTable,
                                adaptive_avg_pool, fill_features, find_feature_files, import_features,
                                l2_normalise_rows, momok_preprocess)

E = 5


def toy(benchmark: str | None = None) -> MMKG:
    t = np.array([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 4]])
    meta = {"benchmark": benchmark} if benchmark else {}
    return MMKG("toy", tuple(f"e{i}" for i in range(E)), ("r",), t, t[:1], t[1:2], meta=meta)


def rand(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# --------------------------------------------------------------------------- import

def test_momok_file_names(tmp_path):
    torch.save(torch.from_numpy(rand(E, 4096)), tmp_path / "img_features.pth")
    torch.save(rand(E, 768), tmp_path / "text_features.pth")            # a numpy array inside a .pth
    (tmp_path / "notes.txt").write_text("not a feature file")
    found = find_feature_files(tmp_path)
    assert {m: p.name for m, p in found.items()} == {"image": "img_features.pth", "text": "text_features.pth"}
    data = import_features(toy(), tmp_path)
    assert data.features["image"].shape == (E, 4096) and data.features["text"].shape == (E, 768)
    assert data.present["image"].all() and data.meta["features"]["image"].endswith("img_features.pth")


def test_native_file_names_all_five_modalities(tmp_path):
    dims = {"visual": 383, "textual": 384, "numeric": 7, "audio": 6, "video": 5}
    for kind, d in dims.items():
        torch.save(torch.from_numpy(rand(E, d)), tmp_path / f"MKG-W-{kind}.pth")
    data = import_features(toy("MKG-W"), tmp_path)
    assert {m: data.features[m].shape[1] for m in data.modalities} == \
           {"image": 383, "text": 384, "numeric": 7, "audio": 6, "video": 5}


def test_native_names_of_another_data_set_are_ignored(tmp_path):
    torch.save(torch.ones(E, 3), tmp_path / "DB15K-visual.pth")
    torch.save(torch.ones(E, 3), tmp_path / "MKG-Y-visual.pth")
    assert list(find_feature_files(tmp_path, "MKG-Y").values())[0].name == "MKG-Y-visual.pth"
    with pytest.raises(DataError, match=r"several data sets \['DB15K', 'MKG-Y'\]"):
        find_feature_files(tmp_path)


def test_two_files_for_one_modality_is_an_error(tmp_path):
    torch.save(torch.ones(E, 3), tmp_path / "img_features.pth")
    torch.save(torch.ones(E, 3), tmp_path / "DB15K-visual.pth")
    with pytest.raises(DataError, match=r"two feature files for modality 'image'"):
        find_feature_files(tmp_path)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no feature files: expected img_features.pth"):
        find_feature_files(tmp_path)
    with pytest.raises(DataError, match="feature folder not found"):
        find_feature_files(tmp_path / "nope")


@pytest.mark.parametrize("bad, problem", [
    (torch.ones(E + 1, 4), r"has 6 feature rows but the data set has 5 entities"),
    (torch.ones(E, 4, dtype=torch.bool), r"features must be numeric, got dtype bool"),
    (torch.tensor([[float("nan")] * 4] * E), r"NaN or inf in the features \(5 rows; first at row 0"),
    (torch.ones(E, 2, 2), r"2-D \(entities, dim\) matrix, got shape \(5, 2, 2\)"),
])
def test_import_errors_name_the_file(tmp_path, bad, problem):
    torch.save(bad, tmp_path / "img_features.pth")
    with pytest.raises(DataError, match=problem) as err:
        import_features(toy(), tmp_path)
    assert err.value.path == str(tmp_path / "img_features.pth")


# --------------------------------------------------------------------------- MoMoK pooling

def torch_reference(x: np.ndarray, bench: str, modality: str) -> np.ndarray:
    """What MoMoK's train.py + models/RelMoE.py compute, with PyTorch's own layers."""
    t = F.normalize(torch.from_numpy(x), p=2, dim=1)
    n = len(t)
    if bench == "DB15K" and modality == "image":
        return torch.nn.AvgPool2d(4, stride=4)(t.view(-1, 64, 64)).reshape(n, -1).numpy()
    if bench.startswith("MKG") and modality == "image":
        return t.reshape(n, -1).numpy()
    H, W = (12, 32) if bench.startswith("MKG") else (12, 64)
    return torch.nn.AdaptiveAvgPool2d((4, 64))(t.view(-1, H, W)).reshape(n, -1).numpy()


@pytest.mark.parametrize("bench", sorted(MOMOK_POOLING))
def test_momok_preprocess_matches_the_reference_layers(bench):
    dims = PUBLISHED_DIMS[bench]
    data = toy(bench).replace(features={"image": rand(E, dims["image"], 1), "text": rand(E, dims["text"], 2)},
                              present={"image": np.ones(E, bool), "text": np.ones(E, bool)})
    out = momok_preprocess(data)
    for m in ("image", "text"):
        ref = torch_reference(np.array(data.features[m]), bench, m)
        np.testing.assert_allclose(out.features[m], ref, rtol=1e-5, atol=1e-7)
    assert out.features["text"].shape == (E, 256)
    assert out.features["image"].shape == (E, 383 if bench.startswith("MKG") else 256)
    assert out.meta["feature_transform"] == "momok-pool-v1"
    assert data.features["image"].shape[1] == dims["image"]          # input untouched


def test_mkg_text_pooling_repeats_columns():
    """12×32 -> 4×64: rows averaged in threes, each column appears twice (adaptive pooling widens)."""
    x = np.arange(12 * 32, dtype=np.float32)[None]
    y = adaptive_avg_pool(x, (12, 32), (4, 64)).reshape(4, 64)
    grid = x.reshape(12, 32)
    np.testing.assert_allclose(y[1, 10], grid[3:6, 5].mean())
    np.testing.assert_allclose(y[:, 0::2], y[:, 1::2])


@pytest.mark.parametrize("grid, out", [((7, 5), (3, 2)), ((5, 5), (5, 5)), ((3, 4), (6, 9)), ((64, 64), (16, 16))])
def test_adaptive_pool_matches_pytorch_for_any_shape(grid, out):
    x = rand(3, grid[0] * grid[1], 4)
    ref = F.adaptive_avg_pool2d(torch.from_numpy(x).view(-1, *grid), out).reshape(3, -1).numpy()
    np.testing.assert_allclose(adaptive_avg_pool(x, grid, out), ref, rtol=1e-5, atol=1e-7)


def test_l2_normalise_rows_matches_torch_and_keeps_zero_rows():
    x = rand(4, 6)
    x[2] = 0
    np.testing.assert_allclose(l2_normalise_rows(x), F.normalize(torch.from_numpy(x), dim=1).numpy(), rtol=1e-6)
    assert not l2_normalise_rows(x)[2].any()


def test_momok_preprocess_refuses_the_wrong_width():
    data = toy("DB15K").replace(features={"image": rand(E, 2048)}, present={"image": np.ones(E, bool)},
                                meta={"benchmark": "DB15K", "features": {"image": "/x/img_features.pth"}})
    with pytest.raises(DataError, match=r"/x/img_features.pth: MoMoK's DB15K image preprocessing views each row as "
                                        r"64×64 = 4096 values, but the features have 2048 columns"):
        momok_preprocess(data)


def test_momok_preprocess_needs_to_know_the_benchmark():
    with pytest.raises(ValueError, match="defined per benchmark"):
        momok_preprocess(toy())
    assert set(FEATURE_TRANSFORMS) == {"none", "l2", "momok"}


# --------------------------------------------------------------------------- fill policies

def test_fill_zeros_and_mean():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]])
    present = torch.tensor([True, True, False])
    assert fill_features(x, present, "zeros")[2].tolist() == [0.0, 0.0]
    assert fill_features(x, present, "mean")[2].tolist() == [2.0, 3.0]
    assert fill_features(x, present, "learned")[2].tolist() == [2.0, 3.0]
    assert fill_features(x, present, "mean")[:2].tolist() == x[:2].tolist()
    assert fill_features(x, torch.zeros(3, dtype=torch.bool), "mean").abs().sum() == 0
    with pytest.raises(ValueError, match=r"unknown fill policy 'random'; choose from \['zeros', 'mean', 'learned'\]"):
        fill_features(x, present, "random")


@pytest.mark.parametrize("trainable", [False, True])
def test_feature_table_learned_vector_replaces_absent_rows_only(trainable):
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0], [5.0, 0.0]])
    present = torch.tensor([True, True, False, True])
    table = FeatureTable(x, present, "learned", trainable=trainable)
    assert table.missing.tolist() == [3.0, 2.0]                  # starts at the mean of the present rows
    with torch.no_grad():
        table.missing.fill_(-1.0)
    out = table(torch.tensor([0, 2, 3]))
    assert out.tolist() == [[1.0, 2.0], [-1.0, -1.0], [5.0, 0.0]]
    out.sum().backward()
    assert table.missing.grad.tolist() == [1.0, 1.0]             # one absent row in the batch
    params = {n for n, _ in table.named_parameters()}
    assert params == ({"table", "missing"} if trainable else {"missing"})


@pytest.mark.parametrize("policy", ["zeros", "mean"])
def test_feature_table_fixed_policies_have_no_extra_parameter(policy):
    x, present = torch.ones(3, 2), torch.tensor([True, False, True])
    table = FeatureTable(x * torch.tensor([[1.0], [7.0], [3.0]]), present, policy)
    assert table.missing is None and not list(table.parameters())
    assert table()[1].tolist() == ([0.0, 0.0] if policy == "zeros" else [2.0, 2.0])


def test_a_run_fills_absent_rows_and_records_the_policy(tmp_path, monkeypatch):
    from mmkgbench.models import MODELS
    from mmkgbench.runner import build_model
    from mmkgbench.grid import grid_from_dict
    from mmkgbench.resolve import resolve
    from baselines.distmult import DistMult

    seen = {}

    class ImageDistMult(DistMult):
        modalities = ("image",)

        def __init__(self, cfg, inputs, generator=None):
            super().__init__(cfg, inputs, generator)
            seen["features"], seen["fill"] = inputs.features["image"].clone(), inputs.fill

    monkeypatch.setitem(MODELS, "imagedistmult", ImageDistMult)
    data = load_dataset("synthetic_tiny")
    present = np.array(data.present["image"]).copy()
    present[:10] = False
    data = data.replace(present={**data.present, "image": present})
    for fill in FILL_POLICIES:
        grid = grid_from_dict({"models": ["imagedistmult", "distmult"], "datasets": ["synthetic_tiny"], "seeds": [0],
                               "inputs": {"fill": fill}})
        cell_mm, cell_s = grid.cells
        cfg = resolve(cell_mm, data)
        assert cfg["inputs"] == {"modalities": ["image"], "fill": fill}
        assert resolve(cell_s, data)["inputs"] == {"modalities": []}    # structure-only: fill not in its run id
        build_model(cell_mm, cfg, data)
        got, x = seen["features"].numpy(), np.array(data.features["image"])
        want = np.zeros(x.shape[1]) if fill == "zeros" else x[present].mean(0)
        np.testing.assert_allclose(got[:10], np.broadcast_to(want, (10, x.shape[1])), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got[10:], x[10:])
        assert seen["fill"] == fill


def test_grid_refuses_an_unknown_fill_policy():
    from mmkgbench.grid import GridError, grid_from_dict
    with pytest.raises(GridError, match=r"\[inputs\] fill must be one of \['zeros', 'mean', 'learned'\]"):
        grid_from_dict({"models": ["distmult"], "datasets": ["synthetic_tiny"], "seeds": [0],
                        "inputs": {"fill": "random"}})
    with pytest.raises(GridError, match=r"\[inputs\] unknown key 'fil'"):
        grid_from_dict({"models": ["distmult"], "datasets": ["synthetic_tiny"], "seeds": [0], "inputs": {"fil": "x"}})
    grid = grid_from_dict({"models": ["distmult"], "datasets": ["synthetic_tiny"], "seeds": [0]},
                          sets=["inputs.fill=mean"])
    assert grid.cells[0].fill == "mean"


# --------------------------------------------------------------------------- grids with real benchmarks

@needs_shared
def test_grid_table_imports_features_and_applies_momok_pooling(home, tmp_path, capsys):
    from mmkgbench import catalog
    catalog.fetch("MKG-Y", mirror=str(SHARED), log=lambda *a: None)
    folder = tmp_path / "feats"
    folder.mkdir()
    n = 15000
    torch.save(torch.from_numpy(rand(n, 383, 5)), folder / "MKG-Y-visual.pth")
    np.save(folder / "MKG-Y-textual.npy", rand(n, 384, 6))
    raw = load_dataset({"benchmark": "MKG-Y", "features": str(folder)})
    assert raw.features["image"].shape == (n, 383) and raw.features["text"].shape == (n, 384)
    pooled = load_dataset({"benchmark": "MKG-Y", "features": str(folder), "transform": "momok"})
    assert pooled.features["text"].shape == (n, 256)
    np.testing.assert_allclose(pooled.features["text"][:50],
                               torch_reference(np.array(raw.features["text"][:50]), "MKG-Y", "text"), rtol=1e-5,
                               atol=1e-7)
    assert pooled.fingerprint() != raw.fingerprint()
    with pytest.raises(ValueError, match="transform must be one of"):
        load_dataset({"benchmark": "MKG-Y", "features": str(folder), "transform": "pca"})
    from mmkgbench.cli import main
    assert main(["data", "features", "check", "MKG-Y", "--from", str(folder), "--transform", "momok"]) == 0
    out = capsys.readouterr().out
    assert "image: " in out and "d=383 (as published)" in out and "d=384 (as published)" in out
    assert "after transform 'momok': image d=383, text d=256" in out
    assert main(["data", "features", "numeric"]) == 2
    assert "usage: data features" in capsys.readouterr().err
    (folder / "MKG-Y-visual.pth").unlink()
    torch.save(torch.ones(n - 1, 383), folder / "MKG-Y-visual.pth")
    with pytest.raises(DataError, match=r"MKG-Y-visual\.pth: has 14999 feature rows but the data set has 15000"):
        load_dataset({"benchmark": "MKG-Y", "features": str(folder)})


def test_meta_stays_json_after_import_and_transform(tmp_path):
    torch.save(torch.from_numpy(rand(E, 768)), tmp_path / "img_features.pth")
    data = momok_preprocess(import_features(toy("KVC16K"), tmp_path))
    assert json.loads(json.dumps(data.meta))["feature_transform"] == "momok-pool-v1"


def test_data_set_names_say_which_features_a_run_had(tmp_path):
    from mmkgbench.datasets import dataset_label, feature_suffix
    torch.save(torch.ones(E, 3), tmp_path / "DB15K-visual.pth")
    torch.save(torch.ones(E, 3), tmp_path / "DB15K-textual.pth")
    assert feature_suffix({"benchmark": "DB15K", "features": str(tmp_path), "transform": "momok"}) == "+image+text@momok"
    assert feature_suffix({"benchmark": "DB15K", "features": {"text": "encoded", "numeric": "literals"}}) == \
           "+numeric+text~e5-small"
    assert feature_suffix({"benchmark": "DB15K", "features": {"text": "encoded:minilm"}}) == "+text~minilm"
    assert feature_suffix({"benchmark": "DB15K"}) == ""
    assert dataset_label({"benchmark": "DB15K", "features": {"image": "x.pth"}, "splits": "clean"}) == \
           "DB15K+image[clean]"
    assert dataset_label({"benchmark": "DB15K", "features": {"image": "x.pth"}, "name": "mine"}) == "mine"


def test_loaded_name_matches_the_label(tmp_path):
    from mmkgbench.datasets import dataset_label
    from mmkgbench.synthetic import synthetic_mmkg
    data = synthetic_mmkg(num_entities=20, num_relations=2, num_triples=80, seed=1)
    folder = tmp_path / "kg"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text("".join(f"{data.entities[h]} {data.relations[r]} {data.entities[t]} .\n"
                                                     for h, r, t in data.split(split)))
    (folder / "entity2id.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(data.entities)))
    (folder / "relation2id.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(data.relations)))
    np.save(tmp_path / "img.npy", rand(20, 4))
    spec = {"path": str(folder), "features": {"image": str(tmp_path / "img.npy")}, "transform": "l2"}
    loaded = load_dataset(spec)
    assert loaded.name == dataset_label(spec) == "kg+image@l2"
    np.testing.assert_allclose(np.linalg.norm(loaded.features["image"], axis=1), 1.0, rtol=1e-5)
