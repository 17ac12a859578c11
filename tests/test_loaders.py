"""Loaders (MoMoK and OpenKE layouts, feature files) and the MMKG container: every failure mode is a
`DataError` naming the file, the 1-based line where there is one, and the problem."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mmkgbench.data import DataError, MMKG
from mmkgbench.loaders import (load_features, load_folder, load_momok, load_openke, read_id_map,
                               read_id_triples, read_label_triples, with_features)

ENTITIES = ["alice", "bob", "carol", "dave"]
RELATIONS = ["knows", "likes"]
TRAIN = [("alice", "knows", "bob"), ("bob", "likes", "carol"), ("carol", "knows", "dave")]
VALID = [("alice", "likes", "carol")]
TEST = [("dave", "knows", "alice")]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def id_map_text(names, sep=" ", header=False) -> str:
    body = "".join(f"{n}{sep}{i}\n" for i, n in enumerate(names))
    return (f"{len(names)}\n" if header else "") + body


def triples_text(triples, dot=True) -> str:
    return "".join(" ".join(t) + (" .\n" if dot else "\n") for t in triples)


def make_momok(folder: Path, **overrides) -> Path:
    """A valid MoMoK-layout folder; `overrides` maps a file name (without .txt) to replacement text."""
    files = {"entity2id": id_map_text(ENTITIES), "relation2id": id_map_text(RELATIONS),
             "train": triples_text(TRAIN), "valid": triples_text(VALID), "test": triples_text(TEST)}
    files.update(overrides)
    for stem, text in files.items():
        if text is not None:
            write(folder / f"{stem}.txt", text)
    return folder


def id_triples_text(triples, header: int | None = None) -> str:
    """OpenKE `h t r` lines from (h, r, t) id triples, after a count header."""
    n = len(triples) if header is None else header
    return f"{n}\n" + "".join(f"{h} {t} {r}\n" for h, r, t in triples)


def ids(triples):
    e = {n: i for i, n in enumerate(ENTITIES)}
    r = {n: i for i, n in enumerate(RELATIONS)}
    return [(e[h], r[rel], e[t]) for h, rel, t in triples]


def make_openke(folder: Path, **overrides) -> Path:
    files = {"entity2id": id_map_text(ENTITIES, header=True), "relation2id": id_map_text(RELATIONS, header=True),
             "train2id": id_triples_text(ids(TRAIN)), "valid2id": id_triples_text(ids(VALID)),
             "test2id": id_triples_text(ids(TEST))}
    files.update(overrides)
    for stem, text in files.items():
        if text is not None:
            write(folder / f"{stem}.txt", text)
    return folder


def check(err, path: Path, line: int | None):
    """The DataError names `path` (attribute and message) and the right line."""
    e = err.value
    assert isinstance(e, DataError) and isinstance(e, ValueError)
    assert e.path == str(path)
    assert e.line == line
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(e).startswith(where), str(e)


# --------------------------------------------------------------------------------------------------
# MoMoK layout
# --------------------------------------------------------------------------------------------------

def test_momok_valid_folder_loads(tmp_path):
    data = load_momok(make_momok(tmp_path / "toy"))
    assert data.name == "toy"
    assert data.entities == tuple(ENTITIES) and data.relations == tuple(RELATIONS)
    assert data.train.dtype == np.int64 and data.train.shape == (3, 3)
    np.testing.assert_array_equal(data.train, ids(TRAIN))
    np.testing.assert_array_equal(data.valid, ids(VALID))
    np.testing.assert_array_equal(data.test, ids(TEST))
    assert data.meta["layout"] == "momok"
    assert data.modalities == ()


def test_momok_trailing_dot_is_optional(tmp_path):
    mixed = "alice knows bob .\nbob likes carol\ncarol knows dave\t.\n"
    data = load_momok(make_momok(tmp_path, train=mixed))
    np.testing.assert_array_equal(data.train, ids(TRAIN))


def test_momok_blank_lines_and_crlf_are_tolerated(tmp_path):
    text = "\r\n".join(" ".join(t) + " ." for t in TRAIN) + "\r\n\r\n"
    data = load_momok(make_momok(tmp_path, train="\n" + text, entity2id=id_map_text(ENTITIES) + "\n\n"))
    np.testing.assert_array_equal(data.train, ids(TRAIN))


@pytest.mark.parametrize("line", ["alice knows", "alice knows bob carol", "alice knows bob . extra"])
def test_momok_malformed_triple_line(tmp_path, line):
    folder = make_momok(tmp_path, train=triples_text(TRAIN[:2]) + line + "\n")
    with pytest.raises(DataError, match=r"train\.txt:3: expected 'head relation tail \[\.\]', got \d fields") as err:
        load_momok(folder)
    check(err, folder / "train.txt", 3)


def test_momok_unknown_entity(tmp_path):
    folder = make_momok(tmp_path, valid="alice likes carol .\nalice likes zoe .\n")
    with pytest.raises(DataError, match=r"valid\.txt:2: unknown entity 'zoe' \(not in the entity2id file\)") as err:
        load_momok(folder)
    check(err, folder / "valid.txt", 2)


def test_momok_unknown_head_entity(tmp_path):
    folder = make_momok(tmp_path, test="zoe knows alice .\n")
    with pytest.raises(DataError, match=r"unknown entity 'zoe'") as err:
        load_momok(folder)
    check(err, folder / "test.txt", 1)


def test_momok_unknown_relation(tmp_path):
    folder = make_momok(tmp_path, train=triples_text(TRAIN) + "alice hates bob .\n")
    with pytest.raises(DataError, match=r"train\.txt:4: unknown relation 'hates' \(not in the relation2id file\)") as err:
        load_momok(folder)
    check(err, folder / "train.txt", 4)


def test_momok_duplicate_id_in_entity2id(tmp_path):
    folder = make_momok(tmp_path, entity2id="alice 0\nbob 1\ncarol 1\ndave 2\n")
    with pytest.raises(DataError, match=r"entity2id\.txt:3: duplicate id 1 \(also used for 'bob'\)") as err:
        load_momok(folder)
    check(err, folder / "entity2id.txt", 3)


def test_momok_duplicate_name_in_entity2id(tmp_path):
    folder = make_momok(tmp_path, entity2id="alice 0\nbob 1\ncarol 2\nbob 3\n")
    with pytest.raises(DataError, match=r"entity2id\.txt:4: duplicate name 'bob' \(already id 1\)") as err:
        load_momok(folder)
    check(err, folder / "entity2id.txt", 4)


def test_momok_duplicate_in_relation2id(tmp_path):
    folder = make_momok(tmp_path, relation2id="knows 0\nknows 1\n")
    with pytest.raises(DataError, match=r"relation2id\.txt:2: duplicate name 'knows'") as err:
        load_momok(folder)
    check(err, folder / "relation2id.txt", 2)


@pytest.mark.parametrize("text, missing", [("alice 0\nbob 1\ncarol 3\ndave 4\n", "[2]"),
                                           ("alice 1\nbob 2\ncarol 3\ndave 4\n", "[0]"),
                                           ("alice -1\nbob 0\ncarol 1\ndave 2\n", "[3]")])
def test_momok_non_contiguous_ids(tmp_path, text, missing):
    folder = make_momok(tmp_path, entity2id=text)
    with pytest.raises(DataError, match=r"entity2id\.txt: ids are not contiguous 0\.\.3 \(missing e\.g\. "
                                        + re.escape(missing)) as err:
        load_momok(folder)
    check(err, folder / "entity2id.txt", None)


@pytest.mark.parametrize("raw", ["x", "1.0", "2e3", "0x1"])
def test_momok_non_integer_id(tmp_path, raw):
    folder = make_momok(tmp_path, entity2id=f"alice 0\nbob {raw}\ncarol 2\ndave 3\n")
    with pytest.raises(DataError, match=r"entity2id\.txt:2: id " + re.escape(repr(raw)) + " is not an integer") as err:
        load_momok(folder)
    check(err, folder / "entity2id.txt", 2)


def test_momok_id_map_line_without_id(tmp_path):
    folder = make_momok(tmp_path, relation2id="knows 0\nlikes\n")
    with pytest.raises(DataError, match=r"relation2id\.txt:2: expected 'name<sep>id'") as err:
        load_momok(folder)
    check(err, folder / "relation2id.txt", 2)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
@pytest.mark.parametrize("text", ["", "\n\n  \n\t\n"], ids=["empty", "blank-lines"])
def test_momok_empty_split(tmp_path, split, text):
    folder = make_momok(tmp_path, **{split: text})
    with pytest.raises(DataError, match=re.escape(f"{split}.txt") + r": empty split: no triples") as err:
        load_momok(folder)
    check(err, folder / f"{split}.txt", None)


def test_momok_empty_id_map(tmp_path):
    folder = make_momok(tmp_path, entity2id="\n\n")
    with pytest.raises(DataError, match=r"entity2id\.txt: no entries") as err:
        load_momok(folder)
    check(err, folder / "entity2id.txt", None)


@pytest.mark.parametrize("stem", ["entity2id", "relation2id", "train", "valid", "test"])
def test_momok_missing_file(tmp_path, stem):
    folder = make_momok(tmp_path, **{stem: None})
    with pytest.raises(DataError, match=re.escape(f"{stem}.txt") + r": file not found") as err:
        load_momok(folder)
    check(err, folder / f"{stem}.txt", None)


def test_momok_tab_separated_id_maps_with_spaces_in_names(tmp_path):
    """Kuai16K style: `name<TAB>id`; with a TAB separator a name may contain spaces (and digits)."""
    ents = ["欧式家具", "New York", "格力犬", "咬人 2"]
    rels = ["0", "1", "2", "3"]
    folder = make_momok(tmp_path, entity2id=id_map_text(ents, sep="\t"), relation2id=id_map_text(rels, sep="\t"),
                        train="格力犬 2 欧式家具 .\n欧式家具 0 格力犬 .\n",
                        valid="New York\t3\t咬人 2\t.\n", test="咬人 2\t1\tNew York .\n")
    data = load_momok(folder)
    assert data.entities == tuple(ents)
    assert data.relations == tuple(rels)
    np.testing.assert_array_equal(data.train, [(2, 2, 0), (0, 0, 2)])
    np.testing.assert_array_equal(data.valid, [(1, 3, 3)])
    np.testing.assert_array_equal(data.test, [(3, 1, 1)])


def test_read_id_map_space_separated_keeps_inner_spaces_and_strips_padding(tmp_path):
    path = write(tmp_path / "entity2id.txt", "  a b c 1\nd\t0\n")
    assert read_id_map(path) == ("d", "a b c")


def test_line_numbers_are_counted_at_newlines_only(tmp_path):
    """Names may hold characters that str.splitlines() treats as line breaks (\\x85, \\u2028, \\x0c):
    they must neither split a name nor shift the line numbers of later errors."""
    ents = ["caf\x85e", "a\u2028b", "form\x0cfeed", "dave"]
    path = write(tmp_path / "entity2id.txt", id_map_text(ents, sep="\t"))
    assert read_id_map(path) == tuple(ents)
    eid = {n: i for i, n in enumerate(ents)}
    tri = write(tmp_path / "train.txt", "caf\x85e\tknows\ta\u2028b\t.\ndave\tknows\tform\x0cfeed\t.\nzoe\tknows\tdave\t.\n")
    with pytest.raises(DataError, match=r"unknown entity 'zoe'") as err:
        read_label_triples(tri, eid, {"knows": 0})
    check(err, tri, 3)


@pytest.mark.parametrize("stem, lineno", [("entity2id", 3), ("train", 2), ("test", 1)])
def test_momok_invalid_utf8_reports_line(tmp_path, stem, lineno):
    folder = make_momok(tmp_path)
    path = folder / f"{stem}.txt"
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = lines[lineno - 1][:3] + b"\xff\xfe" + lines[lineno - 1][3:]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=re.escape(f"{stem}.txt:{lineno}: not valid UTF-8")) as err:
        load_momok(folder)
    check(err, path, lineno)


def test_momok_name_defaults_to_folder_and_can_be_given(tmp_path):
    folder = make_momok(tmp_path / "My-DS")
    assert load_momok(folder).name == "My-DS"
    assert load_momok(folder, name="other").name == "other"


# --------------------------------------------------------------------------------------------------
# OpenKE layout
# --------------------------------------------------------------------------------------------------

def test_openke_h_t_r_is_reordered_to_h_r_t(tmp_path):
    """Hand-written file: `h t r` columns become (h, r, t) rows, in file order."""
    folder = make_openke(tmp_path, train2id="3\n0 1 0\n1 2 1\n2 3 0\n", valid2id="1\n0 2 1\n", test2id="1\n3 0 0\n")
    data = load_openke(folder)
    np.testing.assert_array_equal(data.train, [[0, 0, 1], [1, 1, 2], [2, 0, 3]])
    np.testing.assert_array_equal(data.valid, [[0, 1, 2]])
    np.testing.assert_array_equal(data.test, [[3, 0, 0]])
    assert data.entities == tuple(ENTITIES) and data.relations == tuple(RELATIONS)
    assert data.meta["layout"] == "openke"
    # The same data set in the MoMoK layout gives the same arrays.
    momok = load_momok(make_momok(tmp_path / "momok"))
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(data.split(s), momok.split(s))


def test_openke_asymmetric_reordering(tmp_path):
    """h, t and r all differ, so any wrong column order would show."""
    ents = [f"e{i}" for i in range(10)]
    rels = [f"r{i}" for i in range(5)]
    folder = make_openke(tmp_path, entity2id=id_map_text(ents, header=True), relation2id=id_map_text(rels, header=True),
                         train2id="2\n7 9 4\n8 1 3\n", valid2id="1\n5 6 2\n", test2id="1\n0 3 1\n")
    data = load_openke(folder)
    np.testing.assert_array_equal(data.train, [[7, 4, 9], [8, 3, 1]])
    np.testing.assert_array_equal(data.valid, [[5, 2, 6]])
    np.testing.assert_array_equal(data.test, [[0, 1, 3]])


@pytest.mark.parametrize("stem, text, says, has", [
    ("entity2id", "5\nalice 0\nbob 1\ncarol 2\ndave 3\n", 5, 4),
    ("entity2id", "3\nalice 0\nbob 1\ncarol 2\ndave 3\n", 3, 4),
    ("relation2id", "1\nknows 0\nlikes 1\n", 1, 2),
    ("relation2id", "3\nknows 0\nlikes 1\n", 3, 2),
])
def test_openke_id_map_count_header_disagrees(tmp_path, stem, text, says, has):
    folder = make_openke(tmp_path, **{stem: text})
    with pytest.raises(DataError, match=re.escape(f"{stem}.txt:1: count header says {says} but the file has "
                                                  f"{has} entries")) as err:
        load_openke(folder)
    check(err, folder / f"{stem}.txt", 1)


@pytest.mark.parametrize("says", [2, 4, 0])
def test_openke_triples_count_header_disagrees(tmp_path, says):
    folder = make_openke(tmp_path, train2id=id_triples_text(ids(TRAIN), header=says))
    with pytest.raises(DataError, match=re.escape(f"train2id.txt:1: count header says {says} but the file has 3 triples")) as err:
        load_openke(folder)
    check(err, folder / "train2id.txt", 1)


@pytest.mark.parametrize("stem", ["entity2id", "relation2id", "train2id", "valid2id", "test2id"])
@pytest.mark.parametrize("header", ["abc", "4.0", "alice 0", ""])
def test_openke_non_numeric_header(tmp_path, stem, header):
    folder = make_openke(tmp_path)
    path = folder / f"{stem}.txt"
    rest = path.read_text(encoding="utf-8").split("\n", 1)[1]
    write(path, header + "\n" + rest)
    with pytest.raises(DataError, match=re.escape(f"{stem}.txt:1: expected a count header, got {header!r}")) as err:
        load_openke(folder)
    check(err, path, 1)


def test_openke_negative_header(tmp_path):
    folder = make_openke(tmp_path, valid2id="-1\n")
    with pytest.raises(DataError, match=r"valid2id\.txt:1: negative count header -1") as err:
        load_openke(folder)
    check(err, folder / "valid2id.txt", 1)


def test_openke_empty_triples_file(tmp_path):
    folder = make_openke(tmp_path, test2id="")
    with pytest.raises(DataError, match=r"test2id\.txt: empty file: missing the count header") as err:
        load_openke(folder)
    check(err, folder / "test2id.txt", None)


def test_openke_zero_triples(tmp_path):
    folder = make_openke(tmp_path, test2id="0\n")
    with pytest.raises(DataError, match=r"test2id\.txt: empty split: no triples") as err:
        load_openke(folder)
    check(err, folder / "test2id.txt", None)


@pytest.mark.parametrize("line", ["4 0 0", "0 4 0", "-1 0 0", "0 -1 1"])
def test_openke_entity_id_out_of_range(tmp_path, line):
    folder = make_openke(tmp_path, train2id="3\n0 1 0\n" + line + "\n2 3 0\n")
    with pytest.raises(DataError, match=r"train2id\.txt:3: entity id out of range \[0, 4\)") as err:
        load_openke(folder)
    check(err, folder / "train2id.txt", 3)


@pytest.mark.parametrize("r", [2, -1, 99])
def test_openke_relation_id_out_of_range(tmp_path, r):
    folder = make_openke(tmp_path, valid2id=f"2\n0 2 1\n1 3 {r}\n")
    with pytest.raises(DataError, match=re.escape(f"valid2id.txt:3: relation id {r} out of range [0, 2)")) as err:
        load_openke(folder)
    check(err, folder / "valid2id.txt", 3)


@pytest.mark.parametrize("line", ["0 1", "0 1 0 1", "0"])
def test_openke_wrong_field_count(tmp_path, line):
    folder = make_openke(tmp_path, train2id="3\n0 1 0\n1 2 1\n" + line + "\n")
    with pytest.raises(DataError, match=r"train2id\.txt:4: expected 'h t r' ids, got \d fields") as err:
        load_openke(folder)
    check(err, folder / "train2id.txt", 4)


def test_openke_non_integer_id(tmp_path):
    folder = make_openke(tmp_path, test2id="1\n3 alice 0\n")
    with pytest.raises(DataError, match=r"test2id\.txt:2: non-integer id") as err:
        load_openke(folder)
    check(err, folder / "test2id.txt", 2)


def test_openke_missing_file(tmp_path):
    folder = make_openke(tmp_path, valid2id=None)
    with pytest.raises(DataError, match=r"valid2id\.txt: file not found") as err:
        load_openke(folder)
    check(err, folder / "valid2id.txt", None)


def test_read_id_triples_directly(tmp_path):
    path = write(tmp_path / "x2id.txt", "2\n\n1 0 2\n0 1 1\n")
    out = read_id_triples(path, num_entities=2, num_relations=3)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[1, 2, 0], [0, 1, 1]])


# --------------------------------------------------------------------------------------------------
# load_folder
# --------------------------------------------------------------------------------------------------

def test_load_folder_detects_momok(tmp_path):
    data = load_folder(make_momok(tmp_path / "m"))
    assert data.meta["layout"] == "momok"
    np.testing.assert_array_equal(data.train, ids(TRAIN))


def test_load_folder_detects_openke(tmp_path):
    data = load_folder(make_openke(tmp_path / "o"), name="named")
    assert data.meta["layout"] == "openke" and data.name == "named"
    np.testing.assert_array_equal(data.train, ids(TRAIN))


def test_load_folder_explicit_layout(tmp_path):
    folder = make_openke(tmp_path)
    assert load_folder(folder, layout="openke").meta["layout"] == "openke"
    with pytest.raises(DataError, match=r"entity2id\.txt:1: expected 'name<sep>id', got '4'"):
        load_folder(folder, layout="momok")  # the OpenKE count header is not a MoMoK id-map line
    with pytest.raises(ValueError, match="unknown layout 'csv'"):
        load_folder(folder, layout="csv")


def test_load_folder_with_neither_layout(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    write(folder / "entity2id.txt", id_map_text(ENTITIES))
    with pytest.raises(DataError, match=r"no train\.txt \(MoMoK layout\) or train2id\.txt \(OpenKE layout\)") as err:
        load_folder(folder)
    check(err, folder, None)


def test_load_folder_missing_folder(tmp_path):
    with pytest.raises(DataError) as err:
        load_folder(tmp_path / "nope")
    check(err, tmp_path / "nope", None)


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------

E = len(ENTITIES)


def feats(d=3, dtype=np.float64) -> np.ndarray:
    return np.arange(E * d, dtype=dtype).reshape(E, d) / 7


@pytest.fixture
def toy(tmp_path):
    return load_momok(make_momok(tmp_path / "toy"))


def test_features_npy(tmp_path):
    x = feats()
    path = tmp_path / "img.npy"
    np.save(path, x)
    out = load_features(path, E)
    assert out.shape == (E, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, x.astype(np.float32))


def test_features_npz_single_array(tmp_path):
    x = feats(5, np.float32)
    path = tmp_path / "txt.npz"
    np.savez_compressed(path, whatever=x)
    out = load_features(path, E)
    assert out.shape == (E, 5) and out.dtype == np.float32
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("suffix", [".pth", ".pt"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int64])
def test_features_torch_tensor(tmp_path, suffix, dtype):
    x = torch.arange(E * 2).reshape(E, 2).to(dtype)
    path = tmp_path / f"img{suffix}"
    torch.save(x, path)
    out = load_features(path, E)
    assert out.shape == (E, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.arange(E * 2, dtype=np.float32).reshape(E, 2))


def test_features_torch_single_entry_dict(tmp_path):
    path = tmp_path / "img.pth"
    torch.save({"features": torch.ones(E, 4)}, path)
    out = load_features(path, E)
    assert out.shape == (E, 4) and out.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64])
def test_features_pth_holding_a_numpy_array(tmp_path, dtype):
    """MoMoK's .pth files may hold a numpy array saved with torch.save: read without unsafe unpickling."""
    path = tmp_path / "img_features.pth"
    x = (np.arange(E * 4).reshape(E, 4) % 7).astype(dtype)
    torch.save(x, path)
    out = load_features(path, E)
    assert out.dtype == np.float32 and np.array_equal(out, x.astype(np.float32))


