"""Grids, cells and runs: from a TOML grid file to stored results, resumable.

A grid file (see scenarios/*.toml) names models x datasets x scenarios(levels) x seeds, plus
settings for all runs ([train], [eval]) and per-model overrides ([overrides.<model>]) whose keys
are fields of the model's config dataclass or of `TrainConfig`. Each combination is a `Cell`;
resolving a cell gives the full config (every default filled in), whose hash is the run id, so
a grid that is started again skips what is done, and a changed setting is a new run.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import json
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import mmkgbench
from mmkgbench.data import MMKG
from mmkgbench.datasets import dataset_label, load_dataset
from mmkgbench.evaluate import EvalConfig, evaluate
from mmkgbench.features import FILL_POLICIES, fill_features
from mmkgbench.model import ModelInputs
from mmkgbench.models import MODELS, get_model
from mmkgbench.ranking import KnownAnswers
from mmkgbench.registry import normalise
from mmkgbench.results import ROW_COLUMNS, clean_stale, is_done, write_failure, write_run
from mmkgbench.scenarios import SCENARIOS, ScenarioError, apply_steps, check_options, get_scenario, perturbation
from mmkgbench.train import TrainConfig, best_per_metric, train

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Bump when the evaluation protocol or the result schema changes: part of every run id.
# v2: per-query ranks gained rank_rand (random tie-breaking), EvalConfig gained `tie`.
PROTOCOL = "harness-v2"
# Protocols a grid may ask for (`protocol = "..."`, or `run --protocol`). "harness" selects one
# checkpoint on valid and evaluates test once, realistic ranks (methods.md §6). "reference" is
# what MoMoK's public code does (methods.md §1.8), offered as an audit of how much it inflates
# numbers: test evaluated every eval_every epochs with random tie-breaking, no early stopping, and
# the best value of each metric kept separately. Its rows say protocol "reference-v1".
PROTOCOLS = {"harness": PROTOCOL, "reference": "reference-v1"}
REFERENCE_SELECTION = "best value of each metric over test evaluations (reference code; not a single model)"
GRID_DIR = Path(__file__).resolve().parent.parent / "scenarios"
GRID_KEYS = {"name", "description", "models", "datasets", "seeds", "scenarios", "train", "eval", "inputs", "overrides",
             "variants", "protocol", "dataset_overrides"}
# [inputs]: what a model that reads features sees where an entity lacks a modality
# (mmkgbench.features.FILL_POLICIES). Zeros by default, as methods.md §4 and MACO/MMRNS do.
INPUT_DEFAULTS = {"fill": "zeros"}


class GridError(ValueError):
    """A grid file that cannot be run; the message names the file and the problem."""


@dataclass(frozen=True)
class Cell:
    """One run of a grid: a model on a data set under a scenario level with a seed."""

    model: str
    dataset: object            # str or a frozen tuple of items (a table in the grid)
    scenario: str
    level: float
    seed: int
    model_overrides: tuple = ()
    train_overrides: tuple = ()
    eval_overrides: tuple = ()
    fill: str = INPUT_DEFAULTS["fill"]
    base: str = ""             # for a grid variant (e.g. an ablation): the registered model it configures
    protocol: str = "harness"  # a key of PROTOCOLS
    # The scenario entry of the grid: ((registered name, fixed level or None, options), ...). A step
    # with level None is the swept one and takes the cell's level; `scenario` is the entry's name.
    steps: tuple = ()

    @property
    def model_class(self):
        return get_model(self.base or self.model)

    @property
    def dataset_spec(self):
        return dict(self.dataset) if isinstance(self.dataset, tuple) else self.dataset

    def scenario_steps(self) -> list[tuple[str, float, dict]]:
        """[(registered scenario, level, full options)] this cell applies, in order."""
        return [(name, self.level if level is None else level, dict(opts)) for name, level, opts in self._steps()]

    def _steps(self) -> tuple:
        """The grid entry's steps; a cell built without them is its scenario alone, swept."""
        return self.steps or ((self.scenario, None, ()),)

    def label(self) -> str:
        return (f"{self.model} | {dataset_label(self.dataset_spec)} | {self.scenario}@{self.level:g} | "
                f"seed {self.seed}" + ("" if self.protocol == "harness" else f" | {self.protocol} protocol"))


