"""The four real MMKGC benchmarks (DB15K, MKG-W, MKG-Y, Kuai16K) load in both layouts with the counts
and data-quality numbers stated in shared/datasets/README.md.

The data live in `<repo>/../shared/datasets` (override with MMKGBENCH_SHARED_DATASETS); without them
the whole module is skipped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from mmkgbench.data import SPLITS
from mmkgbench.loaders import load_folder, load_momok, load_openke


ROOT = SHARED
NAMES = ("DB15K", "MKG-W", "MKG-Y", "Kuai16K")

if not all((ROOT / ds / "entity2id.txt").is_file() for ds in NAMES):
    pytest.skip(f"real data sets not found under {ROOT} (set MMKGBENCH_SHARED_DATASETS)", allow_module_level=True)

# README "Summary" table: entities, relations, train / valid / test *lines*.
COUNTS = {
    "DB15K": (12_842, 279, 79_222, 9_904, 9_902),
    "MKG-W": (15_000, 169, 34_196, 4_276, 4_274),
    "MKG-Y": (15_000, 28, 21_310, 2_665, 2_663),
    "Kuai16K": (16_015, 4, 180_190, 22_523, 22_525),
}
# README: distinct triples per split (only DB15K valid and the Kuai16K splits have duplicates).
UNIQUE = {
    "DB15K": (79_222, 7_481, 9_902),
    "MKG-W": (34_196, 4_276, 4_274),
    "MKG-Y": (21_310, 2_665, 2_663),
    "Kuai16K": (180_019, 22_520, 22_523),
}
# README: test triples (lines) with an entity never seen in train.
TEST_WITH_UNSEEN_ENTITY = {"DB15K": 77, "MKG-W": 306, "MKG-Y": 388, "Kuai16K": 13}


@pytest.fixture(scope="module")
def momok():
    return {ds: load_momok(ROOT / ds) for ds in NAMES}


@pytest.fixture(scope="module")
def openke():
    return {ds: load_openke(ROOT / ds / "openke", name=ds) for ds in NAMES}


def triple_set(a: np.ndarray) -> set[tuple[int, int, int]]:
    return set(map(tuple, a.tolist()))


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


@pytest.mark.parametrize("ds", NAMES)
def test_momok_counts_match_readme(momok, ds):
    data = momok[ds]
    E, R, n_train, n_valid, n_test = COUNTS[ds]
    assert data.name == ds
    assert data.meta["layout"] == "momok"
    assert (data.num_entities, data.num_relations) == (E, R)
    assert (len(data.train), len(data.valid), len(data.test)) == (n_train, n_valid, n_test)
    for s in SPLITS:  # one row per non-blank line: nothing dropped, nothing deduplicated
        assert len(data.split(s)) == count_lines(ROOT / ds / f"{s}.txt")
        assert data.split(s).dtype == np.int64
    assert data.modalities == ()


@pytest.mark.parametrize("ds", NAMES)
def test_unique_triples_match_readme(momok, ds):
    data = momok[ds]
    assert tuple(len(triple_set(data.split(s))) for s in SPLITS) == UNIQUE[ds]


@pytest.mark.parametrize("ds", NAMES)
def test_openke_view_is_identical(momok, openke, ds):
    a, b = momok[ds], openke[ds]
    assert b.meta["layout"] == "openke"
    assert b.entities == a.entities
    assert b.relations == a.relations
    for s in SPLITS:
        assert b.split(s).shape == a.split(s).shape
        np.testing.assert_array_equal(b.split(s), a.split(s), err_msg=f"{ds} {s}")
    assert b.fingerprint() == a.fingerprint()


@pytest.mark.parametrize("ds", ["MKG-Y"])  # the smallest; detection itself is tested on toy folders
def test_load_folder_detects_both_views(ds):
    assert load_folder(ROOT / ds).meta["layout"] == "momok"
    assert load_folder(ROOT / ds / "openke").meta["layout"] == "openke"


def test_kuai16k_names_and_relations(momok):
    """Kuai16K's id maps are TAB-separated, with Chinese entity names and relations named 0-3."""
    first = (ROOT / "Kuai16K" / "entity2id.txt").read_text(encoding="utf-8").split("\n", 1)[0]
    assert "\t" in first
    data = momok["Kuai16K"]
    assert data.relations == ("0", "1", "2", "3")
    assert data.entities[0] == first.split("\t")[0]


