"""Executing cells and grids: train, select, evaluate, store; resumable.

`run_grid` runs every cell of a grid that is not stored yet. Cells whose configs differ only in a
model's scoring fields (mmkgbench.resolve.training_id) are one training: the model is trained and
its checkpoint selected once, then each cell's scoring is switched on (`KGEModel.rescore`), its
splits are evaluated and its run is stored under its own run id. The protocol object
(mmkgbench.protocol) says which split is watched, which splits are stored and what the rows say; this
module tests for no protocol or model by name.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmkgbench.claims import WAIT_POLL_S, claim_holder, take_claim
from mmkgbench.data import MMKG
from mmkgbench.datasets import load_dataset
from mmkgbench.evaluate import EvalConfig, evaluate
from mmkgbench.features import fill_features
from mmkgbench.grid import INPUT_DEFAULTS, Cell, Grid, GridError
from mmkgbench.model import ModelInputs
from mmkgbench.conventions import AUDIT_COLUMNS, DERIVED_NOTE, audit_records, derived_metrics
from mmkgbench.protocol import BY_VERSION, PROTOCOLS
from mmkgbench.ranking import KnownAnswers
from mmkgbench.samplers import sampler_modalities
from mmkgbench.resolve import (code_version, model_modalities, resolve, run_id_of, scoring_of, training_config,
                               training_id)
from mmkgbench.results import ROW_COLUMNS, clean_stale, is_done, runs_dir, valid_runs, write_failure, write_run
from mmkgbench.scenarios import apply_steps, perturbation
from mmkgbench.train import TrainConfig, best_per_metric, train


def pick_device(name: str = "auto") -> torch.device:
    """Chosen once per process: CUDA when present (or asked for), else CPU.

    A device string torch does not parse, or a device this machine does not have, raises
    ValueError naming the value and what to use instead: the command line prints it as one error
    line (exit 2) rather than a traceback from deep inside torch or the first training.
    """
    forms = "auto, cpu, cuda or cuda:N"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"--device {name!r}: not a device torch knows; use one of {forms}") from None
    # Other torch device types (mps, meta, xla ...) parse, but the runner (determinism, RNG forking,
    # the device name in the rows) handles only these two.
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: device type {dev.type!r} is not supported; use one of {forms}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"torch {torch.__version__} built without CUDA" if torch.version.cuda is None
                   else f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU")
            raise ValueError(f"--device {name}: torch sees no CUDA device on this machine ({why}); "
                             "use --device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"--device {name}: torch sees {count} CUDA device(s) on this machine, "
                             f"cuda:0 to cuda:{count - 1}; use one of those, cuda or auto")
    return dev


def model_inputs(data: MMKG, modalities, fill: str) -> ModelInputs:
    """What a model (or a sampler) reads of `data`: the named modalities' features with absent rows
    filled by the run's policy, so nothing ever reads whatever a loader or scenario left there."""
    present = {m: torch.from_numpy(np.array(data.present[m])) for m in modalities}
    features = {m: fill_features(torch.from_numpy(np.array(data.features[m])), present[m], fill) for m in modalities}
    return ModelInputs(num_entities=data.num_entities, num_relations=2 * data.num_relations,
                       features=features, present=present, fill=fill)


def build_model(cell: Cell, config: dict, data: MMKG):
    """The model of a cell on the CPU, initialised from a generator derived from the seed."""
    cls = cell.model_class
    fill = config["inputs"].get("fill", INPUT_DEFAULTS["fill"])
    inputs = model_inputs(data, model_modalities(cls, data), fill)
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([cell.seed, 1]).generate_state(1)[0]))
    return cls(cls.Config(**config["model_config"]), inputs, gen)


def sampler_inputs(config: dict, data: MMKG) -> ModelInputs | None:
    """The features a run's negative sampler reads (MMRNS), or None when it reads none."""
    tcfg = TrainConfig(**config["train"])
    wanted = sampler_modalities(tcfg.sampler, data) if tcfg.regime == "negative" else ()
    if not wanted:
        return None
    return model_inputs(data, wanted, config["inputs"].get("fill", INPUT_DEFAULTS["fill"]))