@dataclass(frozen=True)
class Grid:
    name: str
    path: Path | None
    cells: tuple[Cell, ...]
    description: str = ""
    skipped: tuple = ()   # (model, scenario) pairs left out: the scenario cannot change what the model reads

    def skipped_note(self) -> str:
        """One line naming the (model, scenario) pairs not run, or ""."""
        by: dict[str, list[str]] = {}
        for model, scenario in self.skipped:
            by.setdefault(scenario, []).append(model)
        return ("not run, as the scenario cannot change what the model reads: " +
                "; ".join(f"{sc}: {', '.join(ms)}" for sc, ms in by.items())) if by else ""


def _field_types(cls) -> dict[str, object]:
    return {f.name: f.default for f in fields(cls)}


def _check_value(where: str, key: str, value, default):
    """Type-check an override against the dataclass default's type (int is accepted for float)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise GridError(f"{where}: {key} = {value!r} has type {type(value).__name__}, expected "
                        f"{type(default).__name__} (default {default!r})")
    return tuple(value) if isinstance(default, tuple) else (float(value) if isinstance(default, float) else value)


def split_overrides(model: str, overrides: dict, where: str) -> tuple[dict, dict]:
    """Split a model's overrides into model-config and training-config keys, validating each."""
    cls = get_model(model)
    mfields, tfields = _field_types(cls.Config), _field_types(TrainConfig)
    m, t = {}, {}
    for key, value in overrides.items():
        if key in mfields:
            m[key] = _check_value(where, key, value, mfields[key])
        elif key in tfields:
            t[key] = _check_value(where, key, value, tfields[key])
        else:
            raise GridError(f"{where}: unknown setting {key!r} for {model}; valid keys: model config "
                            f"{sorted(mfields)}, training {sorted(tfields)}")
    return m, t


def load_grid(path_or_name, sets: list[str] = (), protocol: str | None = None) -> Grid:
    """Read and validate a grid file (a path, or a name of a file in scenarios/), applying `--set` overrides.

    protocol: overrides the grid's `protocol` key (a key of PROTOCOLS) when given.
    """
    path = Path(path_or_name)
    if not path.suffix and not path.exists():
        path = GRID_DIR / f"{path_or_name}.toml"
    if not path.is_file():
        names = sorted(p.stem for p in GRID_DIR.glob("*.toml"))
        raise GridError(f"grid {path_or_name!r} not found: not a file, and not one of {names}")
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise GridError(f"{path}: invalid TOML: {err}") from None
    return grid_from_dict(spec, path=path, sets=sets, protocol=protocol)