def test_features_pth_holding_a_bool_numpy_array_is_refused(tmp_path):
    path = tmp_path / "img_features.pth"
    torch.save(np.ones((E, 2), bool), path)
    with pytest.raises(DataError, match=r"refused.*BoolDType"):
        load_features(path, E)


def test_features_torch_not_a_tensor(tmp_path):
    path = tmp_path / "img.pth"
    torch.save({"a": torch.ones(E, 4), "b": torch.ones(E, 4)}, path)
    with pytest.raises(DataError, match=r"img\.pth: expected one tensor or array, found dict") as err:
        load_features(path, E)
    check(err, path, None)


@pytest.mark.parametrize("suffix", [".npy", ".pth"])
@pytest.mark.parametrize("rows", [E - 1, E + 1])
def test_features_wrong_row_count(tmp_path, suffix, rows):
    path = tmp_path / f"f{suffix}"
    if suffix == ".npy":
        np.save(path, np.zeros((rows, 3), np.float32))
    else:
        torch.save(torch.zeros(rows, 3), path)
    with pytest.raises(DataError, match=f"has {rows} feature rows but the data set has {E} entities") as err:
        load_features(path, E)
    check(err, path, None)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_features_nan_inf_names_first_bad_row(tmp_path, bad):
    x = feats()
    x[2, 1] = bad
    x[3, 0] = np.nan
    path = tmp_path / "f.npy"
    np.save(path, x)
    with pytest.raises(DataError, match=r"NaN or inf in the features \(2 rows; first at row 2, entity id 2\)") as err:
        load_features(path, E)
    check(err, path, None)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_features_overflow_to_inf_is_caught(tmp_path):
    x = feats()
    x[1, 0] = 1e300  # finite in float64, inf once cast to float32
    path = tmp_path / "f.npy"
    np.save(path, x)
    with pytest.raises(DataError, match=r"first at row 1"):
        load_features(path, E)


