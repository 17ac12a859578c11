"""Grid files: the TOML format, its validation, and the cells it expands to.

A grid file (see scenarios/*.toml) names models x datasets x scenarios(levels) x seeds, plus
settings for all runs ([train], [eval], [inputs]) and per-model overrides ([overrides.<model>],
[dataset_overrides.<data set>.<model>], [variants.<name>]) whose keys are fields of the model's
config dataclass or of `TrainConfig`. Every name, key, type and range is checked when the file is
read, before anything trains; each error names the file and the key. Each combination is a `Cell`;
mmkgbench.resolve turns a cell into its full config and run id, mmkgbench.runner runs it.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from mmkgbench.datasets import check_dataset, dataset_label
from mmkgbench.evaluate import EvalConfig
from mmkgbench.features import FILL_POLICIES
from mmkgbench.models import MODELS, get_model
from mmkgbench.protocol import PROTOCOLS
from mmkgbench.ranges import check_field
from mmkgbench.registry import normalise
from mmkgbench.scenarios import SCENARIOS, ScenarioError, check_options, get_scenario
from mmkgbench.train import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GRID_DIR = Path(__file__).resolve().parent.parent / "scenarios"
GRID_KEYS = {"name", "description", "models", "datasets", "seeds", "scenarios", "train", "eval", "inputs", "overrides",
             "variants", "protocol", "dataset_overrides"}
# [inputs]: what a model that reads features sees where an entity lacks a modality
# (mmkgbench.features.FILL_POLICIES). Zeros by default, as methods.md §4 and MACO/MMRNS do.
INPUT_DEFAULTS = {"fill": "zeros"}


# Seeds go into numpy's SeedSequence and torch.manual_seed; 32 bits is what every generator takes.
SEED_LIMIT = 2 ** 32
EXAMPLES = {"models": '["tucker", "momok"]', "datasets": '["synthetic"]', "seeds": "[0, 1, 2]"}


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
        """The grid's data set entry as written: a name, or a table with its nested tables (features) as dicts."""
        return thaw(self.dataset)

    def scenario_steps(self) -> list[tuple[str, float, dict]]:
        """[(registered scenario, level, full options)] this cell applies, in order."""
        return [(name, self.level if level is None else level, dict(opts)) for name, level, opts in self.entry_steps()]

    def entry_steps(self) -> tuple:
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
    datasets: tuple = ()  # the `datasets` entries, frozen, in the grid's order (errors name them by position)

    def dataset_key(self, dataset) -> str:
        """Where a frozen data set entry is in the grid file, for error messages: 'datasets[2]'."""
        return f"datasets[{self.datasets.index(dataset) + 1}]" if dataset in self.datasets else "datasets"

    def skipped_note(self) -> str:
        """One line naming the (model, scenario) pairs not run, or ""."""
        by: dict[str, list[str]] = {}
        for model, scenario in self.skipped:
            by.setdefault(scenario, []).append(model)
        return ("not run, as the scenario cannot change what the model reads: " +
                "; ".join(f"{sc}: {', '.join(ms)}" for sc, ms in by.items())) if by else ""


def field_types(cls) -> dict[str, object]:
    return {f.name: f.default for f in fields(cls)}