def _parse_set(item: str) -> tuple[str, str, object]:
    """'tucker.lr=1e-3' -> ('tucker', 'lr', 0.001); 'train.max_epochs=5' -> ('train', 'max_epochs', 5)."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise GridError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. tucker.lr=1e-3 or train.max_epochs=5")
    lhs, raw = item.split("=", 1)
    section, key = lhs.strip().split(".", 1)
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()                  # a bare word is a string: regime=negative
    return section.strip(), key.strip(), value


def grid_from_dict(spec: dict, path: Path | None = None, sets: list[str] = (), protocol: str | None = None) -> Grid:
    where = str(path) if path else "grid"
    unknown = set(spec) - GRID_KEYS
    if unknown:
        raise GridError(f"{where}: unknown top-level keys {sorted(unknown)}; valid: {sorted(GRID_KEYS)}")
    protocol = protocol or spec.get("protocol", "harness")
    if protocol not in PROTOCOLS:
        raise GridError(f"{where}: protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    for key in ("models", "datasets", "seeds"):
        if not spec.get(key):
            raise GridError(f"{where}: '{key}' must be a non-empty list")
    # [variants.NAME]: a registered model under a name of its own, with settings on top of the base
    # model's [overrides] (an ablation row: model = "momok", exid = false). Results carry the name.
    variants = {}
    for vname, vspec in spec.get("variants", {}).items():
        key = normalise(vname)
        if not isinstance(vspec, dict) or "model" not in vspec:
            raise GridError(f"{where}: [variants.{vname}] needs model = \"<a registered model>\"")
        if key in MODELS:
            raise GridError(f"{where}: [variants.{vname}] has the name of a registered model; choose another")
        if normalise(vspec["model"]) not in MODELS:
            raise GridError(f"{where}: [variants.{vname}] model {vspec['model']!r} is unknown; choose from "
                            f"{sorted(MODELS)}")
        variants[key] = (normalise(vspec["model"]), {k: v for k, v in vspec.items() if k != "model"})
    models = [normalise(m) for m in spec["models"]]
    for m in models:
        if m not in MODELS and m not in variants:
            raise GridError(f"{where}: unknown model {m!r}; choose from {sorted(MODELS)} or the grid's variants "
                            f"{sorted(variants)}")
    seeds = spec["seeds"]
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise GridError(f"{where}: seeds must be integers, got {seeds!r}")
    scenarios = parse_scenarios(spec.get("scenarios", {"clean": [0.0]}), where)
    train_all = dict(spec.get("train", {}))
    eval_all = dict(spec.get("eval", {}))
    inputs = {**INPUT_DEFAULTS, **dict(spec.get("inputs", {}))}
    overrides = {normalise(k): dict(v) for k, v in spec.get("overrides", {}).items()}
    for section, key, value in (_parse_set(s) for s in sets):
        target = train_all if section == "train" else eval_all if section == "eval" else \
            inputs if section == "inputs" else overrides.setdefault(normalise(section), {})
        target[key] = value
    tfields, efields = _field_types(TrainConfig), _field_types(EvalConfig)
    for key, value in train_all.items():
        if key not in tfields:
            raise GridError(f"{where}: [train] unknown key {key!r}; valid: {sorted(tfields)}")
        train_all[key] = _check_value(f"{where} [train]", key, value, tfields[key])
    for key, value in eval_all.items():
        if key not in efields:
            raise GridError(f"{where}: [eval] unknown key {key!r}; valid: {sorted(efields)}")
        eval_all[key] = _check_value(f"{where} [eval]", key, value, efields[key])
    for key, value in inputs.items():
        if key not in INPUT_DEFAULTS:
            raise GridError(f"{where}: [inputs] unknown key {key!r}; valid: {sorted(INPUT_DEFAULTS)}")
    if inputs["fill"] not in FILL_POLICIES:
        raise GridError(f"{where}: [inputs] fill must be one of {list(FILL_POLICIES)}, got {inputs['fill']!r}")
    for m in overrides:
        if m not in MODELS and m not in variants:
            raise GridError(f"{where}: [overrides.{m}] names an unknown model; choose from {sorted(MODELS)}")
    by_dataset = _dataset_overrides(spec, where, models, variants)
    cells, skipped = [], []
    for dataset in spec["datasets"]:
        ds = tuple(sorted((k, _freeze(v)) for k, v in dataset.items())) if isinstance(dataset, dict) else dataset
        extra = by_dataset.get(_dataset_keys(dataset)[0], {})
        for key in _dataset_keys(dataset)[1:]:
            extra = {**by_dataset.get(key, {}), **extra}
        for model in models:
            base, own = variants.get(model, (model, {}))
            settings = {**overrides.get(base, {}), **own, **(overrides.get(model, {}) if model != base else {}),
                        **extra.get(base, {}), **(extra.get(model, {}) if model != base else {})}
            section = f"[variants.{model}]" if model != base else f"[overrides.{model}]"
            m_over, t_over = split_overrides(base, settings, f"{where} {section}")
            t_all = {**train_all, **t_over}
            for scenario, (steps, levels) in scenarios.items():
                if not _can_affect(get_model(base), steps):
                    if (model, scenario) not in skipped:
                        skipped.append((model, scenario))
                    continue
                for level in levels:
                    for seed in seeds:
                        cells.append(Cell(model, ds, scenario, float(level), int(seed),
                                          tuple(sorted(m_over.items())), tuple(sorted(t_all.items())),
                                          tuple(sorted(eval_all.items())), inputs["fill"],
                                          base if model != base else "", protocol, steps))
    return Grid(name=spec.get("name") or (path.stem if path else "grid"), path=path, cells=tuple(cells),
                description=spec.get("description", ""), skipped=tuple(skipped))


def _dataset_keys(dataset) -> list[str]:
    """Names a [dataset_overrides.NAME] table may use for a grid's data set entry: its label first,
    then its benchmark name, `name` or folder name (normalised)."""
    from mmkgbench import catalog
    keys = [normalise(dataset_label(dataset))]
    if isinstance(dataset, dict):
        if "benchmark" in dataset and catalog.is_benchmark(dataset["benchmark"]):
            keys.append(normalise(catalog.get_benchmark(dataset["benchmark"]).name))
        if "name" in dataset:
            keys.append(normalise(dataset["name"]))
        if "path" in dataset:
            keys.append(normalise(Path(dataset["path"]).name))
    return list(dict.fromkeys(keys))


def _dataset_overrides(spec: dict, where: str, models, variants) -> dict[str, dict[str, dict]]:
    """[dataset_overrides.<data set>.<model>]: settings for one model on one data set, on top of
    [overrides.<model>] (published per-dataset hyperparameters, e.g. MoMoK's lr and d on MKG-W)."""
    table = spec.get("dataset_overrides", {})
    known = {k for d in spec["datasets"] for k in _dataset_keys(d)}
    out = {}
    for dname, per_model in table.items():
        key = normalise(dname)
        if key not in known:
            raise GridError(f"{where}: [dataset_overrides.{dname}] names no data set of the grid; use one of "
                            f"{sorted(known)}")
        if not isinstance(per_model, dict) or not all(isinstance(v, dict) for v in per_model.values()):
            raise GridError(f"{where}: [dataset_overrides.{dname}] must hold tables [dataset_overrides.{dname}.<model>]")
        for m in per_model:
            if normalise(m) not in MODELS and normalise(m) not in variants:
                raise GridError(f"{where}: [dataset_overrides.{dname}.{m}] names an unknown model; choose from "
                                f"{sorted(set(models) | set(variants))}")
        out[key] = {normalise(m): dict(v) for m, v in per_model.items()}
    return out


def parse_scenarios(entries: dict, where: str) -> dict[str, tuple[tuple, list[float]]]:
    """The [scenarios] table of a grid: entry name -> (steps, levels).

    Three forms:
        noisy = [0.1, 0.2]                                   # a registered scenario, default options
        image_noise = {scenario = "noisy", modality = "image", levels = [0.1, 0.2]}
        sparse_missing = {levels = [0.2, 0.4], steps = [{scenario = "sparse", level = 0.4},
                                                       {scenario = "missing", modality = "image"}]}
    A step without `level` is swept over `levels`; a step with one is fixed. Options are checked
    against the scenario's signature and stored with every default filled in.
    """
    if not isinstance(entries, dict) or not entries:
        raise GridError(f"{where}: [scenarios] must be a table of name = [levels] or name = {{...}} entries")
    out = {}
    for label, entry in entries.items():
        key = normalise(label)
        here = f"{where} scenarios.{label}"
        if isinstance(entry, list):
            entry = {"levels": entry}
        if not isinstance(entry, dict):
            raise GridError(f"{here}: expected a list of levels or a table, got {entry!r}")
        entry = dict(entry)
        levels = entry.pop("levels", None)
        if not isinstance(levels, list) or not levels or \
                not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in levels):
            raise GridError(f"{here}: must be a non-empty list of levels in [0, 1], got {levels!r}")
        if "steps" in entry:
            raw = entry.pop("steps")
            if entry:
                raise GridError(f"{here}: a composition takes only `levels` and `steps`; move {sorted(entry)} into a step")
            if not isinstance(raw, list) or not raw or not all(isinstance(x, dict) for x in raw):
                raise GridError(f"{here}: steps must be a list of tables {{scenario = ..., [level = ...], options}}")
        else:
            raw = [{"scenario": entry.pop("scenario", label), **entry}]
        steps = []
        for i, st in enumerate(raw):
            st = dict(st)
            name = st.pop("scenario", None)
            if not isinstance(name, str):
                raise GridError(f"{here}: step {i + 1} needs scenario = \"<a registered scenario>\"")
            level = st.pop("level", None)
            if level is not None and (isinstance(level, bool) or not isinstance(level, (int, float))
                                      or not 0 <= level <= 1):
                raise GridError(f"{here}: step {i + 1} level must be a number in [0, 1], got {level!r}")
            try:
                get_scenario(name)
                options = check_options(normalise(name), st, here)
            except KeyError as err:
                raise GridError(f"{here}: {err.args[0]}") from None
            except ScenarioError as err:
                raise GridError(str(err)) from None
            steps.append((normalise(name), None if level is None else float(level), tuple(sorted(options.items()))))
        if all(level is not None for _, level, _ in steps):
            raise GridError(f"{here}: every step has a fixed level; leave `level` out of the step that `levels` sweeps")
        if key == "clean" and any(name != "clean" for name, _, _ in steps):
            raise GridError(f"{here}: the name 'clean' is kept for the unperturbed data; choose another name")
        out[key] = (tuple(steps), [float(x) for x in levels])
    return out


