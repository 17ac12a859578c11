"""The four standard MMKGC benchmarks: expected sizes, verified files, and a download cache.

Triples come from the public zjukg/MoMoK repository (`datasets/<folder>/`, pinned to one commit)
in the MoMoK layout. Every file has a SHA-256; `fetch` downloads (or copies from a mirror folder),
verifies, and only then moves the files into the cache, so a loader never reads a partial or
unverified file. The cache is `$MMKGBENCH_HOME/datasets/<NAME>/` (default
`~/.cache/mmkgbench`, or `$XDG_CACHE_HOME/mmkgbench`); a `VERIFIED.json` written last marks a
complete copy.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from mmkgbench.registry import normalise

MOMOK_COMMIT = "99c2df114d48c79708ea0608644b685183d81bd9"
BASE_URL = f"https://raw.githubusercontent.com/zjukg/MoMoK/{MOMOK_COMMIT}/datasets"
FILES = ("entity2id.txt", "relation2id.txt", "train.txt", "valid.txt", "test.txt")
LITERALS_COMMIT = "4ba50f2a57f408fe45c0bac542cd2838ef7c2ae6"


@dataclass(frozen=True)
class Extra:
    """A side file of a benchmark that lives elsewhere (e.g. numeric literals): stored at `path` in
    the benchmark's cache folder, downloaded from `url`, or from `<mirror>/<folder>/<path>`."""

    path: str
    url: str
    sha256: str


@dataclass(frozen=True)
class Benchmark:
    """A published benchmark: its folder in the source, line counts, and the SHA-256 of each file."""

    name: str
    folder: str
    entities: int
    relations: int
    train: int          # lines (DB15K valid and KVC16K hold duplicate lines; see the data audit)
    valid: int
    test: int
    sha256: dict
    citation: str
    extras: tuple = ()

    def expected(self) -> dict:
        """Every file of a complete copy -> its SHA-256 (triples and extras)."""
        return {**self.sha256, **{e.path: e.sha256 for e in self.extras}}


CATALOG: dict[str, Benchmark] = {
    "db15k": Benchmark("DB15K", "DB15K", 12842, 279, 79222, 9904, 9902, {
        "entity2id.txt": "e1e257f5850d0a3440a7020dc5c8af77664a60b69fa1869c45c2f20b8024020e",
        "relation2id.txt": "bb002b2069d740a545dfa526c31bcd487aff0a5203db786f278e363c714f24ea",
        "train.txt": "0a9e724d71372f23432e5370e62bd8f94f6d37882be955deca460014d3f6e23c",
        "valid.txt": "73e936ee24e11bd0fd31630a573ea3801da930c7fb6a7397ce0fed47f6f7f133",
        "test.txt": "6c437beaaa65de21f910b447d0c02a5b3aac75ba91de9017eb72cf8495a2260f"},
        "Liu et al. 2019 (MMKG, ESWC), split by Xu et al. 2022 (MMRNS)",
        # Numeric literals (225 attributes, 10,947 entities) as used by literal-aware KGE work.
        (Extra("literals/DB15k_Numeric_triples_processed.txt",
               f"https://raw.githubusercontent.com/sapkotaruz11/Literal_KGs/{LITERALS_COMMIT}/DB15k/"
               "DB15k_Numeric_triples_processed.txt",
               "6338b867df23ae3b14250cacb13e1416a6594095872705940eab864526370d52"),)),
    "mkg_w": Benchmark("MKG-W", "MKG-W", 15000, 169, 34196, 4276, 4274, {
        "entity2id.txt": "805e2e9a9a8fff032e2caa17233d8ceaaf2356221c66d6ad3c17d31292d360f5",
        "relation2id.txt": "7035491ec0b2865e1220ec9491aafbcf3ff3d6c797816a0129735e0be9f2ea29",
        "train.txt": "66187e7d882a654915d8048897916ca8c5798e9c7df3a5b8ba8fab5d231cafcd",
        "valid.txt": "6840322036c394af6ab33be5c4f988edafbd48d61fdc9e3b9b485c42e6f5a2da",
        "test.txt": "f0cfb7b5091d8601d0298889533e4f128237a700207b5739d27c0d81152f8245"},
        "Xu et al. 2022 (MMRNS, ACM MM), from OpenEA D-W-15K"),
    "mkg_y": Benchmark("MKG-Y", "MKG-Y", 15000, 28, 21310, 2665, 2663, {
        "entity2id.txt": "ca7c45833c5454545e4ffbeb1e7dde6c5ff2548d6688c91ad44effc9d1095d06",
        "relation2id.txt": "584d45c33a0d1003a28d08ee17507e8da21f3809491f1d511549a0287bdf8dcb",
        "train.txt": "3be3e886268cade513b35429d7aa5e145f51692c2f2bedbd7ff7d60a7a6c263e",
        "valid.txt": "bcc01dbedd4c25f87481ca47b00724a1de1808ec098d80e27fec595c13c8bae4",
        "test.txt": "618b1a1ba2a1880e9cf0f56ae920b589df59a859442d4f1ff32a4e632c25bc4b"},
        "Xu et al. 2022 (MMRNS, ACM MM), from OpenEA D-Y-15K"),
    "kvc16k": Benchmark("KVC16K", "Kuai16K", 16015, 4, 180190, 22523, 22525, {
        "entity2id.txt": "7f65e608f23480e5dc0cb81230f2a948e1f42ff2ffd71b3328b0e9978b63472d",
        "relation2id.txt": "f64081447d516d225669e1c018ee4377ad966243eff795952ae9cfb823511aa3",
        "train.txt": "ebb91ee9d8a90cdfb58e06353ae2bf22f2086a477cd863a3945cfc289ea366aa",
        "valid.txt": "b7f07994c9f27d604e4f50149dbff63bea54cdf560e31507a8d2dfa4a36d56db",
        "test.txt": "0a7ec0e44221348858af5bfd4fa9775bd86f5b5395c90e306133b3758efc7d4a"},
        "Zhang et al. 2024 (NativE, SIGIR), Kuaishou video KG; folder Kuai16K"),
}
ALIASES = {"kuai16k": "kvc16k"}