def run_cell(cell: Cell, data: MMKG, root, *, device: torch.device, progress: bool = False) -> tuple[str, dict]:
    """Train, select, evaluate and store one cell. Returns (run_id, config)."""
    (rid, config), = run_cells([cell], data, root, device=device, progress=progress)
    return rid, config


def run_cells(cells: list[Cell], data: MMKG, root, *, device: torch.device,
              progress: bool = False) -> list[tuple[str, dict]]:
    """Train once for cells that share a training (the same `training_id`), then evaluate and store
    each cell under its own run id. Returns [(run_id, config)] in the order of `cells`.

    The protocol decides the rest: under "harness" valid is watched (checkpoint selection, early
    stopping) and valid and test are stored; under "reference" test is watched and the stored test
    rows hold the best value of each metric over those evaluations (train.best_per_metric), with the
    per-query ranks of the checkpoint with the best test MRR; under "audit" the harness rows are
    stored, and test is also ranked at every evaluation for the audit record, from which the rows of
    the conventions it names are derived (mmkgbench.conventions).
    """
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    configs = [resolve(c, data) for c in cells]
    cls = cells[0].model_class
    shared = {training_id(cfg, c.model_class) for c, cfg in zip(cells, configs)}
    if len(shared) != 1:
        raise ValueError(f"run_cells: the cells {[c.label() for c in cells]} do not share one training")
    lead, lead_config = cells[0], configs[0]
    protocol = BY_VERSION[lead_config["protocol"]]
    perturbed = apply_steps(data, [(s["name"], s["level"], s["options"])
                                   for s in lead_config["scenario"].get("steps", [])], lead.seed)
    tcfg, ecfg = TrainConfig(**lead_config["train"]), EvalConfig(**lead_config["eval"])
    R = perturbed.num_relations
    # Filters are built from the unperturbed splits: a scenario changes what a model sees, never
    # which answers count as true.
    parts = {"train": data.train, "valid": data.valid, "test": data.test}
    known = {split: KnownAnswers(np.concatenate([parts[s] for s in protocol.filter_splits(split, ecfg)]), R).to(device)
             for split in {protocol.watched, *protocol.stored_splits}}
    triples = {"valid": perturbed.valid, "test": perturbed.test}
    devices = [device.index or 0] if device.type == "cuda" else []
    out = []
    with torch.random.fork_rng(devices=devices), deterministic(device), threads(tcfg.threads):
        torch.manual_seed(lead.seed)            # dropout draws from the global RNG: seed it, scoped to this run
        model = build_model(lead, lead_config, perturbed).to(device)
        # A shared training watches (selects on) the scoring of the training config: the defaults
        # (MoMoK's mean decision) where scoring fields are shared, the cell's own otherwise.
        model.rescore(**scoring_of(training_config(lead_config, cls), cls))
        audit = None
        if protocol.audits:
            # Test ranked at every evaluation, after that evaluation's selection decision (train's
            # `audit` hook): a record for the derived rows, which nothing in training reads.
            def audit(epoch):
                ev = evaluate(model, triples["test"], known["test"], num_relations=R, cfg=ecfg, device=device,
                              seed=lead.seed)
                return audit_records(ev.per_query, epoch, ecfg.hits_at)
        result = train(model, perturbed.train, R, perturbed.num_entities, tcfg, valid_triples=triples[protocol.watched],
                       known_valid=known[protocol.watched], eval_cfg=ecfg, device=device, seed=lead.seed,
                       progress=progress, desc=lead.label(), watched=protocol.watched, audit=audit,
                       sampler_inputs=sampler_inputs(lead_config, perturbed))
        # What the model says about itself (MoMoK: expert gates per relation), on the training split.
        extra = model.interpretation(torch.from_numpy(np.array(perturbed.train)).to(device))
        _name_relations(extra, perturbed)
        train_wall = time.perf_counter() - t0
        for cell, config in zip(cells, configs):
            t1 = time.perf_counter()
            model.rescore(**scoring_of(config, cls))
            if hasattr(model, "calibrate"):
                # A scoring fitted after training (MoSE's boosting and meta-learner ensembles), always on
                # the validation split with its filter, whatever split the protocol watches: test is
                # never fitted on. What the model explains then depends on the fit: asked again.
                if "valid" not in known:
                    known["valid"] = KnownAnswers(np.concatenate([parts[s] for s in protocol.filter_splits("valid", ecfg)]),
                                                  R).to(device)
                model.calibrate(perturbed.valid, known["valid"], seed=cell.seed)
                extra = model.interpretation(torch.from_numpy(np.array(perturbed.train)).to(device))
                _name_relations(extra, perturbed)
            evals = {split: evaluate(model, triples[split], known[split], num_relations=R, cfg=ecfg, device=device,
                                     seed=cell.seed) for split in protocol.stored_splits}
            if protocol.best_per_metric:
                # Side "both" holds the best of each metric over the evaluations (the reference's report);
                # head and tail are left out, because the reference code never reports them that way.
                evals["test"].metrics = {"both": best_per_metric(result.history, protocol.watched)}
            wall = train_wall + time.perf_counter() - t1
            rid = _store(root, cell, config, perturbed, model, result, evals, extra, device=device, started=started,
                         wall=wall, training=training_id(config, cls), shared_with=len(cells))
            out.append((rid, config))
    return out