def check_value(where: str, key: str, value, default, cls=None):
    """Check an override: its type against the dataclass default's (int is accepted for float), and
    its value against `cls.ranges` (mmkgbench.ranges) when `cls` is given. Returns it normalised."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, tuple) and key.endswith("_options"):
        ok = isinstance(value, dict)           # a table of settings (TrainConfig.sampler_options)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise GridError(f"{where}: {key} = {value!r} has type {type(value).__name__}, expected "
                        f"{type(default).__name__} (default {default!r})")
    if isinstance(value, dict):
        value = tuple(sorted(value.items()))
    value = tuple(value) if isinstance(default, tuple) else (float(value) if isinstance(default, float) else value)
    if cls is not None:
        try:
            check_field(cls, key, value)
        except ValueError as err:
            raise GridError(f"{where}: {err}") from None
    return value


def split_overrides(model: str, overrides: dict, where: str) -> tuple[dict, dict]:
    """Split a model's overrides into model-config and training-config keys, validating each."""
    cls = get_model(model)
    mfields, tfields = field_types(cls.Config), field_types(TrainConfig)
    m, t = {}, {}
    for key, value in overrides.items():
        if key in mfields:
            m[key] = check_value(where, key, value, mfields[key], cls.Config)
        elif key in tfields:
            t[key] = check_value(where, key, value, tfields[key], TrainConfig)
        else:
            raise GridError(f"{where}: unknown setting {key!r} for {model}; valid keys: model config "
                            f"{sorted(mfields)}, training {sorted(tfields)}")
    try:                                   # what one key cannot show: the model's cross-field checks
        cls.Config(**m)
    except ValueError as err:
        raise GridError(f"{where}: {err}") from None
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
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise GridError(f"{path}: line {line}, column {column}: byte 0x{raw[err.start]:02x} is not UTF-8; a grid "
                        "file is UTF-8 text (save it as UTF-8)") from None
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise GridError(f"{path}: invalid TOML: {err}") from None
    return grid_from_dict(spec, path=path, sets=sets, protocol=protocol)


def parse_set(item: str) -> tuple[str, str, object]:
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
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise GridError(f"{where}: protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    for key in ("models", "datasets", "seeds"):
        if not isinstance(spec.get(key), list) or not spec[key]:
            raise GridError(f"{where}: {key} must be a non-empty list, e.g. {key} = {EXAMPLES[key]}; got "
                            f"{spec.get(key)!r}")
    if not all(isinstance(m, str) and m for m in spec["models"]):
        raise GridError(f"{where}: models must be a list of model names (strings), got {spec['models']!r}")
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
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < SEED_LIMIT for s in seeds):
        raise GridError(f"{where}: seeds must be integers in [0, 2**32), got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise GridError(f"{where}: seeds {seeds!r} repeat a seed")
    for i, dataset in enumerate(spec["datasets"], 1):
        try:
            check_dataset(dataset, path.parent if path else None, files=False)
        except ValueError as err:
            raise GridError(f"{where}: datasets[{i}] = {dataset!r}: {err}") from None
    scenarios = parse_scenarios(spec.get("scenarios", {"clean": [0.0]}), where)
    train_all = dict(spec.get("train", {}))
    eval_all = dict(spec.get("eval", {}))
    inputs = {**INPUT_DEFAULTS, **dict(spec.get("inputs", {}))}
    overrides = {normalise(k): dict(v) for k, v in spec.get("overrides", {}).items()}
    for section, key, value in (parse_set(s) for s in sets):
        target = train_all if section == "train" else eval_all if section == "eval" else \
            inputs if section == "inputs" else overrides.setdefault(normalise(section), {})
        target[key] = value
    tfields, efields = field_types(TrainConfig), field_types(EvalConfig)
    for key, value in train_all.items():
        if key not in tfields:
            raise GridError(f"{where}: [train] unknown key {key!r}; valid: {sorted(tfields)}")
        train_all[key] = check_value(f"{where} [train]", key, value, tfields[key], TrainConfig)
    for key, value in eval_all.items():
        if key not in efields:
            raise GridError(f"{where}: [eval] unknown key {key!r}; valid: {sorted(efields)}")
        eval_all[key] = check_value(f"{where} [eval]", key, value, efields[key], EvalConfig)
    for key, value in inputs.items():
        if key not in INPUT_DEFAULTS:
            raise GridError(f"{where}: [inputs] unknown key {key!r}; valid: {sorted(INPUT_DEFAULTS)}")
    if inputs["fill"] not in FILL_POLICIES:
        raise GridError(f"{where}: [inputs] fill must be one of {list(FILL_POLICIES)}, got {inputs['fill']!r}")
    for m in overrides:
        if m not in MODELS and m not in variants:
            raise GridError(f"{where}: [overrides.{m}] names an unknown model; choose from {sorted(MODELS)}")
    by_dataset = dataset_overrides(spec, where, models, variants)
    cells, skipped = [], []
    for dataset in spec["datasets"]:
        ds = freeze(dataset)
        extra = by_dataset.get(dataset_keys(dataset)[0], {})
        for key in dataset_keys(dataset)[1:]:
            extra = {**by_dataset.get(key, {}), **extra}
        for model in models:
            base, own = variants.get(model, (model, {}))
            settings = {**overrides.get(base, {}), **own, **(overrides.get(model, {}) if model != base else {}),
                        **extra.get(base, {}), **(extra.get(model, {}) if model != base else {})}
            section = f"[variants.{model}]" if model != base else f"[overrides.{model}]"
            m_over, t_over = split_overrides(base, settings, f"{where} {section}")
            t_all = {**train_all, **t_over}
            check_training(get_model(base), t_all, eval_all, f"{where} {section}")
            reads = reads_modalities(get_model(base), t_all)
            for scenario, (steps, levels) in scenarios.items():
                if not can_affect(get_model(base), steps, reads):
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
                description=spec.get("description", ""), skipped=tuple(skipped),
                datasets=tuple(freeze(d) for d in spec["datasets"]))


