"""Data sets a grid can name: built-in synthetic ones, the standard benchmarks, or a folder on disk.

A grid entry is either a string (a key of `DATASETS`; a benchmark name of `mmkgbench.catalog`:
DB15K, MKG-W, MKG-Y, KVC16K, read from the verified download cache; or a path to a folder in the
MoMoK or OpenKE layout) or a table `{path = "...", name = "...", layout = "auto", features = {...}}`.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from mmkgbench import catalog
from mmkgbench.audit import SPLIT_POLICIES, apply_split_policy, split_label
from mmkgbench.data import MMKG, DataError
from mmkgbench.features import FEATURE_TRANSFORMS
from mmkgbench.loaders import load_folder, load_momok
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
    # Small and sparse, for the default comparison (scenarios/default.toml): 400 entities, 8 relations,
    # about 2.5 training triples per entity, informative features (image 0.95, text 0.8), so that
    # features matter and every model trains in seconds on a CPU.
    "synthetic_small": partial(synthetic_mmkg, num_entities=400, num_relations=8, num_triples=2000,
                               modalities={"image": 32, "text": 16}, signal={"image": 0.95, "text": 0.8},
                               name="synthetic_small"),
    # Tiny, for smoke tests: 60 entities, 3 relations, 181 / 22 / 22 triples.
    "synthetic_tiny": partial(synthetic_mmkg, num_entities=60, num_relations=3, num_triples=400,
                              latent_dim=6, num_types=3, modalities={"image": 8, "text": 4},
                              name="synthetic_tiny"),
}


def encoder_of(source) -> str | None:
    """The text encoder a features source `"encoded"` / `"encoded:<encoder>"` names; None for other sources."""
    from mmkgbench.text import DEFAULT_ENCODER
    source = str(source)
    if source != "encoded" and not source.startswith("encoded:"):
        return None
    return source.partition(":")[2] or DEFAULT_ENCODER


def feature_suffix(spec: dict, resolve=lambda p: Path(p).expanduser()) -> str:
    """How a table's features show in the data set's name, so that runs on the same triples with
    different features never share a name in results: `+image+text@momok`, `+numeric+text~e5-small`."""
    feats, parts = spec.get("features"), []
    if isinstance(feats, str):
        from mmkgbench.features import find_feature_files
        bench = catalog.get_benchmark(spec["benchmark"]).name if "benchmark" in spec else None
        try:
            parts = sorted(find_feature_files(resolve(feats), bench))
        except DataError:
            parts = ["features"]          # the error itself is raised when the data set is loaded
    elif isinstance(feats, dict):
        for m, source in sorted(feats.items()):
            encoder = encoder_of(source)
            parts.append(f"{m}~{encoder}" if encoder else m)
    suffix = "".join(f"+{p}" for p in parts)
    transform = spec.get("transform", "none")
    return suffix + (f"@{transform}" if parts and transform != "none" else "")


def dataset_label(spec) -> str:
    """A short, stable name for a grid's data set entry (used in results and tables)."""
    if isinstance(spec, dict):
        base = spec.get("name") or ((catalog.get_benchmark(spec["benchmark"]).name if "benchmark" in spec
                                     else Path(spec["path"]).name) + feature_suffix(spec))
        splits = spec.get("splits", "as_published")
        return split_label(base, splits) if splits in SPLIT_POLICIES else base   # load_dataset rejects the rest
    key = normalise(str(spec))
    if key in DATASETS:
        return key
    return catalog.get_benchmark(spec).name if catalog.is_benchmark(spec) else Path(spec).name


def load_benchmark(name: str, fetch_missing: bool = False, mirror: str | None = None) -> MMKG:
    """A standard benchmark from the verified cache (fetched first if allowed), checked against its counts."""
    bench = catalog.get_benchmark(name)
    if not catalog.is_fetched(name):
        if not fetch_missing:
            raise ValueError(f"benchmark {bench.name} is not in the cache ({catalog.cache_dir(name)}); run "
                             f"`python3 run_bench.py data fetch {bench.name}` (add --mirror DIR_OR_URL to copy it "
                             "from elsewhere), or `run --fetch`")
        catalog.fetch(name, mirror=mirror)
    folder = catalog.cache_dir(name)
    data = load_momok(folder, name=bench.name)
    got = (data.num_entities, data.num_relations, len(data.train), len(data.valid), len(data.test))
    want = (bench.entities, bench.relations, bench.train, bench.valid, bench.test)
    if got != want:
        raise DataError(folder, f"counts {got} differ from the published {want} (entities, relations, train, valid, "
                                "test); the cache was modified after verification")
    return data.replace(meta={**data.meta, "benchmark": bench.name, "source": catalog.BASE_URL})