def _name_relations(tables: dict, data: MMKG) -> None:
    """Add a `relation_name` column beside the `relation` ids of interpretation tables, in place."""
    for frame in tables.values():
        if "relation" in frame.columns and "relation_name" not in frame.columns:
            frame.insert(frame.columns.get_loc("relation") + 1, "relation_name",
                         [data.relations[i] for i in frame["relation"]])


def _store(root, cell: Cell, config: dict, perturbed: MMKG, model, result, evals: dict, extra: dict, *,
           device, started: str, wall: float, training: str, shared_with: int) -> str:
    """Write one evaluated cell as a run folder (mmkgbench.results.write_run); returns its run id."""
    rid = run_id_of(config)
    protocol = BY_VERSION[config["protocol"]]
    record = perturbation(perturbed)
    config_json = json.dumps(config, sort_keys=True, default=str)
    audit = pd.DataFrame(result.audit, columns=[c for c in AUDIT_COLUMNS if c != "run_id"])
    audit.insert(0, "run_id", rid)
    common = {"run_id": rid, "model": cell.model, "model_version": config["model_version"], "dataset": perturbed.name,
              "scenario": config["scenario"]["name"],
              "scenario_version": config["scenario"]["version"], "level": config["scenario"]["level"],
              "seed": cell.seed, "source": "bench", "protocol": protocol.row_version,
              "selection": protocol.selection or result.selection["rule"],
              "best_epoch": result.best_epoch, "epochs": result.epochs,
              "dataset_fingerprint": config["dataset"]["fingerprint"], "code_version": code_version(),
              "device": device_name(device), "started_at": started, "wall_s": round(wall, 3),
              "train_s": round(result.seconds, 3), "config_json": config_json}
    rows = [{**common, "split": split, "side": side, "metric": metric, "value": value,
             "filter": config["filter"][split]}
            for split, ev in evals.items() for side, ms in ev.metrics.items() for metric, value in ms.items()]
    for key in protocol.audits:             # the published conventions, from the audit record (mmkgbench.conventions)
        view = PROTOCOLS[key]
        derived, epoch = derived_metrics(audit, view)
        rows += [{**common, "source": "audit", "protocol": view.version,
                  "selection": f"{view.selection}; {DERIVED_NOTE}", "best_epoch": epoch,
                  "split": "test", "side": side, "metric": metric, "value": value, "filter": config["filter"]["test"]}
                 for side, ms in derived.items() for metric, value in ms.items()]
    per_query = pd.concat([ev.per_query.assign(split=split) for split, ev in evals.items()], ignore_index=True)
    per_query.insert(0, "run_id", rid)
    provenance = {"run_id": rid, "config": config, "code_version": common["code_version"],
                  "training": {"id": training, "cells": shared_with},
                  "deterministic_algorithms": device.type == "cpu",
                  "device": common["device"], "torch": torch.__version__, "started_at": started,
                  "wall_s": wall, "train": {k: v for k, v in dataclasses.asdict(result).items() if k not in ("history", "audit")},
                  "dataset_summary": perturbed.summary(), "perturbed_fingerprint": perturbed.fingerprint(),
                  "perturbation": {k: list(v.shape) for k, v in record.items()}}
    write_run(root, rid, provenance, pd.DataFrame(rows, columns=ROW_COLUMNS), per_query,
              pd.DataFrame(result.history), extra, arrays=record, views=model.interpretation_views,
              audit=audit if protocol.audits else None)
    return rid