def _can_affect(cls, steps) -> bool:
    """Whether a scenario entry can change what a model of class `cls` reads.

    Only the swept steps count: a feature scenario leaves a structure-only model's input unchanged,
    so its curve would be flat by construction and the runs a waste; such pairs are not expanded.
    """
    for name, level, options in steps:
        if level is not None or name == "clean":
            continue
        if not SCENARIOS[name].feature_only:
            return True
        modality = dict(options).get("modality", "all")
        reads = tuple(cls.modalities)
        return reads == ("*",) or bool(reads) and (modality == "all" or modality in reads)
    return True


def _freeze(v):
    return tuple(sorted((k, _freeze(x)) for k, x in v.items())) if isinstance(v, dict) else v


def _thaw(v):
    if isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in v):
        return {k: _thaw(x) for k, x in v}
    return v


def resolve(cell: Cell, data: MMKG) -> dict:
    """The full config of a cell: every default filled in. Its canonical JSON hash is the run id."""
    cls = cell.model_class
    mcfg = cls.Config(**dict(cell.model_overrides))
    tcfg = TrainConfig(**{**cls.train_defaults, **dict(cell.train_overrides)})
    ecfg = EvalConfig(**dict(cell.eval_overrides))
    if cell.protocol == "reference":
        # What MoMoK's train.py does: no early stopping (patience can never run out) and random
        # tie-breaking; test is what gets watched (run_cell). Recorded, so the run id says so.
        if tcfg.eval_every <= 0:
            raise GridError(f"{cell.label()}: the reference protocol evaluates test every eval_every epochs; "
                            "eval_every must be > 0")
        tcfg = dataclasses.replace(tcfg, patience=max(tcfg.patience, tcfg.max_epochs))
        ecfg = dataclasses.replace(ecfg, tie="random")
    spec = _thaw(cell.dataset) if isinstance(cell.dataset, tuple) else cell.dataset
    seen = model_modalities(cls, data)
    # The fill policy matters only to a model that reads features: leaving it out otherwise keeps
    # structure-only runs from being redone when it changes.
    inputs = {"modalities": list(seen), "fill": cell.fill} if seen else {"modalities": []}
    filt = {"test": "train+valid+test"}
    if cell.protocol == "harness":
        filt["valid"] = "train+valid+test" if ecfg.filter_valid_with_test else "train+valid"
    return {"protocol": PROTOCOLS[cell.protocol], "model": cell.model, **({"base_model": cell.base} if cell.base else {}),
            "model_config": asdict(mcfg), "train": asdict(tcfg),
            "eval": asdict(ecfg), "inputs": inputs, "reciprocal": True, "filter": filt,
            "dataset": {"name": data.name, "spec": spec, "fingerprint": data.fingerprint()},
            "scenario": scenario_config(cell), "seed": cell.seed}