@pytest.mark.parametrize("ds", NAMES)
def test_every_entity_and_relation_occurs(momok, ds):
    """README: in every data set, every entity and every relation occurs in at least one triple."""
    data = momok[ds]
    allt = np.concatenate([data.train, data.valid, data.test])
    assert len(np.unique(allt[:, [0, 2]])) == data.num_entities
    assert len(np.unique(allt[:, 1])) == data.num_relations


def test_db15k_valid_duplicates_and_train_overlap(momok):
    data = momok["DB15K"]
    valid = data.valid.tolist()
    assert len(valid) == 9_904
    assert len(valid) - len(triple_set(data.valid)) == 2_423
    assert len(triple_set(data.valid) & triple_set(data.train)) == 6_584
    assert len(triple_set(data.valid) & triple_set(data.test)) == 824
    # test is clean: no duplicates, no overlap with train
    assert len(triple_set(data.test)) == len(data.test)
    assert not triple_set(data.test) & triple_set(data.train)
    assert len(triple_set(data.train)) == len(data.train)


def test_kuai16k_duplicates_and_overlaps(momok):
    data = momok["Kuai16K"]
    train = triple_set(data.train)
    assert len(data.train) - len(train) == 171
    assert len(train & triple_set(data.test)) == 48
    assert len(train & triple_set(data.valid)) == 30


@pytest.mark.parametrize("ds", NAMES)
def test_test_triples_with_entity_unseen_in_train(momok, ds):
    """Counted per test line (triple), with either head or tail missing from train heads/tails."""
    data = momok[ds]
    seen = np.zeros(data.num_entities, bool)
    seen[data.train[:, [0, 2]].ravel()] = True
    unseen = ~seen[data.test[:, 0]] | ~seen[data.test[:, 2]]
    assert int(unseen.sum()) == TEST_WITH_UNSEEN_ENTITY[ds]
    # all four test splits have no duplicate among these lines, so per line == per distinct triple
    assert len(triple_set(data.test[unseen])) == TEST_WITH_UNSEEN_ENTITY[ds]


def test_db15k_openke_first_train_line_is_h_t_r(momok):
    """README example: openke/train2id.txt starts with `79222` then `11208 6404 117` (h t r)."""
    lines = (ROOT / "DB15K" / "openke" / "train2id.txt").read_text().split("\n", 2)
    assert lines[0].strip() == "79222" and lines[1].split() == ["11208", "6404", "117"]
    np.testing.assert_array_equal(momok["DB15K"].train[0], [11208, 117, 6404])
    first = (ROOT / "DB15K" / "train.txt").read_text(encoding="utf-8").split("\n", 1)[0].split()
    data = momok["DB15K"]
    assert first[:3] == [data.entities[11208], data.relations[117], data.entities[6404]]


# README "Cleaned splits": valid lines kept by splits = "clean-valid", and the lines removed as
# (in train, in test, repeated). Measured on the files; MKG-W and MKG-Y have nothing to remove.
CLEAN_VALID = {
    "DB15K": (73, {"in_train": 8_719, "in_test": 1_105, "duplicate": 7}),
    "MKG-W": (4_276, {"in_train": 0, "in_test": 0, "duplicate": 0}),
    "MKG-Y": (2_665, {"in_train": 0, "in_test": 0, "duplicate": 0}),
    "Kuai16K": (22_485, {"in_train": 30, "in_test": 5, "duplicate": 3}),
}


@pytest.mark.parametrize("ds", NAMES)
def test_clean_valid_counts_and_untouched_test(momok, ds):
    from mmkgbench.audit import clean_valid
    data = momok[ds]
    out = clean_valid(data)
    kept, removed = CLEAN_VALID[ds]
    assert (len(out.valid), out.meta["valid_removed"]) == (kept, removed)
    assert len(triple_set(out.valid)) == kept
    assert not triple_set(out.valid) & (triple_set(data.train) | triple_set(data.test))
    assert out.test.tobytes() == data.test.tobytes() and out.train.tobytes() == data.train.tobytes()
