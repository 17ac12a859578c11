"""Loaders for the two on-disk layouts of MMKGC benchmarks, and for feature files.

* MoMoK layout (zjukg/MoMoK `datasets/<DS>/`): `entity2id.txt` and `relation2id.txt` hold
  `name<sep>id` lines without a header (sep = space or TAB); `train/valid/test.txt` hold labelled
  triples `head relation tail .` (the final dot optional), separated by spaces or TABs.
* OpenKE/NATIVE layout (zjukg/NATIVE `benchmarks/<DS>/`): every file starts with a count line;
  `entity2id.txt`/`relation2id.txt` hold `name<sep>id`; `train2id/valid2id/test2id.txt` hold ids in
  **h t r** order.

Feature files are `.pth/.pt` (read with `torch.load(weights_only=True)`: data, never code),
`.npy` and `.npz` (read with `allow_pickle=False`), each an (E, d) matrix whose row i is entity id i.
Every problem raises `DataError` naming the file, the line and what is wrong.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmkgbench.data import SPLITS, DataError, MMKG


def numbered_lines(path: Path):
    """(line number, text without the newline) for every line of a UTF-8 file."""
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")   # a leading byte-order mark is not part of a name
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 ({err.reason})", line) from None
    # Split on "\n" only: str.splitlines() also breaks at \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029,
    # which may occur inside names, and would shift every later line number.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines, 1):
        yield i, line.rstrip("\r")


def _read_count(path: Path, line_no: int, text: str) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        raise DataError(path, f"expected a count header, got {text.strip()[:60]!r}", line_no) from None
    if n < 0:
        raise DataError(path, f"negative count header {n}", line_no)
    return n


def read_id_map(path: Path, header: bool = False) -> tuple[str, ...]:
    """Names ordered by id from a `name<sep>id` file. Ids must be unique and exactly 0..n-1."""
    path = Path(path)
    names: dict[int, str] = {}
    seen: dict[str, int] = {}
    expected = None
    for i, line in numbered_lines(path):
        if header and i == 1:
            expected = _read_count(path, i, line)
            continue
        if not line.strip():
            continue
        parts = line.rsplit("\t", 1) if "\t" in line else line.rsplit(None, 1)
        if len(parts) != 2 or not parts[0].strip():
            raise DataError(path, f"expected 'name<sep>id', got {line[:80]!r}", i)
        name, raw_id = parts[0].strip(), parts[1].strip()
        try:
            idx = int(raw_id)
        except ValueError:
            raise DataError(path, f"id {raw_id!r} is not an integer", i) from None
        if idx in names:
            raise DataError(path, f"duplicate id {idx} (also used for {names[idx]!r})", i)
        if name in seen:
            raise DataError(path, f"duplicate name {name!r} (already id {seen[name]})", i)
        names[idx], seen[name] = name, idx
    if not names:
        raise DataError(path, "no entries")
    if sorted(names) != list(range(len(names))):
        missing = sorted(set(range(len(names))) - set(names))[:5]
        raise DataError(path, f"ids are not contiguous 0..{len(names) - 1} (missing e.g. {missing})")
    if expected is not None and expected != len(names):
        raise DataError(path, f"count header says {expected} but the file has {len(names)} entries", 1)
    return tuple(names[i] for i in range(len(names)))


def read_label_triples(path: Path, entity_ids: dict[str, int], relation_ids: dict[str, int]) -> np.ndarray:
    """Labelled triples `h r t [.]` -> int64 (n, 3) as (h, r, t)."""
    path = Path(path)
    out = []
    for i, line in numbered_lines(path):
        tok = line.split()
        if not tok:
            continue
        if "\t" in line:  # TAB-separated, as the id maps may be: then names may contain spaces
            tab = [x.strip() for x in line.strip().split("\t")]
            if tab[-1] == ".":
                tab = tab[:-1]
            elif tab[-1].endswith(" ."):
                tab[-1] = tab[-1][:-2].rstrip()
            if len(tab) == 3 and all(tab):
                tok = tab
        if len(tok) == 4 and tok[3] == ".":
            tok = tok[:3]
        if len(tok) != 3:
            raise DataError(path, f"expected 'head relation tail [.]', got {len(tok)} fields: {line[:80]!r}", i)
        h, r, t = tok
        for what, label, ids in (("entity", h, entity_ids), ("relation", r, relation_ids), ("entity", t, entity_ids)):
            if label not in ids:
                raise DataError(path, f"unknown {what} {label!r} (not in the {what}2id file)", i)
        out.append((entity_ids[h], relation_ids[r], entity_ids[t]))
    if not out:
        raise DataError(path, "empty split: no triples")
    return np.array(out, dtype=np.int64)


def read_id_triples(path: Path, num_entities: int, num_relations: int) -> np.ndarray:
    """OpenKE `h t r` id triples after a count header -> int64 (n, 3) as (h, r, t)."""
    path = Path(path)
    rows, expected = [], None
    for i, line in numbered_lines(path):
        if i == 1:
            expected = _read_count(path, i, line)
            continue
        tok = line.split()
        if not tok:
            continue
        if len(tok) != 3:
            raise DataError(path, f"expected 'h t r' ids, got {len(tok)} fields: {line[:80]!r}", i)
        try:
            h, t, r = (int(x) for x in tok)
        except ValueError:
            raise DataError(path, f"non-integer id in {line[:80]!r}", i) from None
        if not (0 <= h < num_entities and 0 <= t < num_entities):
            raise DataError(path, f"entity id out of range [0, {num_entities}) in {line[:80]!r}", i)
        if not 0 <= r < num_relations:
            raise DataError(path, f"relation id {r} out of range [0, {num_relations})", i)
        rows.append((h, r, t))
    if expected is None:
        raise DataError(path, "empty file: missing the count header")
    if expected != len(rows):
        raise DataError(path, f"count header says {expected} but the file has {len(rows)} triples", 1)
    if not rows:
        raise DataError(path, "empty split: no triples")
    return np.array(rows, dtype=np.int64)


def load_momok(folder, name: str | None = None) -> MMKG:
    """A data set in the MoMoK layout (structure only; add features with `with_features`)."""
    folder = Path(folder)
    entities = read_id_map(folder / "entity2id.txt")
    relations = read_id_map(folder / "relation2id.txt")
    eid = {n: i for i, n in enumerate(entities)}
    rid = {n: i for i, n in enumerate(relations)}
    splits = {s: read_label_triples(folder / f"{s}.txt", eid, rid) for s in SPLITS}
    return MMKG(name=name or folder.name, entities=entities, relations=relations, **splits,
                meta={"path": str(folder), "layout": "momok"})


def load_openke(folder, name: str | None = None) -> MMKG:
    """A data set in the OpenKE/NATIVE layout (structure only)."""
    folder = Path(folder)
    entities = read_id_map(folder / "entity2id.txt", header=True)
    relations = read_id_map(folder / "relation2id.txt", header=True)
    splits = {s: read_id_triples(folder / f"{s}2id.txt", len(entities), len(relations)) for s in SPLITS}
    return MMKG(name=name or folder.name, entities=entities, relations=relations, **splits,
                meta={"path": str(folder), "layout": "openke"})


LAYOUTS = ("auto", "momok", "openke")     # what `load_folder` (and a grid's `layout` key) accepts


def load_folder(folder, name: str | None = None, layout: str = "auto") -> MMKG:
    """Load a data set folder, detecting the layout from its file names unless `layout` is given."""
    folder = Path(folder)
    if layout == "auto":
        if (folder / "train.txt").is_file():
            layout = "momok"
        elif (folder / "train2id.txt").is_file():
            layout = "openke"
        else:
            raise DataError(folder, "no train.txt (MoMoK layout) or train2id.txt (OpenKE layout) in this folder")
    loaders = {"momok": load_momok, "openke": load_openke}
    if layout not in loaders:
        raise ValueError(f"unknown layout {layout!r}; choose from {list(LAYOUTS)}")
    return loaders[layout](folder, name=name)


def _numpy_array_globals() -> list:
    """What unpickling a plain numpy array needs (MoMoK's .pth files may hold one, saved by torch.save).

    Only the array constructor and dtype are allowed: an object array's elements would need further
    globals, which `weights_only` still refuses, so code in a file is never run.
    """
    core = getattr(np, "_core", None) or np.core
    numeric = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
               np.uint32, np.uint64]
    dtype_classes = [type(np.dtype(t)) for t in numeric]          # numpy >= 1.25 pickles dtypes by class
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *dict.fromkeys(dtype_classes)]


def load_features(path, num_entities: int) -> np.ndarray:
    """An (E, d) float32 feature matrix from .pth/.pt/.npy/.npz; row i = entity id i."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "feature file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".pth", ".pt"):
            import torch
            with torch.serialization.safe_globals(_numpy_array_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and len(obj) == 1:
                obj = next(iter(obj.values()))
            if isinstance(obj, torch.Tensor):
                x = (obj.float() if obj.dtype in (torch.float16, torch.bfloat16) else obj).detach().numpy()
            elif isinstance(obj, np.ndarray):
                x = obj
            else:
                raise DataError(path, f"expected one tensor or array, found {type(obj).__name__}")
        elif suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise DataError(path, f"expected one array in the .npz, found {z.files}")
                x = z[z.files[0]]
        else:
            raise DataError(path, f"unsupported feature file type {suffix!r} (use .pth, .pt, .npy or .npz)")
    except DataError:
        raise
    except Exception as err:  # pickle refused, truncated file, ...: report it as bad data
        text = str(err)
        if "Weights only load failed" in text:   # keep torch's one informative line, not its advice
            why = next((ln.strip() for ln in text.splitlines() if "global" in ln.lower() or "but got" in ln), "")
            raise DataError(path, "refused: the file is a pickle that holds more than tensors or numeric arrays "
                                  f"(torch.load(weights_only=True): {why[:200]})") from None
        raise DataError(path, f"cannot read features: {type(err).__name__}: {text[:300]}") from None
    kind = np.asarray(x).dtype.kind
    if kind not in "iuf":                      # bool, complex, object, strings: not features
        raise DataError(path, f"features must be numeric, got dtype {np.asarray(x).dtype}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise DataError(path, f"features must be a 2-D (entities, dim) matrix, got shape {x.shape}")
    if x.shape[0] != num_entities:
        raise DataError(path, f"has {x.shape[0]} feature rows but the data set has {num_entities} entities")
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise DataError(path, f"NaN or inf in the features ({int(bad.any(1).sum())} rows; first at row {row}, "
                              f"entity id {row})")
    return x


def with_features(data: MMKG, files: dict[str, str | Path], present: dict[str, np.ndarray] | None = None) -> MMKG:
    """`data` with modality features read from `files` (modality -> path).

    Every entity counts as having each modality unless `present` (modality -> bool (E,)) says
    otherwise; a loader never guesses absence from the values.
    """
    feats = dict(data.features)
    pres = dict(data.present)
    for m, p in files.items():
        feats[m] = load_features(p, data.num_entities)
        pres[m] = np.ones(data.num_entities, bool) if present is None or m not in present else present[m]
    meta = {**data.meta, "features": {**data.meta.get("features", {}), **{m: str(p) for m, p in files.items()}}}
    return data.replace(features=feats, present=pres, meta=meta)