def scenario_config(cell: Cell) -> dict:
    """What a cell's scenario does, as recorded in the config (and so in the run id).

    A cell whose steps are all at level 0 (or clean) sees the unperturbed data, so it is recorded as
    clean: `noisy = [0.0, 0.1]` reuses the clean run instead of training the same model twice.
    """
    swept = [level is None for _, level, _ in cell._steps()]
    steps = [(n, lv, o, sw) for (n, lv, o), sw in zip(cell.scenario_steps(), swept) if lv > 0 and n != "clean"]
    if not steps:
        return {"name": "clean", "level": 0.0, "version": SCENARIOS["clean"].version}
    versions = [SCENARIOS[n].version for n, _, _, _ in steps]
    return {"name": cell.scenario, "level": cell.level,
            "version": versions[0] if len(steps) == 1 else "+".join(map(str, versions)),
            "steps": [{"name": n, "level": lv, "version": SCENARIOS[n].version, "options": o, "swept": sw}
                      for n, lv, o, sw in steps]}


def run_id_of(config: dict) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_version() -> str:
    """Package version plus the git commit (with '-dirty' for uncommitted changes) when available."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    return f"{mmkgbench.__version__}+{sha}{'-dirty' if dirty else ''}" if sha else mmkgbench.__version__


def pick_device(name: str = "auto") -> torch.device:
    """Chosen once per process: CUDA when present (or asked for), else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    return dev


