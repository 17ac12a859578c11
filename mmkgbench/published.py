"""Published numbers stored as data, and our reproduced runs laid beside them in the paper's layout.

A published table is a tidy CSV in `mmkgbench/published/` (schema: that folder's README.md), one
row per printed number:

    table     the registry name ("momok-main")
    section   the paper's group header above the row ("" for a row outside any group)
    row       the paper's row label ("MoSE*", "(2.1) w/o relational ε_r")
    model     our registry key or variant name where we implement the row ("" otherwise)
    dataset   the benchmark (MKG-W, MKG-Y, DB15K, KVC16K, ...)
    metric    mrr, hits@1, hits@3 or hits@10
    value     a fraction (the paper's percentage / 100); empty when the paper has no number
    status    "published", "not reported" (the paper prints "-") or "not yet obtained"
    source    "paper"
    citation  a short citation naming the paper, its arXiv id and the table
  optional:
    note      where the numbers were transcribed from

Rows keep the paper's order, so every table built from a file is deterministic.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from mmkgbench.audit import TEST_AS_PUBLISHED
from mmkgbench.protocol import PROTOCOLS
from mmkgbench.report import summarise
from mmkgbench.tables import HIGHLIGHT, Table, build_table

PUBLISHED = {"momok-main": "momok_main.csv", "momok-ablation": "momok_ablation.csv", "mocme-main": "mocme_main.csv"}
FOLDER = Path(__file__).parent / "published"
COLUMNS = ("table", "section", "row", "model", "dataset", "metric", "value", "status", "source", "citation")
METRICS = ("mrr", "hits@1", "hits@3", "hits@10")
STATUSES = ("published", "not reported", "not yet obtained")
BENCHMARKS = ("MKG-W", "MKG-Y", "DB15K", "KVC16K")
# Families whose rows a paper table can show: every protocol that writes rows of its own (the audit
# protocol writes harness rows, and reference and openke rows derived from its audit record).
PROTOCOL_FAMILIES = tuple(k for k, p in PROTOCOLS.items() if p.rows_as is None)
FRAME_COLUMNS = ["table", "section", "row", "model", "dataset", "metric", "published", "status", "ours", "ours_std",
                 "seeds", "diff", "protocol", "ours_dataset", "citation", "note"]
BASELINES_COPIED = ("Baseline rows were very likely copied by the paper from earlier papers (AdaMF for MKG-W, "
                    "MKG-Y and DB15K; NativE for KVC16K) rather than rerun (methods.md §1.10): do not expect "
                    "reruns to match them exactly.")


def load_published(name: str, *, path: str | Path | None = None) -> pd.DataFrame:
    """The published table `name` (a key of PUBLISHED), validated; columns as in the module docstring,
    `value` a float (NaN where the paper has no number), rows in the file's (the paper's) order.

    path: read this CSV instead of the shipped file (a table being added, tests); its `table`
    column must still say `name`. Every problem is a ValueError naming the file and the line
    (1-based, the header being line 1).
    """
    if name not in PUBLISHED:
        raise ValueError(f"unknown published table {name!r}; choose from {', '.join(sorted(PUBLISHED))}")
    path = Path(path) if path is not None else FOLDER / PUBLISHED[name]
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: line 1: missing columns {missing} (required: {', '.join(COLUMNS)})")
        records, first_line = [], {}
        for rec in reader:
            line = reader.line_num
            bad = _problem(rec, name)
            if bad:
                raise ValueError(f"{path}: line {line}: {bad}")
            key = (rec["table"], rec["row"], rec["dataset"], rec["metric"])
            if key in first_line:
                raise ValueError(f"{path}: line {line}: duplicate cell (row {rec['row']!r}, {rec['dataset']} "
                                 f"{rec['metric']}), first given on line {first_line[key]}")
            first_line[key] = line
            records.append({**rec, "value": float(rec["value"]) if rec["value"] else math.nan})
    if not records:
        raise ValueError(f"{path}: line 1: no rows")
    return pd.DataFrame(records, columns=list(header))


def _problem(rec: dict, name: str) -> str | None:
    """What is wrong with one CSV record, or None."""
    if None in rec or any(v is None for v in rec.values()):
        return "wrong number of fields"
    for col in ("table", "row", "dataset", "metric", "status", "source", "citation"):
        if not rec[col].strip():
            return f"empty {col}"
    if rec["table"] != name:
        return f"table {rec['table']!r}, expected {name!r}"
    if rec["metric"] not in METRICS:
        return f"unknown metric {rec['metric']!r} (valid: {', '.join(METRICS)})"
    if rec["status"] not in STATUSES:
        return f"unknown status {rec['status']!r} (valid: {', '.join(STATUSES)})"
    if not rec["value"]:
        return "empty value with status 'published'" if rec["status"] == "published" else None
    try:
        value = float(rec["value"])
    except ValueError:
        return f"value {rec['value']!r} is not a number"
    if not 0.0 <= value <= 1.0:                       # also refuses nan
        return f"value {rec['value']} out of range [0, 1] (a fraction: the paper's percentage / 100)"
    if rec["status"] != "published":
        return f"a value with status {rec['status']!r}"
    return None


def benchmark_of(dataset_label: str) -> str | None:
    """The published benchmark a result row's data set label stands for: "MKG-W+image+text@momok" ->
    "MKG-W", "DB15K+numeric+text~e5-small" -> "DB15K", "DB15K+image@momok[clean-valid]" -> "DB15K"; None for
    anything else, and for "[clean]" variants (their test split is not the published one). A split
    policy keeps the label comparable only if it keeps test as published (`audit.TEST_AS_PUBLISHED`)."""
    label = str(dataset_label).strip()
    if label.endswith("]"):
        head, _, policy = label[:-1].rpartition("[")
        if not head or policy == "as_published" or policy not in TEST_AS_PUBLISHED:
            return None
        label = head
    base = label
    for sep in "+@~[":
        base = base.split(sep, 1)[0]
    return next((b for b in BENCHMARKS if b.lower() == base.lower()), None)


def paper_frame(rows: pd.DataFrame, name: str, *, protocol: str = "harness", split: str = "test",
                datasets: dict[str, str] | None = None) -> pd.DataFrame:
    """The published table `name` with our stored results beside it, one row per published cell.

    rows: result rows (mmkgbench.results.ROW_COLUMNS); only the clean scenario, side "both", the
    given split and protocol family (one of PROTOCOL_FAMILIES: rows whose protocol starts with it).
    datasets: benchmark -> our data set label, required where several of our labels map to one
    benchmark (e.g. "MKG-W" and "MKG-W+image+text@momok").

    Columns: table, section, row, model, dataset, metric, published, status, ours (mean over seeds,
    NaN where not reproduced), ours_std (NaN for one seed), seeds (0 where not reproduced), diff
    (ours - published), protocol (our rows' protocol, e.g. "harness-v2"; "" where not reproduced),
    ours_dataset (our label used), citation, note. Rows in the paper's order.
    """
    if protocol not in PROTOCOL_FAMILIES:
        raise ValueError(f"protocol must be one of {PROTOCOL_FAMILIES}, got {protocol!r}")
    pub = load_published(name)
    models = set(pub["model"]) - {""}
    if rows.empty:                                    # nothing reproduced yet: the published table alone
        rows = pd.DataFrame(columns=["protocol", "scenario", "model", "dataset"])
    sel = rows[rows["protocol"].astype(str).str.startswith(protocol) & (rows["scenario"] == "clean")
               & rows["model"].isin(models)]
    sel = sel[sel["dataset"].map(benchmark_of).isin(set(pub["dataset"]))]
    labels = _pick_labels(sorted(set(sel["dataset"])), datasets or {})
    sel = sel[sel["dataset"].isin(labels.values())]
    ours = {}
    if not sel.empty:
        summ = summarise(sel, split=split)
        for r in summ.itertuples():
            key = (benchmark_of(r.dataset), r.model, r.metric)
            if key in ours:
                raise ValueError(f"{r.model} on {r.dataset} ({r.metric}) has several result groups (protocols "
                                 f"{ours[key][3]!r} and {r.protocol!r}, or several levels); pass rows of one "
                                 "protocol version")
            ours[key] = (r.mean, r.std, int(r.n_seeds), r.protocol, r.dataset)
    out = []
    for r in pub.itertuples():
        mean, std, n, proto, label = ours.get((r.dataset, r.model, r.metric), (math.nan, math.nan, 0, "", ""))
        out.append({"table": r.table, "section": r.section, "row": r.row, "model": r.model, "dataset": r.dataset,
                    "metric": r.metric, "published": r.value, "status": r.status, "ours": mean, "ours_std": std,
                    "seeds": n, "diff": mean - r.value, "protocol": proto, "ours_dataset": label,
                    "citation": r.citation, "note": getattr(r, "note", "")})
    return pd.DataFrame(out, columns=FRAME_COLUMNS)


def _pick_labels(labels: list[str], chosen: dict[str, str]) -> dict[str, str]:
    """benchmark -> our one data set label; a ValueError where several labels compete and none is chosen."""
    by_bench: dict[str, list[str]] = {}
    for label in labels:
        by_bench.setdefault(benchmark_of(label), []).append(label)
    for bench, label in chosen.items():
        if label not in by_bench.get(bench, []):
            raise ValueError(f"datasets[{bench!r}] = {label!r}: no clean result rows with that label for "
                             f"{bench} (found: {by_bench.get(bench, [])})")
    clash = {b: ls for b, ls in by_bench.items() if len(ls) > 1 and b not in chosen}
    if clash:
        listed = "; ".join(f"{b}: {', '.join(ls)}" for b, ls in sorted(clash.items()))
        first = min(clash)
        raise ValueError(f"several of our data sets map to one published benchmark ({listed}); pass "
                         f"datasets={{benchmark: label}} to say which to compare, e.g. "
                         f"datasets={{{first!r}: {clash[first][0]!r}}}")
    return {b: chosen.get(b, ls[0]) for b, ls in by_bench.items()}


def paper_table(frame: pd.DataFrame, *, title: str | None = None, decimals: int = 2) -> Table:
    """The paper's layout from a `paper_frame`: rows in the paper's order under its group headers,
    column groups = data sets with the metrics the paper printed. Under each row we reproduced, two
    rows that take no part in best / second: "<row>: ours (<protocol>)" (mean ± std over seeds) and
    "<row>: Δ" (ours - published). Render with mmkgbench.tables.to_markdown / to_latex."""
    f = frame.copy()
    columns = list(dict.fromkeys(zip(f["dataset"], f["metric"])))
    cells = []
    for (section, row), block in f.groupby(["section", "row"], sort=False):
        got = {(r.dataset, r.metric): r for r in block.itertuples()}
        base = {"section": section, "ranked": True, "std": math.nan}
        for col in columns:
            r = got.get(col)
            status = r.status if r is not None else "not reported"
            cells.append({**base, "row": row, "group": col[0], "metric": col[1],
                          "value": r.published if r is not None else math.nan,
                          "text": status if status == "not yet obtained" else ""})
        done = block[block["seeds"] > 0]
        if done.empty:
            continue
        proto = "/".join(dict.fromkeys(done["protocol"]))
        ours = [got[c] for c in columns if c in got and got[c].seeds > 0]     # other cells stay blank
        for r in ours:
            cells.append({**base, "row": f"{row}: ours ({proto})", "group": r.dataset, "metric": r.metric,
                          "value": r.ours, "std": r.ours_std, "ranked": False, "text": ""})
        for r in ours:
            cells.append({**base, "row": f"{row}: Δ", "group": r.dataset, "metric": r.metric, "value": r.diff,
                          "ranked": False, "text": "" if pd.isna(r.diff) else f"{r.diff * 100:+.{decimals}f}"})
    cells = pd.DataFrame(cells)
    table_name = f["table"].iloc[0]
    citation = f["citation"].iloc[0]
    done = f[f["seeds"] > 0]
    notes = [f"Published: {citation}; {f['note'].iloc[0] or 'from the paper'}.",
             f"Values ×100; {HIGHLIGHT} among the published rows."]
    if (f["status"] == "not reported").any():
        notes.append("–: not reported by the paper.")
    if not done.empty:
        seeds = sorted(set(done["seeds"]))
        n = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
        used = f"protocol {', '.join(dict.fromkeys(done['protocol']))}, data sets " \
            f"{', '.join(dict.fromkeys(done['ours_dataset']))}"
        spread = "one seed (no std)" if seeds == [1] else f"mean ± std over {n} seeds"
        notes += ["Δ = ours − published.", f"Ours: {used}; {spread}."]
        if done["ours_dataset"].str.endswith("[clean-valid]").any():
            notes.append("[clean-valid]: checkpoints selected on the valid split without its duplicates and "
                         "its train and test triples; test as published.")
    if table_name == "momok-main":
        notes.append(BASELINES_COPIED)
    title = title or f"{citation}" + (": published vs ours" if not done.empty else "")
    return build_table(cells, title=title, label=f"paper-{table_name}", notes=notes, decimals=decimals,
                       row_header="Setting" if "ablation" in table_name else "Model")
