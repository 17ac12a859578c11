"""Tables from stored result rows: pure functions of the results frame (nothing is trained here).

summarise -> main_tables (models x data set metrics per scenario cell, with significance markers from
mmkgbench.significance) and protocol_tables (harness vs reference protocol); rendered by
mmkgbench.tables to Markdown and LaTeX.
"""
from __future__ import annotations

import pandas as pd

from mmkgbench.modelinfo import model_order
from mmkgbench.protocol import BY_VERSION, PROTOCOLS, family, is_tested
from mmkgbench.tables import HIGHLIGHT, Table, build_table, to_markdown
from mmkgbench.ties import run_tie

METRICS = ("mrr", "hits@1", "hits@3", "hits@10")
MARK = "†"             # significantly different from the reference model (report.main_tables)
TABLE_KEYS = ["protocol", "scenario", "level"]
TEST_NAMES = {"randomization": "two-sided paired randomization (sign-flip) test", "t": "two-sided paired t-test",
              "wilcoxon": "two-sided Wilcoxon signed-rank test"}


def summarise(rows: pd.DataFrame, *, split: str = "test", side: str = "both", metrics=METRICS) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and seed count per (protocol, dataset, scenario, level, model, metric).

    rows: tidy result rows (mmkgbench.results.ROW_COLUMNS). Returns one row per group with
    columns mean, std (NaN for a single seed), n_seeds.
    """
    sel = rows[(rows["split"] == split) & (rows["side"] == side) & rows["metric"].isin(metrics)]
    # The protocol is part of the key: a reference-protocol number is never averaged with a harness one.
    keys = ["protocol", "dataset", "scenario", "level", "model", "metric"]
    # Two different runs for one seed of one cell are two configurations, not two seeds: averaging
    # them would report a number nobody ran. Refuse, and say how to pick one set of runs.
    runs = sel.drop_duplicates("run_id")
    stale_versions(runs)
    clash = runs[runs.duplicated(["protocol", "dataset", "scenario", "level", "model", "seed"], keep=False)]
    if not clash.empty:
        first = clash.iloc[0]
        ids = clash[(clash["model"] == first["model"]) & (clash["dataset"] == first["dataset"]) &
                    (clash["seed"] == first["seed"])]["run_id"].tolist()
        raise ValueError(f"results hold {clash['run_id'].nunique()} runs that differ in their settings but share "
                         f"model, data set, scenario, level and seed (e.g. {first['model']} on {first['dataset']}, "
                         f"seed {first['seed']}: runs {', '.join(ids)}); report one grid with `report --grid NAME` "
                         "or move the old runs out of the results folder")
    g = sel.groupby(keys, sort=False)["value"]
    out = g.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else float("nan"), n_seeds="count")
    return out.reset_index()


def tie_rules(rows: pd.DataFrame) -> dict[str, str]:
    """run_id -> the tie rule its metrics used (`eval.tie` of its recorded config; "realistic" for rows
    that carry no config)."""
    out = {}
    for run_id, blob in rows.drop_duplicates("run_id")[["run_id", "config_json"]].itertuples(index=False) \
            if "config_json" in rows else ():
        try:
            out[run_id] = run_tie(blob)
        except ValueError:             # hand-made rows without a config: the default rule
            out[run_id] = "realistic"
    return out


def stale_versions(runs: pd.DataFrame) -> None:
    """Refuse runs of one table cell (protocol, data set, scenario, level, model) made by different
    versions of the model or of the scenario: their seeds would be averaged into a number no code
    produces. Runs from different git commits with the same versions are pooled: a version is bumped
    exactly when a change alters numbers (README "Results"), which a commit hash does not say.

    runs: one row per run (drop_duplicates("run_id") of the result rows).
    """
    keys = ["protocol", "dataset", "scenario", "level", "model"]
    # rows written before a column existed (older results, hand-made frames) count as "unversioned"
    runs = runs.assign(**{what: runs[what].astype(str).replace({"nan": "unversioned", "": "unversioned"})
                          if what in runs else "unversioned" for what in ("model_version", "scenario_version")})
    for what in ("model_version", "scenario_version"):
        n = runs.groupby(keys, sort=True)[what].nunique()
        mixed = n[n > 1]
        if mixed.empty:
            continue
        cell = dict(zip(keys, mixed.index[0]))
        sel = runs
        for k, v in cell.items():
            sel = sel[sel[k] == v]
        found = ", ".join(f"{v}: {', '.join(sorted(g['run_id']))}" for v, g in sel.groupby(what, sort=True))
        label = what.replace("_", " ")
        raise ValueError(f"results mix runs of {cell['model']} on {cell['dataset']} ({cell['scenario']} "
                         f"{float(cell['level']):g}, {cell['protocol']}) made with different {label}s ({found}); "
                         "their seeds cannot be averaged. `run_bench.py prune --stale` moves runs whose versions are "
                         "not the current code's into results/stale/, or report one grid with `report --grid NAME`")


def markdown_table(rows: pd.DataFrame, *, split: str = "test", metrics=METRICS, decimals: int = 2) -> str:
    """The results tables (see `main_tables`, without significance markers) as GitHub Markdown."""
    tables = main_tables(rows, split=split, metrics=metrics, decimals=decimals)
    return "\n\n".join(to_markdown(t) for t in tables) if tables else f"(no {split} results)"


def main_tables(rows: pd.DataFrame, sig: pd.DataFrame | None = None, *, reference: str | None = None,
                split: str = "test", metrics=METRICS, alpha: float = 0.05, decimals: int = 2) -> list[Table]:
    """The results tables: one per (protocol, scenario, level), models x (data set, metric), mean ±
    sample std over seeds, x100; best bold, second italic/underlined; `†` where the difference to
    `reference` is significant after Holm within the table (sig from `compare_to_reference`)."""
    summ = summarise(rows, split=split, metrics=metrics)
    tables = []
    for (protocol, scenario, level), block in summ.groupby(TABLE_KEYS, sort=True):
        block = block.copy()
        block["marker"] = ""
        s = None if sig is None or sig.empty else sig[(sig["protocol"] == protocol) & (sig["scenario"] == scenario)
                                                      & (sig["level"] == level)]
        if s is not None and not s.empty:
            hit = s[s["p_holm"] < alpha].set_index(["dataset", "model", "metric"]).index
            block["marker"] = [MARK if k in hit else "" for k in zip(block["dataset"], block["model"], block["metric"])]
        models = model_order(block["model"].unique())
        block["row"] = pd.Categorical(block["model"], models, ordered=True)
        block["metric_pos"] = block["metric"].map({m: i for i, m in enumerate(metrics)})
        block = block.sort_values(["row", "dataset", "metric_pos"], kind="stable")
        datasets = list(dict.fromkeys(block["dataset"]))
        # one data set: its name goes in the title, the columns are just the metrics
        frame = pd.DataFrame({"row": [r + (" (ref.)" if r == reference and s is not None and not s.empty else "")
                                      for r in block["model"].astype(str)],
                              "group": block["dataset"] if len(datasets) > 1 else "", "metric": block["metric"],
                              "value": block["mean"], "std": block["std"], "marker": block["marker"]})
        seeds = sorted(set(block["n_seeds"].astype(int)))
        harness = is_tested(protocol)
        cell_rows = rows[(rows["protocol"] == protocol) & (rows["scenario"] == scenario) & (rows["level"] == level)]
        ties = " / ".join(sorted(set(tie_rules(cell_rows).values()))) or "realistic"
        how = f"{ties} ranks, checkpoint selected on valid" if harness else \
            f"{protocol} protocol: {BY_VERSION[protocol].description if protocol in BY_VERSION else 'an audit'}"
        where = datasets[0] if len(datasets) == 1 else ", ".join(datasets)
        title = f"{where}, {scenario} (level {level:g}): {split}, filtered, {how}"
        notes = [f"Mean ± sample std over {_seeds_text(seeds)}, ×100 (MR unscaled); {HIGHLIGHT} per column, on the "
                 "printed values."]
        if s is not None and not s.empty:
            notes.append(f"{MARK} differs from {reference} (ref.) at α = {alpha:g} after Holm correction over the "
                         f"{len(s)} comparisons of this table: {_test_text(s.iloc[0])}"
                         f", paired over the {split} queries (per-query reciprocal rank or hit, averaged over "
                         "seeds).")
        elif sig is not None and not harness:
            notes.append("Not tested: under the reference protocol each number is the best of its metric over many "
                         "test evaluations, which no single set of per-query ranks produced.")
        elif sig is not None and reference:
            notes.append(f"No significance markers: {reference} has no run in this cell.")
        label = "main_" + "_".join(str(x) for x in (protocol, scenario, f"{level:g}"))
        tables.append(build_table(frame, title=title, notes=notes, decimals=decimals, label=label))
    return tables


def _test_text(row) -> str:
    name = TEST_NAMES.get(row["test"], row["test"])
    return name + (f", {int(row['resamples']):,} resamples" if row.get("resamples", 0) else "")


def _seeds_text(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"{seeds[0]} seed" + ("s" if seeds[0] != 1 else "")
    return f"{seeds[0]}–{seeds[-1]} seeds (per model)"


def protocol_frame(rows: pd.DataFrame, *, metrics=METRICS, split: str = "test") -> pd.DataFrame:
    """Where the same (dataset, scenario, level, model) has harness rows and rows of another protocol
    family (reference, openke: run directly or derived by the audit protocol): one row per metric
    with the harness mean, each other family's mean `<family>` and its inflation
    `inflation_<family>` = that mean − harness (fractions; MR as ranks). Families in PROTOCOLS
    order; a cell that has only harness rows is left out. Empty when no cell has two families."""
    summ = summarise(rows, split=split, metrics=metrics)
    summ["kind"] = summ["protocol"].map(family)
    keys = ["dataset", "scenario", "level", "model", "metric"]
    wide = summ.pivot_table(index=keys, columns="kind", values="mean", aggfunc="first")
    others = [k for k in PROTOCOLS if k != "harness" and k in wide.columns]
    if "harness" not in wide.columns or not others:
        return pd.DataFrame(columns=keys + ["harness"])
    wide = wide[wide["harness"].notna() & wide[others].notna().any(axis=1)].reset_index()
    out = wide[keys + ["harness"]].copy()
    for k in others:
        out[k] = wide[k]
        out[f"inflation_{k}"] = wide[k] - wide["harness"]
    return out


def published_value(model: str, dataset: str, metric: str) -> tuple[float, str] | None:
    """(value, citation) of the first published table (mmkgbench.published.PUBLISHED order) that prints
    `metric` for registry model `model` on benchmark `dataset`, or None."""
    from mmkgbench import published          # published imports this module: imported here, when used
    for name in published.PUBLISHED:
        pub = published.load_published(name)
        hit = pub[(pub["model"] == model) & (pub["dataset"] == dataset) & (pub["metric"] == metric) &
                  (pub["status"] == "published")]
        if not hit.empty:
            return float(hit["value"].iloc[0]), str(hit["citation"].iloc[0])
    return None


def protocol_tables(rows: pd.DataFrame, *, metrics=METRICS, split: str = "test", decimals: int = 2) -> list[Table]:
    """The protocol table per (dataset, scenario, level): for each model the harness row, then per
    other protocol family its row and its inflation (that family − harness), and on clean data of a
    published benchmark the published number (mmkgbench.published), rows x metrics. Inflation > 0
    means that protocol reports a better number (for MR: a worse one)."""
    pf = protocol_frame(rows, metrics=metrics, split=split)
    tables = []
    kinds = [k for k in PROTOCOLS if k != "harness" and k in pf.columns]
    for (dataset, scenario, level), block in pf.groupby(["dataset", "scenario", "level"], sort=True):
        parts, cited = [], set()
        shown = [m for m in metrics if m in set(block["metric"])]
        for model in model_order(block["model"].unique()):
            b = block[block["model"] == model].set_index("metric").reindex(shown)
            series = [("harness", "harness (valid-selected)")]
            for k in kinds:
                if b[k].notna().any():
                    series += [(k, f"{k} protocol"), (f"inflation_{k}", f"inflation ({k} − harness)")]
            for col, label in series:
                parts.append(pd.DataFrame({"section": model, "row": f"{model}: {label}", "group": "",
                                           "metric": b.index, "value": b[col].to_numpy(), "ranked": False}))
            pub = {m: published_value(model, dataset, m) for m in shown} if scenario == "clean" else {}
            if any(v is not None for v in pub.values()):
                cited |= {v[1] for v in pub.values() if v is not None}
                parts.append(pd.DataFrame({"section": model, "row": f"{model}: published", "group": "",
                                           "metric": shown, "value": [v[0] if v else float("nan") for v in
                                                                      pub.values()], "ranked": False}))
        frame = pd.concat(parts, ignore_index=True)
        notes = [f"harness: {PROTOCOLS['harness'].description}, realistic ties unless the grid says otherwise. " +
                 " ".join(f"{k}: {PROTOCOLS[k].description}." for k in kinds) +
                 " Rows of a protocol derived by the audit protocol come from the same training as the harness "
                 "row. inflation = protocol − harness, ×100 (MR: ranks; negative is better for MR)."]
        if cited:
            notes.append("published: " + "; ".join(sorted(cited)) + ".")
        tables.append(build_table(frame, title=f"Protocol inflation on {dataset}, {scenario} (level {level:g}), "
                                                f"{split}", notes=notes, decimals=decimals, highlight=False,
                                  label=f"protocol_{dataset}_{scenario}_{level:g}"))
    return tables