def model_modalities(cls, data: MMKG) -> tuple[str, ...]:
    """The modalities of `data` a model class reads; an error when it needs one the data lacks."""
    missing = [m for m in cls.modalities if m != "*" and m not in data.features]
    if missing:
        raise ValueError(f"{cls.__name__} needs modalities {missing}, which {data.name} does not have "
                         f"(it has {list(data.modalities) or 'none'})")
    return data.modalities if cls.modalities == ("*",) else tuple(cls.modalities)


def build_model(cell: Cell, config: dict, data: MMKG):
    """The model of a cell on the CPU, initialised from a generator derived from the seed."""
    cls = cell.model_class
    wanted = model_modalities(cls, data)
    fill = config["inputs"].get("fill", INPUT_DEFAULTS["fill"])
    present = {m: torch.from_numpy(np.array(data.present[m])) for m in wanted}
    # Absent rows are filled here, so no model ever reads whatever a loader or scenario left there.
    features = {m: fill_features(torch.from_numpy(np.array(data.features[m])), present[m], fill) for m in wanted}
    inputs = ModelInputs(num_entities=data.num_entities, num_relations=2 * data.num_relations,
                         features=features, present=present, fill=fill)
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([cell.seed, 1]).generate_state(1)[0]))
    return cls(cls.Config(**config["model_config"]), inputs, gen)


