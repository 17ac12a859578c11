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
    results/quarantine/<folder>/           a damaged or foreign run folder, moved out of runs/ with
                                           QUARANTINE.txt saying why (see `check_run`)

A run is written into a hidden temporary folder and renamed into place in one step, so a run
folder either holds all its files or does not exist: a killed run leaves nothing a report reads.
Runs are never rewritten; reading = concatenating all valid run folders. A folder is valid only if
its name is the hash of its config.json and every file parses with the columns it should have
(`check_run`); `valid_runs` moves any other folder to quarantine/ (a copy `<id>_bak`, a truncated
rows.csv, a folder without rows.csv), so `report` never reads it and `run` redoes the run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROW_COLUMNS = ["run_id", "model", "model_version", "dataset", "scenario", "scenario_version", "level", "seed", "split", "side",
               "metric", "value", "source", "protocol", "filter", "selection", "best_epoch", "epochs",
               "dataset_fingerprint", "code_version", "device", "started_at", "wall_s", "train_s", "config_json"]
VIEWS_FILE = "interpretation.json"          # a run's interpretation views (see write_run)
AUDIT_FILE = "audit.csv"                    # an audit-protocol run's test rankings at every evaluation
# per_query.csv.gz: the run id, mmkgbench.evaluate.QUERY_COLUMNS, and the split (tests/test_results.py
# checks that the two lists agree; this module stays free of torch, so `report` starts fast).
PER_QUERY_COLUMNS = ["run_id", "query_id", "h", "r", "t", "side", "rank_opt", "rank_pess", "rank_real", "rank_rand",
                     "n_cand", "split"]
# Row columns a valid run fills in every row (the others may be empty, e.g. best_epoch of a run that
# never evaluated).
REQUIRED_ROW_VALUES = ["run_id", "model", "dataset", "scenario", "level", "seed", "split", "side", "metric", "value",
                       "protocol"]


def run_id_of(config: dict) -> str:
    """The run id: the first 16 hex digits of the SHA-256 of the config's canonical JSON."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
              arrays: dict[str, np.ndarray] | None = None, views: dict[str, dict] | None = None,
              audit: pd.DataFrame | None = None) -> Path:
    """Write one finished run atomically; returns its folder. An existing run is left untouched.

    extra: name -> frame, written as `interpret_<name>.csv` (what a model says about itself, e.g.
    MoMoK's expert gates per relation), inside the same atomic folder.
    arrays: name -> array, written as `perturbation.npz` (what the scenario did; see
    mmkgbench.scenarios.perturbation), when not empty.
    views: figure name -> view, the model's `interpretation_views` (how the report draws the `extra`
    tables; see mmkgbench.figures.check_view), written as `interpretation.json` when not empty. Each
    view is a JSON-able dict whose "table" names one of `extra`; ValueError otherwise, before
    anything is written.
    audit: the audit record of an audit-protocol run (mmkgbench.conventions.AUDIT_COLUMNS), written
    as `audit.csv`.
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
        if audit is not None:
            audit.to_csv(tmp / AUDIT_FILE, index=False)
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


