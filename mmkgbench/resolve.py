"""From a grid cell to what it runs: the full config (every default filled in) and its run id.

The run id is the SHA-256 of the config's canonical JSON: the model's settings and its code
`version`, training and evaluation settings, inputs, the data fingerprint, the scenario with its
version, the seed and the protocol version. A changed setting, a bumped model or scenario version,
or a changed protocol is a new run; starting a grid again is a set difference.

Cells that differ only in a model's `scoring_fields` (MoMoK's `decision`: the paper's ablation rows
(1.1)-(1.4)) train the same model: `training_id` names that shared training, and the runner trains it
once and scores every such cell from its checkpoint.
"""
from __future__ import annotations

import copy
import dataclasses
import subprocess
from dataclasses import asdict
from pathlib import Path

import mmkgbench
from mmkgbench.data import MMKG
from mmkgbench.evaluate import EvalConfig
from mmkgbench.grid import Cell, GridError
from mmkgbench.protocol import BY_VERSION, get_protocol
from mmkgbench.results import run_id_of
from mmkgbench.samplers import SAMPLERS, get_sampler, sampler_config, sampler_modalities
from mmkgbench.scenarios import SCENARIOS
from mmkgbench.train import TrainConfig, resolved_fields


def resolve(cell: Cell, data: MMKG) -> dict:
    """The full config of a cell: every default filled in. Its canonical JSON hash is the run id."""
    cls = cell.model_class
    mcfg = cls.Config(**dict(cell.model_overrides))
    tcfg = TrainConfig(**{**cls.train_defaults, **dict(cell.train_overrides)})
    ecfg = EvalConfig(**dict(cell.eval_overrides))
    protocol = get_protocol(cell.protocol)
    try:
        tcfg, ecfg = protocol.configure(tcfg, ecfg)
    except ValueError as err:
        raise GridError(f"{cell.label()}: {err}") from None
    spec = cell.dataset_spec
    seen = model_modalities(cls, data)
    if tcfg.regime == "negative":        # a sampler that reads features (MMRNS) makes them an input too
        seen = seen + tuple(m for m in sampler_modalities(tcfg.sampler, data) if m not in seen)
    # The fill policy matters only to a model that reads features: leaving it out otherwise keeps
    # structure-only runs from being redone when it changes.
    inputs = {"modalities": list(seen), "fill": cell.fill} if seen else {"modalities": []}
    return {"protocol": protocol.version, "model": cell.model, **({"base_model": cell.base} if cell.base else {}),
            "model_version": cls.version, "model_config": asdict(mcfg), "train": resolved_fields(tcfg),
            "eval": asdict(ecfg), "inputs": inputs, "reciprocal": True, "filter": protocol.filters(ecfg),
            "dataset": {"name": data.name, "spec": spec, "fingerprint": data.fingerprint()},
            "scenario": scenario_config(cell), "seed": cell.seed, **sampler_record(tcfg)}


def sampler_record(tcfg: TrainConfig) -> dict:
    """{"sampler": {name, version, config}} for a run whose sampler is not the uniform default (every
    option filled in, so a changed sampler default or version is a new run id); {} otherwise, so the
    run ids of runs stored before samplers were a registry stay valid."""
    if tcfg.regime != "negative" or (tcfg.sampler == "uniform" and not tcfg.sampler_options):
        return {}
    cls = get_sampler(tcfg.sampler)
    return {"sampler": {"name": tcfg.sampler, "version": cls.version,
                        "config": asdict(sampler_config(tcfg.sampler, tcfg.sampler_options))}}


def scenario_config(cell: Cell) -> dict:
    """What a cell's scenario does, as recorded in the config (and so in the run id).

    A cell whose steps are all at level 0 (or clean) sees the unperturbed data, so it is recorded as
    clean: `noisy = [0.0, 0.1]` reuses the clean run instead of training the same model twice.
    """
    swept = [level is None for _, level, _ in cell.entry_steps()]
    steps = [(n, lv, o, sw) for (n, lv, o), sw in zip(cell.scenario_steps(), swept) if lv > 0 and n != "clean"]
    if not steps:
        return {"name": "clean", "level": 0.0, "version": SCENARIOS["clean"].version}
    versions = [SCENARIOS[n].version for n, _, _, _ in steps]
    return {"name": cell.scenario, "level": cell.level,
            "version": versions[0] if len(steps) == 1 else "+".join(map(str, versions)),
            "steps": [{"name": n, "level": lv, "version": SCENARIOS[n].version, "options": o, "swept": sw}
                      for n, lv, o, sw in steps]}




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