def test_features_nan_in_torch_file(tmp_path):
    x = torch.zeros(E, 2)
    x[3, 1] = float("nan")
    path = tmp_path / "f.pth"
    torch.save(x, path)
    with pytest.raises(DataError, match=r"first at row 3"):
        load_features(path, E)


@pytest.mark.parametrize("arr", [np.array([["a", "b"]] * E), np.ones((E, 2), bool)], ids=["str", "bool"])
def test_features_non_numeric_dtype(tmp_path, arr):
    path = tmp_path / "f.npy"
    np.save(path, arr)
    with pytest.raises(DataError, match=re.escape(f"features must be numeric, got dtype {arr.dtype}")) as err:
        load_features(path, E)
    check(err, path, None)


@pytest.mark.parametrize("shape", [(E,), (E, 2, 2), ()])
def test_features_not_2d(tmp_path, shape):
    path = tmp_path / "f.npy"
    np.save(path, np.zeros(shape, np.float32))
    with pytest.raises(DataError, match=re.escape(f"must be a 2-D (entities, dim) matrix, got shape {shape}")) as err:
        load_features(path, E)
    check(err, path, None)


def test_features_npz_with_two_arrays(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, a=feats(), b=feats())
    with pytest.raises(DataError, match=r"f\.npz: expected one array in the \.npz, found \['a', 'b'\]") as err:
        load_features(path, E)
    check(err, path, None)