def reads_modalities(cls, train: dict) -> tuple:
    """The feature modalities a run reads: its model's, and those of a negative sampler that reads
    features (MMRNS), so a feature scenario is run for TransE trained with MMRNS."""
    from mmkgbench.samplers import get_sampler
    tcfg = TrainConfig(**{**cls.train_defaults, **train})
    extra = tuple(get_sampler(tcfg.sampler).modalities) if tcfg.regime == "negative" else ()
    own = tuple(cls.modalities)
    if "*" in own or "*" in extra:
        return ("*",)
    return own + tuple(m for m in extra if m not in own)


def check_training(cls, train: dict, evaluation: dict, where: str) -> None:
    """The training and evaluation settings of one model, checked as a whole (GridError): the configs'
    own cross-field checks, and that the selection metric is one the evaluation computes."""
    try:
        tcfg = TrainConfig(**{**cls.train_defaults, **train})
        ecfg = EvalConfig(**evaluation)
    except ValueError as err:
        raise GridError(f"{where}: {err}") from None
    metric = tcfg.selection_metric
    if metric.startswith("hits@") and int(metric[5:]) not in ecfg.hits_at:
        raise GridError(f"{where}: selection_metric = {metric!r} needs {int(metric[5:])} in [eval] hits_at "
                        f"{list(ecfg.hits_at)}")


def dataset_keys(dataset) -> list[str]:
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


def dataset_overrides(spec: dict, where: str, models, variants) -> dict[str, dict[str, dict]]:
    """[dataset_overrides.<data set>.<model>]: settings for one model on one data set, on top of
    [overrides.<model>] (published per-dataset hyperparameters, e.g. MoMoK's lr and d on MKG-W)."""
    table = spec.get("dataset_overrides", {})
    known = {k for d in spec["datasets"] for k in dataset_keys(d)}
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


def can_affect(cls, steps, reads: tuple | None = None) -> bool:
    """Whether a scenario entry can change what a model of class `cls` reads.

    Only the swept steps count (a fixed step is the same at every level, so it cannot shape a curve):
    a feature scenario leaves a structure-only model's input unchanged, so its curve would be flat by
    construction and the runs a waste; such pairs are not expanded. The entry affects the model when
    *any* swept step does, whatever the order of the steps.
    """
    swept = [(name, dict(options)) for name, level, options in steps if level is None and name != "clean"]
    if not swept:
        return True
    reads = tuple(cls.modalities) if reads is None else reads
    for name, options in swept:
        if not SCENARIOS[name].feature_only:
            return True
        modality = options.get("modality", "all")
        if reads == ("*",) or bool(reads) and (modality == "all" or modality in reads):
            return True
    return False


class Table(tuple):
    """A TOML table frozen so that a `Cell` is hashable: its (key, value) pairs, sorted by key. Being
    its own type, it is told apart from a list of pairs when thawed."""

    __slots__ = ()


def freeze(v):
    """A grid value made hashable, at every depth: a table becomes a `Table`, a list a tuple."""
    if isinstance(v, dict):
        return Table(sorted((k, freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(freeze(x) for x in v)
    return v


def thaw(v):
    """The inverse of `freeze`: every `Table` (nested ones too) a dict again, tuples lists."""
    if isinstance(v, Table):
        return {k: thaw(x) for k, x in v}
    if isinstance(v, tuple):
        return [thaw(x) for x in v]
    return v


