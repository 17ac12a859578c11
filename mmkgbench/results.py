"""Results on disk: one folder per finished run, written atomically, read back as tidy frames.

    results/runs/<run_id>/config.json      the resolved config (its hash is the run id) + provenance
    results/runs/<run_id>/rows.csv         tidy long rows: one per split x side x metric
    results/runs/<run_id>/per_query.csv.gz one row per evaluated query (valid and test)
    results/runs/<run_id>/history.csv      one row per epoch: loss, lr, valid metrics when evaluated
    results/runs/<run_id>/interpret_*.csv  what a model says about itself (MoMoK gates, MoCME weights)
    results/runs/<run_id>/interpretation.json  how to draw those tables: the model's
                                           `interpretation_views` (absent when it declares none)
    results/runs/<run_id>/perturbation.npz what the scenario did (noised or removed entities, dropped
                                           and added triples); absent for clean runs
    results/failed/<run_id>.json           the error of a run that failed (removed once it succeeds)

A run is written into a hidden temporary folder and renamed into place in one step, so a run
folder either holds all its files or does not exist: a killed run leaves nothing a report reads.
Runs are never rewritten; reading = concatenating all run folders.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

ROW_COLUMNS = ["run_id", "model", "model_version", "dataset", "scenario", "scenario_version", "level", "seed", "split", "side",
               "metric", "value", "source", "protocol", "filter", "selection", "best_epoch", "epochs",
               "dataset_fingerprint", "code_version", "device", "started_at", "wall_s", "train_s", "config_json"]
VIEWS_FILE = "interpretation.json"          # a run's interpretation views (see write_run)


def runs_dir(root) -> Path:
    return Path(root) / "runs"


def is_done(root, run_id: str) -> bool:
    return (runs_dir(root) / run_id / "rows.csv").is_file()


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_run(root, run_id: str, config: dict, rows: pd.DataFrame, per_query: pd.DataFrame,
              history: pd.DataFrame, extra: dict[str, pd.DataFrame] | None = None,
              arrays: dict[str, np.ndarray] | None = None, views: dict[str, dict] | None = None) -> Path:
    """Write one finished run atomically; returns its folder. An existing run is left untouched.

    extra: name -> frame, written as `interpret_<name>.csv` (what a model says about itself, e.g.
    MoMoK's expert gates per relation), inside the same atomic folder.
    arrays: name -> array, written as `perturbation.npz` (what the scenario did; see
    mmkgbench.scenarios.perturbation), when not empty.
    views: figure name -> view, the model's `interpretation_views` (how the report draws the `extra`
    tables; see mmkgbench.figures.check_view), written as `interpretation.json` when not empty. Each
    view is a JSON-able dict whose "table" names one of `extra`; ValueError otherwise, before
    anything is written.
    """
    views_json = _views_json(views, extra or {}, run_id) if views else None
    final = runs_dir(root) / run_id
    tmp = runs_dir(root) / f".tmp-{run_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
        rows.to_csv(tmp / "rows.csv", index=False)
        per_query.to_csv(tmp / "per_query.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
        history.to_csv(tmp / "history.csv", index=False)
        for name, frame in (extra or {}).items():
            frame.to_csv(tmp / f"interpret_{name}.csv", index=False)
        if arrays:
            np.savez_compressed(tmp / "perturbation.npz", **arrays)
        if views_json is not None:
            (tmp / VIEWS_FILE).write_text(views_json)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(tmp, final)            # atomic; fails if another process finished the same run first
        except OSError:
            if not is_done(root, run_id):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        _fsync_dir(runs_dir(root))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    failed = Path(root) / "failed" / f"{run_id}.json"
    failed.unlink(missing_ok=True)
    return final


def load_interpretation(root, run_id: str) -> dict[str, pd.DataFrame]:
    """The `interpret_<name>.csv` tables of a stored run (empty for models that write none)."""
    folder = runs_dir(root) / run_id
    return {p.stem[len("interpret_"):]: pd.read_csv(p) for p in sorted(folder.glob("interpret_*.csv"))}


def _views_json(views: dict, extra: dict, run_id: str) -> str:
    """`views` as the text of interpretation.json, checked against the tables the run writes."""
    for name, view in views.items():
        if not isinstance(view, dict) or not isinstance(view.get("table"), str):
            raise ValueError(f"run {run_id}: interpretation view {name!r} must be a dict with a 'table' name, "
                             f"not {view!r}")
        if view["table"] not in extra:
            raise ValueError(f"run {run_id}: interpretation view {name!r} draws table {view['table']!r}, which the "
                             f"model did not return (its tables: {', '.join(sorted(extra)) or 'none'})")
    try:
        return json.dumps(views, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise ValueError(f"run {run_id}: interpretation views must be plain JSON (str, numbers, lists, dicts): "
                         f"{err}") from None


def load_interpretation_views(root, run_id: str) -> dict[str, dict]:
    """The figure views a stored run declares (`interpretation.json`): name -> view; {} when the run
    has none (models that explain nothing, and runs stored before views were recorded)."""
    path = runs_dir(root) / run_id / VIEWS_FILE
    if not path.is_file():
        return {}
    try:
        views = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(views, dict):
        raise ValueError(f"{path}: expected an object of views (name -> view), found {type(views).__name__}")
    return views


def write_text_atomic(path, text: str) -> Path:
    """Write `text` to `path` through a hidden temporary file and one rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_failure(root, run_id: str, info: dict) -> Path:
    """Record why a run failed (atomically); it is retried by the next `run`."""
    return write_text_atomic(Path(root) / "failed" / f"{run_id}.json",
                             json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")


def clean_stale(root) -> list[Path]:
    """Remove temporary folders left by killed processes (their pid no longer runs)."""
    removed = []
    d = runs_dir(root)
    if not d.is_dir():
        return removed
    for p in d.glob(".tmp-*"):
        try:
            pid = int(p.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_rows(root, run_ids=None) -> pd.DataFrame:
    """All result rows under `root` (optionally only `run_ids`) as one frame with ROW_COLUMNS."""
    d = runs_dir(root)
    frames = []
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if p.name.startswith(".") or not (p / "rows.csv").is_file():
                continue
            if run_ids is not None and p.name not in run_ids:
                continue
            frames.append(pd.read_csv(p / "rows.csv", keep_default_na=False, na_values=[""]))
    if not frames:
        return pd.DataFrame(columns=ROW_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def load_per_query(root, run_id: str) -> pd.DataFrame:
    """Per-query ranks of one run: split, query_id, h, r, t, side, rank_opt, rank_pess, rank_real, n_cand."""
    return pd.read_csv(runs_dir(root) / run_id / "per_query.csv.gz")


def load_perturbation(root, run_id: str) -> dict[str, np.ndarray]:
    """What the scenario of a stored run did: `<step>:<scenario>/<what>` -> array ({} for clean runs)."""
    path = runs_dir(root) / run_id / "perturbation.npz"
    if not path.is_file():
        return {}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def move_aside(root, run_id: str, folder: str = "stale") -> Path:
    """Move a stored run out of `runs/` into `<root>/<folder>/<run_id>` in one rename (never lost, never
    read by `report` or reused by `run` again); returns its new place."""
    target = Path(root) / folder / run_id
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target = target.with_name(f"{run_id}-{uuid.uuid4().hex[:8]}")
    os.rename(runs_dir(root) / run_id, target)
    return target


def load_config(root, run_id: str) -> dict:
    return json.loads((runs_dir(root) / run_id / "config.json").read_text())
