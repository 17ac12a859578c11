"""Data sets a grid can name: built-in synthetic ones by key, or a folder on disk by path.

A grid entry is either a string (a key of `DATASETS`, or a path to a folder in the MoMoK or
OpenKE layout) or a table `{path = "...", name = "...", layout = "auto", features = {image = "..."}}`.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from mmkgbench.data import MMKG
from mmkgbench.loaders import load_folder, with_features
from mmkgbench.registry import normalise
from mmkgbench.synthetic import synthetic_mmkg

DATASETS = {
    # The embedded default: 1,000 entities, 16 relations, 8,159 / 1,020 / 1,020 triples, image
    # (signal 0.9) and text (signal 0.6) features. Trains in seconds per model on 2 CPU cores.
    "synthetic": partial(synthetic_mmkg, name="synthetic"),
    # Sparse variant of the same world: 2,662 train triples (about 5 per entity) and more informative
    # features (image 0.95, text 0.8): structure alone is not enough (tests/test_synthetic.py).
    "synthetic_sparse": partial(synthetic_mmkg, num_triples=4000, signal={"image": 0.95, "text": 0.8},
                                name="synthetic_sparse"),
    # Tiny, for smoke tests: 60 entities, 3 relations, 181 / 22 / 22 triples.
    "synthetic_tiny": partial(synthetic_mmkg, num_entities=60, num_relations=3, num_triples=400,
                              latent_dim=6, num_types=3, modalities={"image": 8, "text": 4},
                              name="synthetic_tiny"),
}


def dataset_label(spec) -> str:
    """A short, stable name for a grid's data set entry (used in results and tables)."""
    if isinstance(spec, dict):
        return spec.get("name") or Path(spec["path"]).name
    key = normalise(str(spec))
    return key if key in DATASETS else Path(spec).name


def load_dataset(spec, base: Path | None = None) -> MMKG:
    """The MMKG a grid entry names. Relative paths resolve against `base` (the grid file's folder)."""
    if isinstance(spec, str) and normalise(spec) in DATASETS:
        return DATASETS[normalise(spec)]()
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict) or "path" not in spec:
        raise ValueError(f"a data set is a registered name {sorted(DATASETS)} or a path/table with 'path', "
                         f"got {spec!r}")
    unknown = set(spec) - {"path", "name", "layout", "features"}
    if unknown:
        raise ValueError(f"data set table {spec!r}: unknown keys {sorted(unknown)} "
                         "(valid: path, name, layout, features)")

    def resolve(p):
        p = Path(p).expanduser()
        return p if p.is_absolute() or base is None else (base / p)

    folder = resolve(spec["path"])
    if not folder.is_dir():
        raise ValueError(f"unknown data set {spec['path']!r}: not a registered name {sorted(DATASETS)} "
                         f"and not a folder ({folder})")
    data = load_folder(folder, name=spec.get("name") or folder.name, layout=spec.get("layout", "auto"))
    if spec.get("features"):
        data = with_features(data, {m: resolve(p) for m, p in spec["features"].items()})
    return data