@contextlib.contextmanager
def deterministic(device: torch.device):
    """Deterministic kernels on the CPU, for the duration of one run.

    With several threads, some CPU kernels (the accumulating index_put behind embedding gradients)
    sum in an order that varies between processes, so the same seed gave slightly different
    numbers in two processes; deterministic kernels make it bit-identical (tests/test_runner.py). On
    CUDA they are left off (they need a cuBLAS workspace setting and cost speed), as in PyKEEN and
    LibKGE.
    """
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(device.type == "cpu" or before)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


@contextlib.contextmanager
def threads(n: int):
    """torch's intra-op thread count set to `n` (TrainConfig.threads, part of the run id) for one run,
    and put back afterwards: the count changes CPU numbers, so it is a setting, not the machine's."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


class GridPlan:
    """A grid's cells resolved against their data: run ids, and the trainings that serve them.

    runs: [(cell index, cell, run id, training id, config)], one per distinct run id in grid order;
    duplicates: [(cell index, index of the cell it repeats, run id)] (e.g. noisy at level 0 = the clean run).
    """

    def __init__(self, grid: Grid, *, fetch_missing: bool = False, mirror: str | None = None):
        self.datasets: dict[str, MMKG] = {}
        self.runs, self.duplicates = [], []
        seen: dict[str, int] = {}
        for i, cell in enumerate(grid.cells, 1):
            key = repr(cell.dataset)
            where = f"{grid.path or grid.name}: {grid.dataset_key(cell.dataset)}"
            if key not in self.datasets:
                try:
                    self.datasets[key] = load_dataset(cell.dataset_spec, base=grid.path.parent if grid.path else None,
                                                      fetch_missing=fetch_missing, mirror=mirror)
                except (ValueError, OSError) as err:       # DataError is a ValueError
                    raise GridError(f"{where} = {cell.dataset_spec!r}: {err}") from None
            try:
                config = resolve(cell, self.datasets[key])
            except GridError:
                raise
            except ValueError as err:                      # e.g. a model that needs a modality the data lacks
                raise GridError(f"{where}: {cell.label()}: {err}") from None
            rid = run_id_of(config)
            if rid in seen:
                self.duplicates.append((i, seen[rid], rid))
                continue
            seen[rid] = i
            self.runs.append((i, cell, rid, training_id(config, cell.model_class), config))

    def data(self, cell: Cell) -> MMKG:
        return self.datasets[repr(cell.dataset)]

    @property
    def run_ids(self) -> set[str]:
        return {rid for _, _, rid, _, _ in self.runs}

    @property
    def trainings(self) -> int:
        return len({tid for *_, tid, _ in self.runs})


def grid_run_ids(grid: Grid) -> set[str]:
    """The run ids of a grid under the current code (what `report --grid` reports)."""
    return GridPlan(grid).run_ids


def run_grid(grid: Grid, root="results", *, device: torch.device | None = None, progress: bool = True,
             log=print, fetch_missing: bool = False, mirror: str | None = None) -> dict:
    """Run every cell of `grid` not yet stored under `root`. Failed cells are recorded and skipped.

    Every data set is loaded and every cell resolved before the first training starts, so a bad
    data set or setting stops the grid before anything trains. Returns {"done": [...run ids...],
    "skipped": [...], "failed": [(cell label, error)], "trainings": number of trainings run,
    "by_others": [...run ids of "skipped" that another process stored while this one ran...]}.
    Each training is claimed first (mmkgbench.claims), so processes sharing `root` split the grid.
    """
    device = device or pick_device()
    root = Path(root)
    clean_stale(root)
    valid_runs(root, log=lambda msg: log(f"quarantined: {msg}"))   # damaged folders out of the way, so they are redone
    plan = GridPlan(grid, fetch_missing=fetch_missing, mirror=mirror)
    out = {"done": [], "skipped": [], "failed": [], "trainings": 0}
    n = len(grid.cells)
    for i, j, rid in plan.duplicates:
        out["skipped"].append(rid)
        log(f"[{i}/{n}] {grid.cells[i - 1].label()}: the same run as cell {j} (identical inputs), skipped")
    groups: dict[str, list] = {}
    for entry in plan.runs:
        groups.setdefault(entry[3], []).append(entry)
    # Each training is claimed before it trains (mmkgbench.claims), so several processes (or machines)
    # on one results folder split the grid: a group another live process holds is deferred, and waited
    # for once the rest is done; then its runs are stored (counted in "by_others") or its claim went
    # stale and this process trains it. A run another process recorded as failed is simply tried again.
    out["by_others"] = []
    before = {rid for _, _, rid, _, _ in plan.runs if is_done(root, rid)}    # stored before this process began
    queue = [(tid, [(i, cell, rid) for i, cell, rid, _, _ in entries], False) for tid, entries in groups.items()]
    deferred: dict[str, list] = {}
    told: set[str] = set()
    polls = 0
    while queue or deferred:
        if not queue:                   # one pass done: look at the deferred groups again, then every few s
            if polls:
                time.sleep(WAIT_POLL_S)
            polls += 1
            queue, deferred = [(tid, entries, True) for tid, entries in deferred.items()], {}
        tid, entries, again = queue.pop(0)
        pending = []
        for i, cell, rid in entries:
            if is_done(root, rid):
                out["skipped"].append(rid)
                if rid not in before:
                    out["by_others"].append(rid)
                log(f"[{i}/{n}] {cell.label()}: " + (f"done before ({rid}), skipped" if rid in before
                                                     else f"done by another process ({rid}), skipped"))
            else:
                pending.append((i, cell, rid))
        if not pending:
            continue
        held = take_claim(root, tid)
        if held is None:
            deferred[tid] = pending
            i, cell, _ = pending[0]
            what = cell.label() + (f" (and {len(pending) - 1} more of its training)" if len(pending) > 1 else "")
            who = claim_holder(root, tid) or "another process"
            if not again:
                log(f"[{i}/{n}] {what}: claimed by {who}, deferred")
            elif tid not in told:
                told.add(tid)
                log(f"[{i}/{n}] waiting for {what}: claimed by {who}")
            continue
        try:
            if held.replaced:
                log(f"[{pending[0][0]}/{n}] {pending[0][1].label()}: took over a stale claim ({held.replaced})")
            # Another process may have stored some of these runs between the look above and the claim.
            stored = {rid for _, _, rid in pending if is_done(root, rid)}
            for i, cell, rid in pending:
                if rid in stored:
                    out["skipped"].append(rid)
                    out["by_others"].append(rid)
                    log(f"[{i}/{n}] {cell.label()}: done by another process ({rid}), skipped")
            pending = [p for p in pending if p[2] not in stored]
            if not pending:
                continue
            for i, cell, rid in pending:
                also = f", trained once with {len(pending) - 1} more" if len(pending) > 1 else ""
                log(f"[{i}/{n}] {cell.label()}: running ({rid}{also})")
            out["trainings"] += 1
            run_cells([c for _, c, _ in pending], plan.data(pending[0][1]), root, device=device, progress=progress)
            # One line per finished run, from the rows just stored: with no progress bar (stderr not
            # a terminal, see train._progress) a log still says what each run took and gave.
            for i, cell, rid in pending:
                r = pd.read_csv(runs_dir(root) / rid / "rows.csv")
                mrr = r[(r["side"] == "both") & (r["metric"] == "mrr")].set_index("split")["value"]
                split = "valid" if "valid" in mrr.index else "test"     # the reference protocol stores test only
                log(f"[{i}/{n}] {cell.label()}: done in {r['wall_s'].iloc[0]:.1f} s, {r['epochs'].iloc[0]} epochs "
                    f"(best {r['best_epoch'].iloc[0]}), {split} MRR {mrr.get(split, float('nan')):.4f}")
            out["done"] += [rid for _, _, rid in pending]
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # one bad run must not poison the others: record it and go on
            for i, cell, rid in pending:
                if is_done(root, rid):          # stored before a later cell of the same training failed
                    out["done"].append(rid)
                    continue
                write_failure(root, rid, {"cell": cell.label(), "error": f"{type(err).__name__}: {err}",
                                          "traceback": traceback.format_exc()})
                out["failed"].append((cell.label(), f"{type(err).__name__}: {err}"))
                log(f"[{i}/{n}] {cell.label()}: FAILED: {type(err).__name__}: {err}")
        finally:
            held.release()
    return out
