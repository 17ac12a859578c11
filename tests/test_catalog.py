"""The benchmark catalog: verified fetch into the cache, every failure mode leaving a clean cache."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from conftest import SHARED, needs_shared
from mmkgbench import catalog
from mmkgbench.cli import main
from mmkgbench.data import DataError
from mmkgbench.datasets import dataset_label, load_dataset

def leftovers(home: Path) -> list[Path]:
    d = home / "datasets"
    return sorted(d.iterdir()) if d.is_dir() else []


def test_names_and_aliases():
    assert catalog.get_benchmark("kuai16k") is catalog.get_benchmark("KVC16K")
    assert catalog.get_benchmark("mkg-w").name == "MKG-W"
    assert dataset_label("kuai16k") == "KVC16K"
    with pytest.raises(KeyError, match="choose from"):
        catalog.get_benchmark("FB15K-237")


@needs_shared
@pytest.mark.parametrize("name", ["DB15K", "MKG-W", "MKG-Y", "KVC16K"])
def test_fetch_from_mirror_verifies_and_loads(home, name):
    folder = catalog.fetch(name, mirror=str(SHARED), log=lambda *a: None)
    assert catalog.is_fetched(name) and (folder / "VERIFIED.json").is_file()
    data = load_dataset(name)
    b = catalog.get_benchmark(name)
    assert (data.num_entities, data.num_relations, len(data.train), len(data.valid), len(data.test)) == \
           (b.entities, b.relations, b.train, b.valid, b.test)
    assert catalog.fetch(name, mirror="/nonexistent", log=lambda *a: None) == folder   # cached: no refetch


@needs_shared
def test_fetch_from_a_base_url(home):
    catalog.fetch("MKG-Y", mirror=SHARED.resolve().as_uri(), log=lambda *a: None)
    assert catalog.is_fetched("MKG-Y")


@needs_shared
def test_checksum_mismatch_is_refused_and_nothing_is_stored(home, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(SHARED / "MKG-Y", mirror / "MKG-Y")
    with open(mirror / "MKG-Y" / "valid.txt", "a") as fh:
        fh.write("Gilles_Mbang_Ondo wasBornIn Libreville .\n")
    with pytest.raises(catalog.FetchError, match=r"valid\.txt: checksum mismatch"):
        catalog.fetch("MKG-Y", mirror=str(mirror), log=lambda *a: None)
    assert leftovers(home) == [] and not catalog.is_fetched("MKG-Y")


def test_missing_file_is_a_clear_error_and_leaves_no_trace(home, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(catalog.FetchError, match=r"MKG-Y/entity2id\.txt: file not found in the mirror"):
        catalog.fetch("MKG-Y", mirror=str(tmp_path / "empty"), log=lambda *a: None)
    assert leftovers(home) == []


class _Broken(io.RawIOBase):
    """A response that delivers some bytes, then the connection drops."""

    headers = {"Content-Length": "1000000"}

    def __init__(self):
        self.sent = False

    def readinto(self, b):
        if self.sent:
            raise ConnectionResetError("connection reset by peer")
        self.sent = True
        b[:5] = b"abcde"
        return 5

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_interrupted_download_leaves_a_clean_cache(home, monkeypatch):
    monkeypatch.setattr(catalog.urllib.request, "urlopen", lambda url, timeout: _Broken())
    with pytest.raises(catalog.FetchError, match=r"entity2id\.txt: download failed: ConnectionResetError"):
        catalog.fetch("DB15K", mirror="https://example.invalid/datasets", log=lambda *a: None)
    assert leftovers(home) == []


def test_unfetched_benchmark_says_how_to_fetch(home):
    with pytest.raises(ValueError, match="run_bench.py data fetch MKG-W"):
        load_dataset("MKG-W")


@needs_shared
def test_on_demand_fetch_and_tampered_cache(home):
    data = load_dataset("mkg_y", fetch_missing=True, mirror=str(SHARED))
    assert data.name == "MKG-Y"
    test_file = catalog.cache_dir("MKG-Y") / "test.txt"
    lines = test_file.read_text(encoding="utf-8").splitlines(keepends=True)
    test_file.write_text("".join(lines[:-1]), encoding="utf-8")
    with pytest.raises(DataError, match="differ from the published"):
        load_dataset("MKG-Y")


@needs_shared
def test_cli_data_fetch_and_status(home, capsys):
    assert main(["data", "fetch", "MKG-Y", "--mirror", str(SHARED)]) == 0
    assert main(["data", "status"]) == 0
    out = capsys.readouterr().out
    assert "MKG-Y   verified" in out and "MKG-W   not fetched" in out
    assert main(["data", "fetch", "MKG-W", "--mirror", str(home / "nowhere")]) == 2
    assert "file not found in the mirror" in capsys.readouterr().err


@needs_shared
def test_db15k_fetch_includes_its_numeric_literals(home):
    folder = catalog.fetch("DB15K", mirror=str(SHARED), log=lambda *a: None)
    extra = catalog.get_benchmark("DB15K").extras[0]
    assert (folder / extra.path).is_file() and catalog.sha256_of(folder / extra.path) == extra.sha256
    assert extra.url.startswith("https://raw.githubusercontent.com/sapkotaruz11/Literal_KGs/")
    data = load_dataset({"benchmark": "DB15K", "features": {"numeric": "literals"}})
    assert data.features["numeric"].shape == (12842, 225)


@needs_shared
def test_a_copy_that_predates_an_extra_file_is_fetched_again(home, tmp_path):
    folder = catalog.fetch("DB15K", mirror=str(SHARED), log=lambda *a: None)
    marker = folder / "VERIFIED.json"
    old = json.loads(marker.read_text())
    old["sha256"] = catalog.get_benchmark("DB15K").sha256          # as written before literals were listed
    marker.write_text(json.dumps(old))
    (folder / "literals" / "DB15k_Numeric_triples_processed.txt").unlink()
    assert not catalog.is_fetched("DB15K")
    catalog.fetch("DB15K", mirror=str(SHARED), log=lambda *a: None)
    assert catalog.is_fetched("DB15K") and leftovers(home) == [folder]


@needs_shared
def test_missing_extra_file_in_the_mirror_leaves_a_clean_cache(home, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(SHARED / "DB15K", mirror / "DB15K", ignore=shutil.ignore_patterns("literals", "openke"))
    with pytest.raises(catalog.FetchError, match=r"DB15K/literals/DB15k_Numeric_triples_processed\.txt: file not "
                                                 r"found in the mirror"):
        catalog.fetch("DB15K", mirror=str(mirror), log=lambda *a: None)
    assert leftovers(home) == [] and not catalog.is_fetched("DB15K")


def test_literals_of_a_benchmark_without_them_is_refused(home):
    from mmkgbench.datasets import add_features
    from mmkgbench.synthetic import synthetic_mmkg
    with pytest.raises(ValueError, match="numeric literals exist for DB15K only"):
        add_features(synthetic_mmkg(num_entities=20, num_relations=2, num_triples=60), {"numeric": "literals"})