def read_rows(path) -> pd.DataFrame:
    """One rows.csv as stored (empty strings are missing values, every other text kept as written)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def load_rows(root, run_ids=None, log=None) -> pd.DataFrame:
    """The rows of every valid run under `root` (optionally only `run_ids`) as one frame with
    ROW_COLUMNS. Damaged folders are moved to quarantine/ first (`valid_runs`; `log` hears of each)."""
    frames = [read_rows(runs_dir(root) / rid / "rows.csv") for rid in valid_runs(root, run_ids, log=log)]
    if not frames:
        return pd.DataFrame(columns=ROW_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def check_run(folder) -> list[str]:
    """What is wrong with a run folder: [] for a valid one.

    Valid means: config.json is a JSON object whose "config" hashes to the folder's name (so a copy
    `<id>_bak`, or a config edited by hand, is not a run); rows.csv parses, has every column of
    ROW_COLUMNS, fills REQUIRED_ROW_VALUES, has numeric values, names this run and its model in every
    row, holds no row twice and every split the run's protocol stores, with the same metrics on every
    side; per_query.csv.gz parses to the end (gzip's checksum catches a truncated file) with
    PER_QUERY_COLUMNS and integer ranks >= 1; history.csv parses with an `epoch` column; the optional
    interpretation tables, interpretation.json and perturbation.npz parse.
    """
    from mmkgbench.protocol import BY_VERSION
    folder = Path(folder)
    name = folder.name
    try:
        provenance = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ["no config.json"]
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return [f"config.json is not valid JSON ({err})"]
    config = provenance.get("config") if isinstance(provenance, dict) else None
    if not isinstance(config, dict):
        return ["config.json holds no \"config\" object"]
    if run_id_of(config) != name:
        return [f"the folder's name is not the hash of its config.json (that is {run_id_of(config)}): a copy, a "
                "renamed folder or an edited config"]
    problems = []
    try:
        rows = read_rows(folder / "rows.csv")
    except FileNotFoundError:
        return ["no rows.csv"]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        return [f"rows.csv does not parse ({str(err).strip()})"]
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        return [f"rows.csv lacks the columns {missing} (header damaged or from another version)"]
    if rows.empty:
        return ["rows.csv holds no rows"]
    empty = [c for c in REQUIRED_ROW_VALUES if rows[c].isna().any()]
    if empty:
        problems.append(f"rows.csv has empty cells in {empty} (truncated?)")
    for column in ("value", "level", "seed"):
        values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all():
            problems.append(f"rows.csv: {column} is not a finite number in {int((~np.isfinite(values)).sum())} row(s)")
    if set(rows["run_id"].astype(str)) != {name}:
        problems.append(f"rows.csv names other runs {sorted(set(rows['run_id'].astype(str)) - {name})}")
    if set(rows["model"].astype(str)) != {str(config.get("model"))}:
        problems.append(f"rows.csv names models {sorted(set(rows['model'].astype(str)))}, config.json "
                        f"{config.get('model')!r}")
    if rows.duplicated(["protocol", "split", "side", "metric"]).any():
        problems.append("rows.csv holds a (protocol, split, side, metric) twice")
    # Exactly the rows the run's protocol and evaluation settings write: a file cut at a line break
    # parses, but lacks some of them.
    protocol = BY_VERSION.get(config.get("protocol"))
    hits = (config.get("eval") or {}).get("hits_at")
    if protocol is not None and isinstance(hits, list):
        want = protocol.expected_rows(hits)
        got = set(zip(rows["protocol"].astype(str), rows["split"], rows["side"], rows["metric"]))
        if got != want:
            lost, extra = sorted(want - got), sorted(got - want)
            problems.append("rows.csv " + "; ".join(
                ([f"lacks {len(lost)} row(s), e.g. {lost[0]} (truncated?)"] if lost else []) +
                ([f"holds {len(extra)} unexpected row(s), e.g. {extra[0]}"] if extra else [])))
    else:
        problems.append(f"config.json names an unknown protocol {config.get('protocol')!r} or no eval.hits_at")
    problems += check_per_query(folder / "per_query.csv.gz", name)
    try:
        history = pd.read_csv(folder / "history.csv")
        if "epoch" not in history.columns or history.empty:
            problems.append("history.csv has no epoch rows")
    except FileNotFoundError:
        problems.append("no history.csv")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        problems.append(f"history.csv does not parse ({str(err).strip()})")
    if protocol is not None and protocol.audits:
        problems += check_audit(folder / AUDIT_FILE, name)
    for path in sorted(folder.glob("interpret_*.csv")):
        try:
            pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            problems.append(f"{path.name} does not parse ({str(err).strip()})")
    if (folder / VIEWS_FILE).exists():
        try:
            if not isinstance(json.loads((folder / VIEWS_FILE).read_text(encoding="utf-8")), dict):
                problems.append(f"{VIEWS_FILE} is not an object of views")
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            problems.append(f"{VIEWS_FILE} is not valid JSON ({err})")
    if (folder / "perturbation.npz").exists():
        try:
            with np.load(folder / "perturbation.npz") as z:
                for key in z.files:
                    z[key]
        except Exception as err:  # a damaged zip raises zipfile, OSError or ValueError errors
            problems.append(f"perturbation.npz does not load ({type(err).__name__}: {err})")
    return problems


def check_audit(path: Path, run_id: str) -> list[str]:
    """What is wrong with an audit-protocol run's audit.csv ([] when nothing is)."""
    from mmkgbench.conventions import AUDIT_COLUMNS, AUDIT_USE
    try:
        audit = pd.read_csv(path)
    except FileNotFoundError:
        return [f"no {path.name} (an audit-protocol run stores its test rankings there)"]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        return [f"{path.name} does not parse ({str(err).strip()})"]
    missing = [c for c in AUDIT_COLUMNS if c not in audit.columns]
    if missing:
        return [f"{path.name} lacks the columns {missing}"]
    problems = []
    if audit.empty:
        problems.append(f"{path.name} holds no evaluations")
    if set(audit["run_id"].astype(str)) - {run_id}:
        problems.append(f"{path.name} names other runs")
    if set(audit["use"].astype(str)) - {AUDIT_USE}:
        problems.append(f"{path.name}: a record not marked {AUDIT_USE!r}")
    if not np.isfinite(pd.to_numeric(audit["value"], errors="coerce").to_numpy(dtype=float)).all():
        problems.append(f"{path.name}: a value is not a finite number")
    return problems


def check_per_query(path: Path, run_id: str) -> list[str]:
    """What is wrong with a run's per_query.csv.gz ([] when nothing is)."""
    try:
        pq = pd.read_csv(path)
    except FileNotFoundError:
        return ["no per_query.csv.gz"]
    except Exception as err:  # gzip (BadGzipFile, EOFError), zlib and parser errors all mean damaged
        return [f"per_query.csv.gz does not parse ({type(err).__name__}: {str(err).strip()})"]
    missing = [c for c in PER_QUERY_COLUMNS if c not in pq.columns]
    if missing:
        return [f"per_query.csv.gz lacks the columns {missing}"]
    problems = []
    if pq.empty:
        problems.append("per_query.csv.gz holds no queries")
    if set(pq["run_id"].astype(str)) - {run_id}:
        problems.append("per_query.csv.gz names other runs")
    # Ranks are integers >= 1, except the realistic rank, the mean of the optimistic and pessimistic
    # ones, which may end in .5.
    for column, step in (("rank_opt", 1), ("rank_pess", 1), ("rank_real", 2), ("rank_rand", 1), ("n_cand", 1)):
        values = pd.to_numeric(pq[column], errors="coerce")
        if values.isna().any() or (values < 1).any() or ((values * step) != (values * step).round()).any():
            problems.append(f"per_query.csv.gz: {column} is not {'an integer' if step == 1 else 'a multiple of 0.5'} "
                            ">= 1 everywhere")
            break
    return problems


def valid_runs(root, run_ids=None, log=None, move: bool = True) -> list[str]:
    """The valid run folders under `root`/runs (only those in `run_ids` when given), sorted by name.

    Every other folder (hidden temporary folders of runs in progress aside) is moved to
    `root`/quarantine/ by `quarantine` and named to `log` (default: a warning on stderr) with its
    problems; the run it held, if any, is then not stored, so `run` trains it again. With `move`
    false (a dry run) such folders are only named and left out.
    """
    log = log or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    d = runs_dir(root)
    out = []
    for p in sorted(d.iterdir()) if d.is_dir() else []:
        if p.name.startswith(".") or (run_ids is not None and p.name not in run_ids):
            continue
        if not p.is_dir():
            problems = ["not a folder"]
        else:
            problems = check_run(p)
        if not problems:
            out.append(p.name)
            continue
        if not p.exists():                  # moved aside meanwhile (prune, another process's quarantine)
            continue
        if not move:
            log(f"{p}: {'; '.join(problems)}; would be moved to {Path(root) / 'quarantine'}")
            continue
        target = quarantine(root, p, problems)
        if target is not None:
            log(f"{p}: {'; '.join(problems)}; moved to {target} (`run` redoes the run)")
    return out


def quarantine(root, path: Path, problems: list[str]) -> Path | None:
    """Move a damaged run folder to `root`/quarantine/<name> (a new name if taken) in one rename and
    write QUARANTINE.txt into it; None when another process moved it first."""
    target = Path(root) / "quarantine" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target = target.with_name(f"{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    if target.is_dir():
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        (target / "QUARANTINE.txt").write_text(f"moved from {path} on {when}:\n" +
                                               "".join(f"- {p}\n" for p in problems))
    return target


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


def load_audit(root, run_ids=None) -> pd.DataFrame:
    """The audit records (audit.csv, mmkgbench.conventions.AUDIT_COLUMNS) of the stored audit-protocol
    runs under `root` (only `run_ids` when given): test ranked at every evaluation, for audit only."""
    frames = []
    for path in sorted(runs_dir(root).glob(f"*/{AUDIT_FILE}")):
        if run_ids is None or path.parent.name in run_ids:
            frames.append(pd.read_csv(path))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["run_id", "epoch", "split", "tie", "side", "metric", "value", "use"])