@pytest.mark.parametrize("name", ["f.csv", "f.h5", "f"])
def test_features_unsupported_suffix(tmp_path, name):
    path = write(tmp_path / name, "1,2\n")
    with pytest.raises(DataError, match=r"unsupported feature file type") as err:
        load_features(path, E)
    check(err, path, None)


def test_features_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"feature file not found") as err:
        load_features(tmp_path / "nope.npy", E)
    check(err, tmp_path / "nope.npy", None)


@pytest.mark.parametrize("name", ["f.npy", "f.npz", "f.pth"])
def test_features_garbage_file(tmp_path, name):
    path = write(tmp_path / name, b"this is not a feature file at all\x00\x01")
    with pytest.raises(DataError, match=r"cannot read features") as err:
        load_features(path, E)
    check(err, path, None)


class Payload:
    """Unpickling this creates `marker` (code execution); a safe loader must refuse it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class OpenPayload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _object_array(p):
    a = np.empty((E, 1), dtype=object)
    a[0, 0] = p
    return a


@pytest.mark.parametrize("payload", [Payload, OpenPayload])
@pytest.mark.parametrize("wrap", [lambda p: p, lambda p: {"features": p}, lambda p: [torch.zeros(E, 2), p],
                                  _object_array], ids=["bare", "dict", "list", "numpy-object-array"])
def test_features_pth_with_code_is_refused_not_run(tmp_path, payload, wrap):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(wrap(payload(marker)), path)
    assert not marker.exists()
    with pytest.raises(DataError, match=r"evil\.pth: refused: the file is a pickle") as err:
        load_features(path, E)
    check(err, path, None)
    assert not marker.exists(), "loading a feature file ran code from its pickle"
    # The payload is live: an unsafe load does run it (so the refusal above is what protected us).
    if payload is Payload and os.name == "posix":
        torch.load(path, weights_only=False)
        assert marker.exists()


def test_with_features_refuses_code_too(tmp_path, toy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(Payload(marker), path)
    with pytest.raises(DataError, match=r"refused"):
        with_features(toy, {"image": path})
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_features_object_array_pickle_is_refused(tmp_path, suffix):
    marker = tmp_path / "pwned"
    obj = np.empty((E, 1), dtype=object)
    for i in range(E):
        obj[i, 0] = Payload(marker)
    path = tmp_path / f"evil{suffix}"
    if suffix == ".npy":
        np.save(path, obj, allow_pickle=True)
    else:
        np.savez(path, x=obj)
    with pytest.raises(DataError, match=r"cannot read features: ValueError: .*allow_pickle") as err:
        load_features(path, E)
    check(err, path, None)
    assert not marker.exists()


def test_features_plain_object_npy_is_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None] * 2, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"cannot read features"):
        load_features(path, E)


def test_with_features_present_all_true_by_default(tmp_path, toy):
    np.save(tmp_path / "img.npy", feats(3))
    torch.save(torch.ones(E, 2, dtype=torch.float64), tmp_path / "txt.pth")
    data = with_features(toy, {"image": tmp_path / "img.npy", "text": str(tmp_path / "txt.pth")})
    assert data.modalities == ("image", "text")
    assert data.features["image"].shape == (E, 3) and data.features["text"].shape == (E, 2)
    assert all(data.features[m].dtype == np.float32 for m in data.modalities)
    for m in data.modalities:
        assert data.present[m].dtype == bool and data.present[m].all()
    assert data.meta["features"] == {"image": str(tmp_path / "img.npy"), "text": str(tmp_path / "txt.pth")}
    # the input is untouched and the triples carry over
    assert toy.modalities == () and "features" not in toy.meta
    np.testing.assert_array_equal(data.train, toy.train)


def test_with_features_honours_explicit_mask(tmp_path, toy):
    np.save(tmp_path / "img.npy", feats(3))
    np.save(tmp_path / "txt.npy", feats(2))
    mask = np.array([True, False, True, False])
    data = with_features(toy, {"image": tmp_path / "img.npy", "text": tmp_path / "txt.npy"}, present={"image": mask})
    np.testing.assert_array_equal(data.present["image"], mask)
    assert data.present["text"].all()
    # values of absent rows are kept as read: the loader never guesses absence from the values
    np.testing.assert_allclose(data.features["image"], feats(3).astype(np.float32))


def test_with_features_bad_mask_shape(tmp_path, toy):
    np.save(tmp_path / "img.npy", feats(3))
    with pytest.raises(ValueError, match=r"present\['image'\] must have shape \(4,\)"):
        with_features(toy, {"image": tmp_path / "img.npy"}, present={"image": np.ones(3, bool)})


def test_with_features_adds_to_existing_modalities(tmp_path, toy):
    np.save(tmp_path / "img.npy", feats(3))
    np.save(tmp_path / "txt.npy", feats(2))
    one = with_features(toy, {"image": tmp_path / "img.npy"})
    two = with_features(one, {"text": tmp_path / "txt.npy"})
    assert one.modalities == ("image",) and two.modalities == ("image", "text")
    assert set(two.meta["features"]) == {"image", "text"}


def test_with_features_keeps_features_read_only(tmp_path, toy):
    np.save(tmp_path / "img.npy", feats(3))
    data = with_features(toy, {"image": tmp_path / "img.npy"})
    with pytest.raises(ValueError, match="read-only"):
        data.features["image"][0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        data.present["image"][0] = False
    assert not data.features["image"].flags.writeable


def test_with_features_wrong_rows(tmp_path, toy):
    np.save(tmp_path / "img.npy", np.zeros((E + 2, 3), np.float32))
    with pytest.raises(DataError, match=r"img\.npy: has 6 feature rows but the data set has 4 entities"):
        with_features(toy, {"image": tmp_path / "img.npy"})


# --------------------------------------------------------------------------------------------------
# MMKG
# --------------------------------------------------------------------------------------------------

def small(**kw) -> MMKG:
    args = dict(name="s", entities=("a", "b", "c"), relations=("r", "q"),
                train=np.array([[0, 0, 1], [1, 1, 2]]), valid=np.array([[2, 0, 0]]), test=np.array([[0, 1, 2]]),
                features={"image": np.arange(6, dtype=np.float32).reshape(3, 2)},
                present={"image": np.array([True, True, False])})
    args.update(kw)
    return MMKG(**args)


def test_mmkg_basic_properties():
    d = small()
    assert d.num_entities == 3 and d.num_relations == 2 and d.modalities == ("image",)
    assert d.train.dtype == np.int64 and d.features["image"].dtype == np.float32
    assert d.split("valid") is d.valid
    with pytest.raises(KeyError):
        d.split("dev")
    assert "E=3" in repr(d)


def test_mmkg_empty_split_is_allowed_as_shape_0_3():
    d = small(valid=np.zeros((0, 3), np.int64), test=[])
    assert d.valid.shape == (0, 3) and d.test.shape == (0, 3)


@pytest.mark.parametrize("split, bad, what", [
    ("train", [[0, 0, 3]], "entity"), ("train", [[-1, 0, 1]], "entity"), ("valid", [[3, 0, 0]], "entity"),
    ("test", [[0, 2, 1]], "relation"), ("test", [[0, -1, 1]], "relation"),
])
def test_mmkg_out_of_range_ids(split, bad, what):
    with pytest.raises(ValueError, match=f"{split} has {what} ids outside"):
        small(**{split: np.array(bad)})


def test_mmkg_bad_triple_shape():
    with pytest.raises(ValueError, match=r"train must have shape \(n, 3\)"):
        small(train=np.array([[0, 1], [1, 2]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_mmkg_features_with_nan_or_inf(bad):
    x = np.zeros((3, 2), np.float32)
    x[1, 1] = bad
    with pytest.raises(ValueError, match=r"features\['image'\] contains NaN or inf"):
        small(features={"image": x})


def test_mmkg_feature_rows_must_match_entities():
    with pytest.raises(ValueError, match=r"features\['image'\] must have shape \(3, d\)"):
        small(features={"image": np.zeros((4, 2))})


@pytest.mark.parametrize("features, present", [
    ({"image": np.zeros((3, 2))}, {}),
    ({}, {"image": np.ones(3, bool)}),
    ({"image": np.zeros((3, 2))}, {"text": np.ones(3, bool)}),
])
def test_mmkg_mismatched_modality_keys(features, present):
    with pytest.raises(ValueError, match="must name the same modalities"):
        small(features=features, present=present)


def test_mmkg_arrays_are_read_only():
    d = small()
    for split in ("train", "valid", "test"):
        with pytest.raises(ValueError, match="read-only"):
            d.split(split)[0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        d.features["image"][0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        d.present["image"][2] = True
    with pytest.raises(Exception):
        d.name = "other"  # frozen dataclass


def test_mmkg_replace_returns_new_object_and_leaves_old_unchanged():
    d = small()
    fp, train = d.fingerprint(), d.train.copy()
    e = d.replace(train=np.array([[2, 1, 0]]), name="t")
    assert e is not d and e.name == "t" and d.name == "s"
    np.testing.assert_array_equal(d.train, train)
    np.testing.assert_array_equal(e.train, [[2, 1, 0]])
    assert d.fingerprint() == fp != e.fingerprint()
    assert e.features["image"] is d.features["image"]  # untouched fields are shared, still read-only
    with pytest.raises(ValueError):
        d.replace(valid=np.array([[9, 0, 0]]))  # replace validates too


def test_mmkg_fingerprint_is_deterministic_and_ignores_name_and_meta():
    assert small().fingerprint() == small().fingerprint()
    assert small(name="x", meta={"a": 1}).fingerprint() == small().fingerprint()
    assert len(small().fingerprint()) == 16


def test_mmkg_fingerprint_changes_with_one_triple():
    d = small()
    t = d.train.copy()
    t[1, 2] = 0
    assert d.replace(train=t).fingerprint() != d.fingerprint()
    v = d.test.copy()
    v[0, 1] = 0
    assert d.replace(test=v).fingerprint() != d.fingerprint()
    # the same triples moved to another split are a different data set
    assert d.replace(valid=d.test, test=d.valid).fingerprint() != d.fingerprint()


def test_mmkg_fingerprint_changes_with_one_feature_value_or_mask():
    d = small()
    x = d.features["image"].copy()
    x[2, 1] += 1e-3
    assert d.replace(features={"image": x}).fingerprint() != d.fingerprint()
    p = d.present["image"].copy()
    p[2] = True
    assert d.replace(present={"image": p}).fingerprint() != d.fingerprint()
    assert d.replace(features={}, present={}).fingerprint() != d.fingerprint()


def test_mmkg_fingerprint_changes_with_names():
    d = small()
    assert d.replace(entities=("a", "b", "z")).fingerprint() != d.fingerprint()
    assert d.replace(relations=("q", "r")).fingerprint() != d.fingerprint()


def test_mmkg_summary_mentions_counts_and_coverage():
    text = small().summary()
    assert "3 entities" in text and "2 relations" in text
    assert "train 2" in text and "valid 1" in text and "test 1" in text
    assert "image: d=2, present for 2 (66.7%) of entities" in text
    bare = small(features={}, present={}).summary()
    assert "no modality features" in bare


def test_mmkg_summary_of_loaded_data(tmp_path):
    data = load_momok(make_momok(tmp_path / "toy"))
    assert data.summary().splitlines()[0] == "toy: 4 entities, 2 relations"
