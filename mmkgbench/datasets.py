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
from mmkgbench.loaders import LAYOUTS, load_folder, load_momok
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
    # For scale benchmarks (evaluation at 10^10 score entries, memory): 1,000,000 entities, 32 relations,
    # 4,000,000 triples drawn (2,853,674 train after de-duplication), image 64 and text 32. Tails from the linear-cost
    # "window" rule (mmkgbench.synthetic): about 35 s and 2.7 GB on 2 CPU cores
    # (benchmarks/bench_synthetic.py, docs/performance.md).
    "synthetic_large": partial(synthetic_mmkg, num_entities=1_000_000, num_relations=32, num_triples=4_000_000,
                               tails="window", name="synthetic_large"),
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
    spec = check_dataset(spec, base)

    def resolve(p):
        return resolve_path(p, base)

    if "benchmark" in spec:
        data = load_benchmark(spec["benchmark"], fetch_missing=fetch_missing, mirror=mirror)
    else:
        folder = resolve(spec["path"])
        data = load_folder(folder, name=spec.get("name") or folder.name, layout=spec.get("layout", "auto"))
    if spec.get("features"):
        data = add_features(data, spec["features"], resolve)
    transform = spec.get("transform", "none")
    if transform != "none":
        data = FEATURE_TRANSFORMS[transform](data)
    # The name goes into every result row: an explicit `name`, else the source plus the features.
    data = data.replace(name=spec.get("name") or data.name + feature_suffix(spec, resolve))
    return apply_split_policy(data, spec.get("splits", "as_published"))


def resolve_path(p, base: Path | None = None) -> Path:
    """A path of a grid entry: `~` expanded; relative paths resolve against `base` (the grid's folder)."""
    p = Path(p).expanduser()
    return p if p.is_absolute() or base is None else (base / p)


def check_dataset(spec, base: Path | None = None, *, files: bool = True) -> dict | str:
    """Check a grid's data set entry without reading its triples or features; returns it as a table
    ({"benchmark": ...} or {"path": ...}), or the synthetic name. ValueError names the problem.

    Checked: the kind of entry, its keys and their types, that a benchmark name is known (not that it
    is fetched: `run --fetch` may fetch it), that `features` sources are a folder, files,
    "encoded[:<encoder>]" (text only, a known encoder) or "literals" (numeric, DB15K only), and the
    `layout`, `transform` and `splits` values. With `files` (the default) also that the folders and
    files it names exist; the grid reader checks without (a grid naming feature files of another
    machine can still be listed and reported), the runner loads every data set before training.
    """
    if isinstance(spec, str):
        if normalise(spec) in DATASETS:
            return spec
        spec = {"benchmark": spec} if catalog.is_benchmark(spec) else {"path": spec}
    if not isinstance(spec, dict) or ("path" in spec) == ("benchmark" in spec):
        raise ValueError(f"a data set is a registered name {sorted(DATASETS)}, a benchmark name, a path, or a table "
                         f"with exactly one of 'benchmark' and 'path'; got {spec!r}")
    unknown = set(spec) - set(TABLE_KEYS)
    if unknown:
        raise ValueError(f"data set table {spec!r}: unknown keys {sorted(unknown)} (valid: {', '.join(TABLE_KEYS)})")
    for key in ("benchmark", "path", "name", "layout", "transform", "splits"):
        if key in spec and not (isinstance(spec[key], str) and spec[key]):
            raise ValueError(f"data set table: {key} must be a non-empty string, got {spec[key]!r}")
    choices = {"layout": LAYOUTS, "transform": tuple(FEATURE_TRANSFORMS), "splits": tuple(SPLIT_POLICIES)}
    for key, valid in choices.items():
        if key in spec and spec[key] not in valid:
            raise ValueError(f"data set table: {key} must be one of {', '.join(valid)}, got {spec[key]!r}")
    if "benchmark" in spec and not catalog.is_benchmark(spec["benchmark"]):
        raise ValueError(f"unknown benchmark {spec['benchmark']!r}; choose from "
                         f"{[b.name for b in catalog.CATALOG.values()]}")
    if "path" in spec and files:
        folder = resolve_path(spec["path"], base)
        if not folder.is_dir():
            raise ValueError(f"unknown data set {spec['path']!r}: not a registered name {sorted(DATASETS)}, "
                             f"not a benchmark {[b.name for b in catalog.CATALOG.values()]}, and not a folder "
                             f"({folder})")
    feats = spec.get("features")
    if feats is None or feats == "":
        return spec
    if isinstance(feats, str):
        if files and not resolve_path(feats, base).is_dir():
            raise ValueError(f"features = {feats!r}: not a folder ({resolve_path(feats, base)})")
        return spec
    if not isinstance(feats, dict) or not feats:
        raise ValueError(f"features must be a folder or a table modality -> source, got {feats!r}")
    from mmkgbench.text import ENCODERS
    bench = catalog.get_benchmark(spec["benchmark"]) if "benchmark" in spec else None
    for m, source in feats.items():
        if not isinstance(source, str) or not source:
            raise ValueError(f"features.{m} must be a file, \"encoded[:<encoder>]\" or \"literals\", got {source!r}")
        encoder = encoder_of(source)
        if encoder is not None:
            if m != "text":
                raise ValueError(f"features.{m} = {source!r}: only text can be encoded from entity names")
            if encoder not in ENCODERS:
                raise ValueError(f"features.{m} = {source!r}: unknown encoder {encoder!r}; choose from "
                                 f"{sorted(ENCODERS)}")
        elif source == "literals":
            if m != "numeric" or bench is None or not any("literals" in e.path for e in bench.extras):
                raise ValueError(f"features.{m} = 'literals': numeric literals exist for DB15K only "
                                 "(as features.numeric); name a literal file for other data")
        elif files and not resolve_path(source, base).is_file():
            raise ValueError(f"features.{m} = {source!r}: file not found ({resolve_path(source, base)})")
    return spec