TABLE_KEYS = ("benchmark", "path", "name", "layout", "features", "transform", "splits")


def add_features(data: MMKG, features, resolve=lambda p: Path(p)) -> MMKG:
    """Apply a grid's `features` entry: a folder of feature files (MoMoK or NATIVE names), or a table
    modality -> source, where a source is a file, `"encoded"` / `"encoded:<encoder>"` (the cached
    text features of `data features text`) or `"literals"` (DB15K's numeric literals, numeric only)."""
    from mmkgbench.features import import_features
    from mmkgbench.literals import numeric_features
    from mmkgbench.text import load_text_features
    if isinstance(features, str):
        return import_features(data, resolve(features))
    if not isinstance(features, dict):
        raise ValueError(f"features must be a folder or a table modality -> source, got {features!r}")
    files = {}
    for m, source in features.items():
        source, encoder = str(source), encoder_of(source)
        if encoder is not None:
            if m != "text":
                raise ValueError(f"features.{m} = {source!r}: only text can be encoded from entity names")
            data = load_text_features(data, encoder)
        elif source == "literals":
            bench = data.meta.get("benchmark")
            extra = next((e for e in catalog.get_benchmark(bench).extras if "literals" in e.path), None) \
                if bench else None
            if m != "numeric" or extra is None:
                raise ValueError(f"features.{m} = 'literals': numeric literals exist for DB15K only "
                                 "(as features.numeric); name a literal file for other data")
            data = numeric_features(data, catalog.cache_dir(bench) / extra.path)
        else:
            files[m] = resolve(source)
    return import_features(data, files) if files else data


def load_dataset(spec, base: Path | None = None, *, fetch_missing: bool = False, mirror: str | None = None) -> MMKG:
    """The MMKG a grid entry names. Relative paths resolve against `base` (the grid file's folder).

    A table may hold `benchmark` (a catalog name) or `path`, plus `name`, `layout`, `features` (a
    folder, or modality -> source: see `add_features`), `transform` ("none", "l2" or "momok":
    `mmkgbench.features.FEATURE_TRANSFORMS`, applied after all features are read) and `splits`
    (`mmkgbench.audit.SPLIT_POLICIES`): "as_published" (default), "clean" (duplicates and leaked
    triples removed from valid and test, `mmkgbench.audit.clean_splits`; the name gets "[clean]") or
    "clean-valid" (from valid only, test as published, `mmkgbench.audit.clean_valid`; the name gets
    "[clean-valid]").
    """
    if isinstance(spec, str) and normalise(spec) in DATASETS:
        return DATASETS[normalise(spec)]()
    if isinstance(spec, str):
        spec = {"benchmark": spec} if catalog.is_benchmark(spec) else {"path": spec}
    if not isinstance(spec, dict) or ("path" in spec) == ("benchmark" in spec):
        raise ValueError(f"a data set is a registered name {sorted(DATASETS)}, a benchmark name, a path, or a table "
                         f"with exactly one of 'benchmark' and 'path'; got {spec!r}")
    unknown = set(spec) - set(TABLE_KEYS)
    if unknown:
        raise ValueError(f"data set table {spec!r}: unknown keys {sorted(unknown)} (valid: {', '.join(TABLE_KEYS)})")
    splits = spec.get("splits", "as_published")
    if splits not in SPLIT_POLICIES:
        raise ValueError(f"data set table {spec!r}: splits must be one of {', '.join(SPLIT_POLICIES)}, "
                         f"got {splits!r}")

    def resolve(p):
        p = Path(p).expanduser()
        return p if p.is_absolute() or base is None else (base / p)

    if "benchmark" in spec:
        data = load_benchmark(spec["benchmark"], fetch_missing=fetch_missing, mirror=mirror)
    else:
        folder = resolve(spec["path"])
        if not folder.is_dir():
            raise ValueError(f"unknown data set {spec['path']!r}: not a registered name {sorted(DATASETS)}, "
                             f"not a benchmark {[b.name for b in catalog.CATALOG.values()]}, and not a folder "
                             f"({folder})")
        data = load_folder(folder, name=spec.get("name") or folder.name, layout=spec.get("layout", "auto"))
    if spec.get("features"):
        data = add_features(data, spec["features"], resolve)
    transform = spec.get("transform", "none")
    if transform not in FEATURE_TRANSFORMS:
        raise ValueError(f"data set table {spec!r}: transform must be one of {sorted(FEATURE_TRANSFORMS)}, "
                         f"got {transform!r}")
    if transform != "none":
        data = FEATURE_TRANSFORMS[transform](data)
    # The name goes into every result row: an explicit `name`, else the source plus the features.
    data = data.replace(name=spec.get("name") or data.name + feature_suffix(spec, resolve))
    return apply_split_policy(data, splits)
