"""The data audit and the split policies ("clean", "clean-valid")."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED, needs_shared
from mmkgbench import catalog
from mmkgbench.audit import SPLIT_POLICIES, apply_split_policy, audit, clean_splits, clean_valid, split_label
from mmkgbench.cli import main
from mmkgbench.data import MMKG
from mmkgbench.datasets import dataset_label, load_dataset
from mmkgbench.grid import grid_from_dict
from mmkgbench.resolve import resolve


def toy() -> MMKG:
    train = [[0, 0, 1], [1, 0, 2], [2, 1, 3]]
    valid = [[0, 0, 1], [3, 0, 4], [3, 0, 4], [2, 1, 0]]          # leak from train, a duplicate
    test = [[3, 0, 4], [4, 1, 0], [4, 1, 0], [1, 0, 3], [4, 2, 1]]  # leak from valid, duplicate, new relation 2
    return MMKG("toy", tuple("abcde"), ("r0", "r1", "r2"), np.array(train), np.array(valid), np.array(test),
                features={"image": np.ones((5, 2), np.float32)},
                present={"image": np.array([True, True, False, True, False])})


def test_audit_counts_by_hand():
    t = audit(toy())
    splits = t["splits"].set_index("split")
    assert splits.loc["valid", "duplicate_lines"] == 1 and splits.loc["test", "duplicate_lines"] == 1
    assert splits.loc["valid", "lines_with_entity_unseen_in_train"] == 2     # entity 4 twice
    assert splits.loc["test", "lines_with_entity_unseen_in_train"] == 4
    assert splits.loc["test", "lines_with_relation_unseen_in_train"] == 1
    overlap = dict(zip(t["overlap"]["splits"], t["overlap"]["distinct_triples"]))
    assert overlap == {"train ∩ valid": 1, "train ∩ test": 0, "valid ∩ test": 1}
    rel = t["relations"].iloc[0]
    assert rel["in_train"] == 2 and rel["in_valid_or_test_not_train"] == 1 and rel["train_max"] == 2
    assert t["modalities"].iloc[0]["coverage"] == pytest.approx(0.6)


def test_clean_splits_removes_duplicates_and_leaks_only():
    data = toy()
    clean = clean_splits(data)
    assert clean.name == "toy[clean]" and clean.meta["removed_lines"] == {"valid": 2, "test": 2}
    assert clean.valid.tolist() == [[3, 0, 4], [2, 1, 0]]
    assert clean.test.tolist() == [[4, 1, 0], [1, 0, 3], [4, 2, 1]]
    assert np.array_equal(clean.train, data.train) and data.valid.shape == (4, 3)   # input untouched


def test_clean_option_in_a_grid_is_recorded():
    spec = {"path": "unused", "splits": "clean"}
    assert dataset_label(spec) == "unused[clean]"
    with pytest.raises(ValueError, match="splits must be one of"):
        load_dataset({"benchmark": "DB15K", "splits": "tidy"})
    with pytest.raises(ValueError, match="exactly one of 'benchmark' and 'path'"):
        load_dataset({"benchmark": "DB15K", "path": "x"})


def leaky_valid() -> MMKG:
    """valid: two lines from train, two from test, one repeated line, two new triples (one in train's
    entities only, one relation 2 that train lacks)."""
    train = [[0, 0, 1], [1, 0, 2], [2, 1, 3]]
    valid = [[0, 0, 1], [2, 1, 0], [3, 0, 4], [2, 1, 0], [0, 0, 1], [4, 2, 2], [3, 0, 4]]
    test = [[3, 0, 4], [4, 1, 0], [1, 0, 3], [3, 0, 4]]          # a repeated test line stays: test is as published
    return MMKG("leaky", tuple("abcde"), ("r0", "r1", "r2"), np.array(train), np.array(valid), np.array(test))


def test_clean_valid_removes_exactly_the_leaks_from_valid():
    data = leaky_valid()
    out = clean_valid(data)
    assert out.valid.tolist() == [[2, 1, 0], [4, 2, 2]] and out.valid.dtype == np.int64
    assert out.meta["valid_removed"] == {"in_train": 2, "in_test": 2, "duplicate": 1}
    assert out.meta["splits"] == "clean-valid" and out.meta["removed_lines"] == {"valid": 5, "test": 0}
    for split in ("train", "test"):           # byte for byte as published
        a, b = data.split(split), out.split(split)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert data.valid.shape == (7, 3)         # the input is untouched
    # every removed triple is still in train or test, so the filter of test ranks is the published one
    union = lambda d: set(map(tuple, np.concatenate([d.train, d.valid, d.test]).tolist()))
    assert union(out) == union(data)
    assert clean_splits(data).test.tolist() != data.test.tolist()       # unlike "clean", which edits test


def test_clean_valid_label_and_policies():
    data = leaky_valid()
    assert clean_valid(data).name == "leaky[clean-valid]" and split_label("DB15K", "as_published") == "DB15K"
    assert SPLIT_POLICIES == ("as_published", "clean", "clean-valid")
    assert apply_split_policy(data, "as_published") is data
    assert apply_split_policy(data, "clean").name == "leaky[clean]"
    assert apply_split_policy(data, "clean-valid").valid.tolist() == clean_valid(data).valid.tolist()
    with pytest.raises(ValueError, match="unknown split policy 'valid'; choose from as_published, clean, clean-valid"):
        apply_split_policy(data, "valid")
    assert dataset_label({"path": "unused", "splits": "clean-valid"}) == "unused[clean-valid]"
    assert dataset_label({"path": "unused", "name": "mine", "splits": "clean-valid"}) == "mine[clean-valid]"
    assert dataset_label({"benchmark": "DB15K", "features": {"image": "x.pth"}, "splits": "clean-valid"}) == \
        "DB15K+image[clean-valid]"
    with pytest.raises(ValueError, match="splits must be one of as_published, clean, clean-valid, got 'cleanvalid'"):
        load_dataset({"benchmark": "DB15K", "splits": "cleanvalid"})


def test_clean_valid_leaving_nothing_is_an_error():
    data = leaky_valid()
    with pytest.raises(ValueError, match=r"leaky: splits = 'clean-valid' leaves no valid triple \(2 lines"):
        clean_valid(data.replace(valid=data.train[:2]))


def test_clean_valid_from_a_grid_is_loaded_labelled_and_recorded(tmp_path):
    data = leaky_valid()
    folder = tmp_path / "leaky"
    folder.mkdir()
    (folder / "entity2id.txt").write_text("".join(f"{e} {i}\n" for i, e in enumerate(data.entities)))
    (folder / "relation2id.txt").write_text("".join(f"{r} {i}\n" for i, r in enumerate(data.relations)))
    for split in ("train", "valid", "test"):
        lines = (f"{data.entities[h]} {data.relations[r]} {data.entities[t]}\n" for h, r, t in data.split(split).tolist())
        (folder / f"{split}.txt").write_text("".join(lines))
    spec = {"path": str(folder), "splits": "clean-valid"}
    published, cleaned = load_dataset({"path": str(folder)}), load_dataset(spec)
    assert cleaned.name == "leaky[clean-valid]" == dataset_label(spec)
    assert cleaned.valid.tolist() == [[2, 1, 0], [4, 2, 2]]
    assert cleaned.test.tobytes() == published.test.tobytes() and cleaned.train.tobytes() == published.train.tobytes()
    cell = grid_from_dict({"models": ["distmult"], "datasets": [spec], "seeds": [0]}).cells[0]
    config = resolve(cell, cleaned)
    assert config["dataset"]["spec"]["splits"] == "clean-valid" and config["dataset"]["name"] == "leaky[clean-valid]"
    assert config["dataset"]["fingerprint"] != published.fingerprint()


@needs_shared
def test_db15k_audit_matches_the_dataset_readme(home):
    catalog.fetch("DB15K", mirror=str(SHARED), log=lambda *a: None)
    t = audit(load_dataset("DB15K"))
    valid = t["splits"].set_index("split").loc["valid"]
    assert valid["lines"] == 9904 and valid["duplicate_lines"] == 2423
    overlap = dict(zip(t["overlap"]["splits"], t["overlap"]["distinct_triples"]))
    assert overlap["train ∩ valid"] == 6584 and overlap["valid ∩ test"] == 824 and overlap["train ∩ test"] == 0
    assert t["splits"].set_index("split").loc["test", "lines_with_entity_unseen_in_train"] == 77
    clean = load_dataset({"benchmark": "DB15K", "splits": "clean"})
    assert clean.name == "DB15K[clean]" and len(clean.valid) == 7481 - 6584 - 0 and len(clean.test) == 9902 - 824
    cell = grid_from_dict({"models": ["distmult"], "datasets": [{"benchmark": "DB15K", "splits": "clean"}],
                           "seeds": [0]}).cells[0]
    config = resolve(cell, clean)
    assert config["dataset"]["spec"]["splits"] == "clean" and config["dataset"]["name"] == "DB15K[clean]"


@needs_shared
def test_db15k_clean_valid_counts(home):
    """README "Cleaned splits": DB15K[clean-valid] keeps 73 of 9,904 valid lines; test as published."""
    catalog.fetch("DB15K", mirror=str(SHARED), log=lambda *a: None)
    published = load_dataset("DB15K")
    data = load_dataset({"benchmark": "DB15K", "splits": "clean-valid"})
    assert data.name == "DB15K[clean-valid]" and len(data.valid) == 73 == 7481 - 6584 - 824
    assert data.meta["valid_removed"] == {"in_train": 8719, "in_test": 1105, "duplicate": 7}
    assert len(data.test) == 9902 and data.test.tobytes() == published.test.tobytes()
    assert data.train.tobytes() == published.train.tobytes()


@needs_shared
def test_cli_audit_writes_tables(home, tmp_path, capsys):
    assert main(["--results", str(tmp_path), "data", "audit", "MKG-Y", "--fetch", "--mirror", str(SHARED)]) == 0
    assert "duplicate_lines" in capsys.readouterr().out
    assert (tmp_path / "tables" / "audit_MKG-Y.md").is_file() and (tmp_path / "tables" / "audit_MKG-Y.csv").is_file()
    assert main(["--results", str(tmp_path), "data", "audit", "synthetic_tiny", "--clean"]) == 0
    assert (tmp_path / "tables" / "audit_synthetic_tiny[clean].md").is_file()


# The README's audit table ("What is wrong with each benchmark"): duplicate lines per split,
# distinct triples shared between splits, lines with an entity / relation unseen in train.
README_AUDIT = {
    "DB15K": ((0, 2423, 0), (6584, 0, 824), {"valid": (3, 1), "test": (77, 7)}),
    "MKG-W": ((0, 0, 0), (0, 0, 0), {"valid": (333, 1), "test": (306, 0)}),
    "MKG-Y": ((0, 0, 0), (0, 0, 0), {"valid": (400, 0), "test": (388, 0)}),
    "Kuai16K": ((171, 3, 2), (30, 48, 5), {"valid": (5, 0), "test": (13, 0)}),
}


@needs_shared
@pytest.mark.parametrize("folder", sorted(README_AUDIT))
def test_audit_of_every_benchmark_matches_the_readme(folder):
    from mmkgbench.loaders import load_momok
    t = audit(load_momok(SHARED / folder))
    dups, overlaps, unseen = README_AUDIT[folder]
    splits = t["splits"].set_index("split")
    assert tuple(splits.loc[["train", "valid", "test"], "duplicate_lines"]) == dups
    assert tuple(t["overlap"]["distinct_triples"]) == overlaps
    for s, (ent, rel) in unseen.items():
        assert (splits.loc[s, "lines_with_entity_unseen_in_train"], splits.loc[s, "lines_with_relation_unseen_in_train"]) \
            == (ent, rel)