class FetchError(RuntimeError):
    """A download or verification failed; the message names the file, its source and the problem."""


def get_benchmark(name: str) -> Benchmark:
    key = ALIASES.get(normalise(name), normalise(name))
    if key not in CATALOG:
        raise KeyError(f"unknown benchmark {name!r}; choose from {[b.name for b in CATALOG.values()]}")
    return CATALOG[key]


def is_benchmark(name) -> bool:
    return isinstance(name, str) and ALIASES.get(normalise(name), normalise(name)) in CATALOG


def home() -> Path:
    """$MMKGBENCH_HOME, else $XDG_CACHE_HOME/mmkgbench, else ~/.cache/mmkgbench."""
    if os.environ.get("MMKGBENCH_HOME"):
        return Path(os.environ["MMKGBENCH_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mmkgbench"


def cache_dir(name: str) -> Path:
    return home() / "datasets" / get_benchmark(name).name


def is_fetched(name: str) -> bool:
    """True when the cache holds a complete, verified copy of every file the catalog lists today."""
    marker = cache_dir(name) / "VERIFIED.json"
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text()).get("sha256")
    except (OSError, ValueError):
        return False
    return recorded == get_benchmark(name).expected()   # an older copy without a newer extra file is refetched


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _copy_from(source: str, dest: Path, hint: str = "") -> None:
    """Copy a local path or download a URL (http, https, file) to `dest`.

    hint: appended to the message of a failed download (what to do without network access)."""
    if "://" not in source:
        if not Path(source).is_file():
            raise FetchError(f"{source}: file not found in the mirror")
        shutil.copyfile(source, dest)
        return
    try:
        with urllib.request.urlopen(source, timeout=60) as resp, open(dest, "wb") as out:
            expected = resp.headers.get("Content-Length")
            shutil.copyfileobj(resp, out, 1 << 20)
        if expected is not None and dest.stat().st_size != int(expected):
            raise FetchError(f"{source}: download interrupted ({dest.stat().st_size} of {expected} bytes){hint}")
    except FetchError:
        raise
    except Exception as err:  # network errors (URLError, timeouts, OSError), HTTP 404, a connection closed mid-file
        raise FetchError(f"{source}: download failed: {type(err).__name__}: {err}{hint}") from None


def fetch(name: str, mirror: str | None = None, log=print) -> Path:
    """Download and verify one benchmark into the cache; returns its folder.

    mirror: a local folder holding `<folder>/<file>` (e.g. ../shared/datasets) or a base URL used
    instead of the MoMoK repository. Files go to a temporary folder first; after every checksum
    matched, the folder is renamed into place. Any failure leaves the cache as it was.
    """
    bench = get_benchmark(name)
    final = cache_dir(name)
    if is_fetched(name):
        log(f"{bench.name}: already in {final}")
        return final
    base = mirror if mirror is not None else BASE_URL
    is_url = "://" in base
    # Machines without network access (clusters, CI) are common: a failed download says how to
    # fetch from a copy instead, in the layout the mirror must have.
    hint = (f"; no network? copy from a local folder or another URL with `run_bench.py data fetch {bench.name} "
            f"--mirror DIR_OR_URL` (a folder holding {bench.folder}/{FILES[0]}, {bench.folder}/{FILES[2]}, ...)")
    tmp = final.parent / f".tmp-{bench.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        expected = bench.expected()
        for fname in expected:
            extra = next((e for e in bench.extras if e.path == fname), None)
            if mirror is None and extra is not None:
                source = extra.url
            elif is_url:
                source = f"{base.rstrip('/')}/{bench.folder}/{fname}"
            else:
                source = str(Path(base) / bench.folder / fname)
            log(f"{bench.name}: {fname} <- {source}")
            (tmp / fname).parent.mkdir(parents=True, exist_ok=True)
            _copy_from(source, tmp / fname, hint=hint)
            got = sha256_of(tmp / fname)
            if got != expected[fname]:
                raise FetchError(f"{source}: checksum mismatch (SHA-256 {got}, expected {expected[fname]}); "
                                 "the file was not stored")
        (tmp / "VERIFIED.json").write_text(json.dumps({"benchmark": bench.name, "source": base,
                                                       "sha256": expected}, indent=2) + "\n")
        if final.exists():            # an unverified leftover (no VERIFIED.json): replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"{bench.name}: verified and stored in {final}")
    return final