def run_cell(cell: Cell, data: MMKG, root, *, device: torch.device, progress: bool = False) -> tuple[str, dict]:
    """Train, select on valid, evaluate test once, and store the run. Returns (run_id, config).

    Under the reference protocol test is watched instead of valid, and the stored test rows hold
    the best value of each metric over those evaluations (train.best_per_metric); the per-query
    ranks are those of the checkpoint with the best test MRR. No valid rows are written.
    """
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    config = resolve(cell, data)
    perturbed = apply_steps(data, [(s["name"], s["level"], s["options"]) for s in config["scenario"].get("steps", [])],
                            cell.seed)
    rid = run_id_of(config)
    tcfg, ecfg = TrainConfig(**config["train"]), EvalConfig(**config["eval"])
    R = perturbed.num_relations
    # Filters are built from the unperturbed splits: a scenario changes what a model sees, never
    # which answers count as true.
    filt_valid = [data.train, data.valid] + ([data.test] if ecfg.filter_valid_with_test else [])
    known_valid = KnownAnswers(np.concatenate(filt_valid), R).to(device)
    known_test = KnownAnswers(np.concatenate([data.train, data.valid, data.test]), R).to(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _deterministic(device):
        torch.manual_seed(cell.seed)            # dropout draws from the global RNG: seed it, scoped to this run
        model = build_model(cell, config, perturbed).to(device)
        reference = cell.protocol == "reference"
        watched, known_watched = (perturbed.test, known_test) if reference else (perturbed.valid, known_valid)
        result = train(model, perturbed.train, R, perturbed.num_entities, tcfg, valid_triples=watched,
                       known_valid=known_watched, eval_cfg=ecfg, device=device, seed=cell.seed, progress=progress,
                       desc=cell.label(), watched="test" if reference else "valid")
        splits = {"test": (perturbed.test, known_test)} if reference else \
            {"valid": (perturbed.valid, known_valid), "test": (perturbed.test, known_test)}
        evals = {split: evaluate(model, triples, known, num_relations=R, cfg=ecfg, device=device, seed=cell.seed)
                 for split, (triples, known) in splits.items()}
        if reference:
            # Side "both" holds the best of each metric over the evaluations (the reference's report);
            # head and tail are left out, because the reference code never reports them that way.
            evals["test"].metrics = {"both": best_per_metric(result.history, "test")}
        # What the model says about itself (MoMoK: expert gates per relation), on the training split.
        extra = model.interpretation(torch.from_numpy(np.array(perturbed.train)).to(device))
        for frame in extra.values():
            if "relation" in frame.columns:
                frame.insert(frame.columns.get_loc("relation") + 1, "relation_name",
                             [perturbed.relations[i] for i in frame["relation"]])
    wall = time.perf_counter() - t0
    record = perturbation(perturbed)
    config_json = json.dumps(config, sort_keys=True, default=str)
    common = {"run_id": rid, "model": cell.model, "dataset": data.name, "scenario": config["scenario"]["name"],
              "scenario_version": config["scenario"]["version"], "level": config["scenario"]["level"],
              "seed": cell.seed,
              "source": "bench", "protocol": config["protocol"],
              "selection": REFERENCE_SELECTION if cell.protocol == "reference" else result.selection["rule"],
              "best_epoch": result.best_epoch, "epochs": result.epochs,
              "dataset_fingerprint": config["dataset"]["fingerprint"], "code_version": code_version(),
              "device": _device_name(device), "started_at": started, "wall_s": round(wall, 3),
              "train_s": round(result.seconds, 3), "config_json": config_json}
    rows = [{**common, "split": split, "side": side, "metric": metric, "value": value,
             "filter": config["filter"][split]}
            for split, ev in evals.items() for side, ms in ev.metrics.items() for metric, value in ms.items()]
    per_query = pd.concat([ev.per_query.assign(split=split) for split, ev in evals.items()], ignore_index=True)
    per_query.insert(0, "run_id", rid)
    provenance = {"run_id": rid, "config": config, "code_version": common["code_version"],
                  "deterministic_algorithms": device.type == "cpu",
                  "device": common["device"], "torch": torch.__version__, "started_at": started,
                  "wall_s": wall, "train": {k: v for k, v in dataclasses.asdict(result).items() if k != "history"},
                  "dataset_summary": perturbed.summary(), "perturbed_fingerprint": perturbed.fingerprint(),
                  "perturbation": {k: list(v.shape) for k, v in record.items()}}
    write_run(root, rid, provenance, pd.DataFrame(rows, columns=ROW_COLUMNS), per_query,
              pd.DataFrame(result.history), extra, arrays=record)
    return rid, config


@contextlib.contextmanager
def _deterministic(device: torch.device):
    """Deterministic kernels on the CPU, for the duration of one run.

    With several threads, some CPU kernels (the accumulating index_put behind embedding gradients)
    sum in an order that varies between processes, so the same seed gave slightly different
    numbers in two processes; deterministic kernels make it bit-identical (tests/test_run.py). On
    CUDA they are left off (they need a cuBLAS workspace setting and cost speed), as in PyKEEN and
    LibKGE.
    """
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(device.type == "cpu" or before)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    import platform
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def run_grid(grid: Grid, root="results", *, device: torch.device | None = None, progress: bool = True,
             log=print, fetch_missing: bool = False, mirror: str | None = None) -> dict:
    """Run every cell of `grid` not yet stored under `root`. Failed cells are recorded and skipped.

    Returns {"done": [...run ids...], "skipped": [...], "failed": [(cell label, error)]}.
    """
    device = device or pick_device()
    root = Path(root)
    clean_stale(root)
    datasets: dict = {}
    out = {"done": [], "skipped": [], "failed": []}
    n = len(grid.cells)
    seen: dict[str, int] = {}
    for i, cell in enumerate(grid.cells, 1):
        key = repr(cell.dataset)
        if key not in datasets:
            datasets[key] = load_dataset(cell.dataset_spec, base=grid.path.parent if grid.path else None,
                                         fetch_missing=fetch_missing, mirror=mirror)
        data = datasets[key]
        rid = run_id_of(resolve(cell, data))
        if rid in seen:        # e.g. noisy at level 0: the same inputs as the clean cell
            out["skipped"].append(rid)
            log(f"[{i}/{n}] {cell.label()}: the same run as cell {seen[rid]} (identical inputs), skipped")
            continue
        seen[rid] = i
        if is_done(root, rid):
            out["skipped"].append(rid)
            log(f"[{i}/{n}] {cell.label()}: done before ({rid}), skipped")
            continue
        log(f"[{i}/{n}] {cell.label()}: running ({rid})")
        try:
            run_cell(cell, data, root, device=device, progress=progress)
            out["done"].append(rid)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # one bad run must not poison the others: record it and go on
            write_failure(root, rid, {"cell": cell.label(), "error": f"{type(err).__name__}: {err}",
                                      "traceback": traceback.format_exc()})
            out["failed"].append((cell.label(), f"{type(err).__name__}: {err}"))
            log(f"[{i}/{n}] {cell.label()}: FAILED: {type(err).__name__}: {err}")
    return out