def training_config(config: dict, cls) -> dict:
    """The part of a resolved config that determines training: the config with the model's name
    replaced by its registered base, and its `scoring_fields` at their defaults.

    Under a protocol that selects on valid, a scoring field changes only how the selected checkpoint
    scores test, so cells that differ only there share a training (selected with the default scoring,
    e.g. MoMoK's mean decision). Under a protocol that watches test while training (reference), the
    scoring field shapes the watched numbers themselves, so nothing is shared; nor under an audit,
    whose test rankings at every evaluation use the training's scoring.
    """
    protocol = BY_VERSION[config["protocol"]]
    # An audit ranks test with the training's scoring at every evaluation: its rows belong to one cell.
    if protocol.watched != "valid" or protocol.audits or not cls.scoring_fields:
        return config
    out = copy.deepcopy(config)
    out["model"] = out.pop("base_model", out["model"])
    defaults = {f.name: f.default for f in dataclasses.fields(cls.Config)}
    for name in cls.scoring_fields:
        out["model_config"][name] = defaults[name]
    return out


def training_id(config: dict, cls) -> str:
    """Id of the training a cell needs; equal to its run id unless it shares one (see training_config)."""
    return run_id_of(training_config(config, cls))


def scoring_of(config: dict, cls) -> dict:
    """The values of the model's scoring fields in a resolved config."""
    return {name: config["model_config"][name] for name in cls.scoring_fields}


def model_modalities(cls, data: MMKG) -> tuple[str, ...]:
    """The modalities of `data` a model class reads; an error when it needs one the data lacks."""
    missing = [m for m in cls.modalities if m != "*" and m not in data.features]
    if missing:
        raise ValueError(f"{cls.__name__} needs modalities {missing}, which {data.name} does not have "
                         f"(it has {list(data.modalities) or 'none'})")
    return data.modalities if cls.modalities == ("*",) else tuple(cls.modalities)


def stale_reasons(config: dict) -> list[str]:
    """Why a stored run's config no longer matches the code: a model, scenario or protocol version
    that differs from the current one (empty when it is current). Such a run is never reused by `run`
    (its run id differs from the current one) and `prune --stale` moves it aside."""
    from mmkgbench.models import MODELS
    from mmkgbench.protocol import BY_VERSION
    reasons = []
    model = config.get("base_model") or config.get("model")
    if model not in MODELS:
        reasons.append(f"model {model!r} is not registered")
    elif config.get("model_version") != MODELS[model].version:
        reasons.append(f"{model} version {config.get('model_version', 'unversioned')} != current {MODELS[model].version}")
    if config.get("protocol") not in BY_VERSION:
        reasons.append(f"protocol {config.get('protocol')!r} is not one of {sorted(BY_VERSION)}")
    sampler = config.get("sampler")
    if sampler is not None:
        if sampler.get("name") not in SAMPLERS:
            reasons.append(f"sampler {sampler.get('name')!r} is not registered")
        elif sampler.get("version") != SAMPLERS[sampler["name"]].version:
            reasons.append(f"sampler {sampler['name']} version {sampler.get('version')} != current "
                           f"{SAMPLERS[sampler['name']].version}")
    scenario = config.get("scenario", {})
    for step in scenario.get("steps") or [{"name": scenario.get("name"), "version": scenario.get("version")}]:
        if step.get("name") not in SCENARIOS:
            reasons.append(f"scenario {step.get('name')!r} is not registered")
        elif step.get("version") != SCENARIOS[step["name"]].version:
            reasons.append(f"scenario {step['name']} version {step.get('version')} != current "
                           f"{SCENARIOS[step['name']].version}")
    return reasons
