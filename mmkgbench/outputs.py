"""Everything `run_bench.py report` writes: tables and figures from stored runs, nothing trained.

    results/tables/summary.csv           mean, std, seeds per (protocol, data set, scenario, level, model, metric)
    results/tables/significance.csv      every paired test against the reference (p, Holm, BH, interval)
    results/tables/main.{md,tex}         the results tables with significance markers
    results/tables/robustness.{md,tex}   clean score, score per level, relative AUC
    results/tables/protocol.{md,tex}     harness vs reference / openke protocol rows (run directly or derived
                                         by the audit protocol) and the published number, with inflation
    results/tables/paper_<name>.{md,tex} a published table beside our reproduction
    results/figures/*.{png,pdf} + .csv   robustness curves, CD diagram, per-relation MRR, and one figure
                                         per interpretation view a model's runs declare
                                         (<model>_<view>_<data set>), and a learning curve per audit run
                                         (learning-curve_<data set>_<model>_...); each with the numbers drawn

Every file is a function of the stored rows, per-query ranks and interpretation tables and views, written
atomically, and deterministic (fixed resampling seed, fixed order), so a regenerated report
diffs cleanly against the last one.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mmkgbench.modelinfo import model_order
from mmkgbench.protocol import is_tested
from mmkgbench.report import main_tables, protocol_tables, summarise
from mmkgbench.results import (AUDIT_FILE, load_interpretation, load_interpretation_views, load_per_query, runs_dir,
                               write_text_atomic)
from mmkgbench.tables import to_latex, to_markdown

FORMATS = ("md", "tex", "png", "pdf")
# The models a comparison is usually *about*: the first present is the default reference.
PREFERRED_REFERENCES = ("momok", "mocme")


def parse_formats(text: str) -> tuple[str, ...]:
    """`md,tex,png` -> ("md", "tex", "png"); an unknown format lists the valid ones."""
    out = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ValueError(f"unknown report format(s) {', '.join(bad) or '(none)'}; valid: {', '.join(FORMATS)}")
    return out


def default_reference(rows: pd.DataFrame) -> str | None:
    """The first of PREFERRED_REFERENCES present (the models this suite compares against baselines),
    else the model with the best mean clean MRR."""
    models = set(rows["model"])
    for m in PREFERRED_REFERENCES:
        if m in models:
            return m
    clean = rows[(rows["scenario"] == "clean") & (rows["metric"] == "mrr") & (rows["side"] == "both")]
    return None if clean.empty else str(clean.groupby("model")["value"].mean().idxmax())


def _harness(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["protocol"].astype(str).map(is_tested).astype(bool)]


def cd_scores(rows: pd.DataFrame, *, split: str = "test", metric: str = "mrr") -> tuple[pd.DataFrame, str]:
    """The blocks x models score matrix behind the critical-difference diagram, and what a block is.

    Blocks are the clean data sets when there are at least two (Demšar 2006). With one data set they
    are its (scenario, level) cells, restricted to cells every model ran: such blocks are not
    independent samples, which the diagram says. Mean over seeds, harness protocol only.
    """
    summ = summarise(_harness(rows), split=split, metrics=(metric,))
    clean = summ[summ["scenario"] == "clean"]
    if clean["dataset"].nunique() >= 2:
        wide = clean.pivot_table(index="dataset", columns="model", values="mean", aggfunc="first")
        kind = "data sets (clean)"
    else:
        summ = summ.assign(block=summ["dataset"] + ": " + summ["scenario"] + " " + summ["level"].map("{:g}".format))
        wide = summ.pivot_table(index="block", columns="model", values="mean", aggfunc="first")
        kind = "scenario cells of one data set"
    models = model_order(wide.columns)
    wide = wide[models].dropna(axis=0, how="any")
    return wide, kind


def write_report(rows: pd.DataFrame, root, *, formats=("md", "tex", "png"), reference: str | None = None,
                 split: str = "test", test: str = "randomization", resamples: int = 10_000, alpha: float = 0.05,
                 out=None) -> dict:
    """Write the report of `rows` (stored runs under `root`) into `out` (default: root). Returns
    {"markdown": the printed tables, "paths": files written, "reference": the reference model,
    "notes": what was left out and why}."""
    from mmkgbench.robustness import robustness_tables
    from mmkgbench.significance import compare_to_reference
    root, out = Path(root), Path(out or root)
    tdir, fdir = out / "tables", out / "figures"
    paths, notes = [], []
    models = set(rows["model"])
    if reference is not None and reference not in models:
        raise ValueError(f"reference model {reference!r} has no stored runs here; models present: "
                         f"{', '.join(model_order(models))}")
    reference = reference or default_reference(rows)

    summ = summarise(rows, split=split)
    paths.append(write_text_atomic(tdir / "summary.csv", summ.to_csv(index=False)))
    sig = None
    if reference is not None and not _harness(rows).empty:
        sig = compare_to_reference(rows, lambda rid: load_per_query(root, rid), reference=reference, split=split,
                                   test=test, resamples=resamples)
        paths.append(write_text_atomic(tdir / "significance.csv", sig.to_csv(index=False)))

    sections = {"main": main_tables(rows, sig, reference=reference, split=split, alpha=alpha),
                "robustness": robustness_tables(rows, split=split),
                "protocol": protocol_tables(rows, split=split)}
    sections.update(_paper_tables(rows, split=split, notes=notes))
    printed = []
    for name, tables in sections.items():
        if not tables:
            continue
        md = "\n\n".join(to_markdown(t) for t in tables)
        printed.append(md)
        if "md" in formats:
            paths.append(write_text_atomic(tdir / f"{name}.md", md + "\n"))
        if "tex" in formats:
            paths.append(write_text_atomic(tdir / f"{name}.tex", "\n".join(to_latex(t) for t in tables)))

    images = tuple(f for f in formats if f in ("png", "pdf"))
    if images:
        paths += _figures(rows, root, fdir, images, reference=reference, split=split, alpha=alpha, notes=notes)
    return {"markdown": "\n\n".join(printed), "paths": paths, "reference": reference, "notes": notes}


def _paper_tables(rows: pd.DataFrame, *, split: str, notes: list) -> dict:
    """paper_<name> -> [Table] for each published table some stored run reproduces (clean, on the
    published benchmark), under each protocol that has such runs."""
    from mmkgbench import published
    out = {}
    for name in published.PUBLISHED:
        tables = []
        for protocol in published.PROTOCOL_FAMILIES:
            try:
                frame = published.paper_frame(rows, name, protocol=protocol, split=split)
            except ValueError as err:          # e.g. two feature variants of one benchmark
                notes.append(f"paper table {name} ({protocol}): {err}")
                continue
            if frame["ours"].notna().any():
                tables.append(published.paper_table(frame))
        if tables:
            out[f"paper_{name}"] = tables
    return out


def _figures(rows, root: Path, fdir: Path, formats, *, reference, split, alpha, notes) -> list[Path]:
    from mmkgbench import figures, stats
    from mmkgbench.plots import pyplot, robustness_curves, save_figure, slug
    plt = pyplot()
    paths = robustness_curves(rows, fdir, split=split, formats=formats)

    def save(fig, stem, frame: pd.DataFrame | None = None) -> list[Path]:
        written = save_figure(fig, fdir / stem, formats)
        plt.close(fig)
        if frame is not None:          # the numbers behind the figure, beside it
            written.append(write_text_atomic(fdir / f"{stem}.csv", frame.to_csv(index=False)))
        return written

    scores, kind = cd_scores(rows, split=split)
    if scores.shape[0] >= 2 and scores.shape[1] >= 3:
        fr = stats.friedman_nemenyi(scores, alpha=alpha)
        title = (f"Critical difference (Nemenyi, α = {alpha:g}), MRR over {fr.n_blocks} {kind}; "
                 f"Friedman p = {fr.p:.3g}")
        # blocks that are scenario cells of one data set are not independent samples: never a test
        descriptive = fr.descriptive if kind.startswith("data sets") else "blocks are cells of one data set"
        fig = figures.cd_diagram(fr.avg_ranks, fr.cd, cliques=fr.cliques(), descriptive=descriptive,
                                 title=title, alpha=alpha, n_blocks=fr.n_blocks)
        paths.extend(save(fig, "cd_diagram", scores.reset_index()))
    else:
        notes.append(f"no CD diagram: {scores.shape[0]} block(s) with every model ({kind}); it needs >= 2 "
                     "blocks and >= 3 models")

    harness = _harness(rows)
    runs = harness[(harness["split"] == split)].drop_duplicates("run_id")
    clean = runs[runs["scenario"] == "clean"]
    for dataset, block in clean.groupby("dataset", sort=True):
        # per-relation MRR: the reference against the strongest other model, on their shared lowest seed
        mrr = harness[(harness["dataset"] == dataset) & (harness["scenario"] == "clean") &
                      (harness["metric"] == "mrr") & (harness["side"] == "both") & (harness["split"] == split)]
        means = mrr.groupby("model")["value"].mean()
        if reference in means.index and len(means) > 1:
            other = means.drop(reference).idxmax()
            seeds = sorted(set(block[block["model"] == reference]["seed"]) & set(block[block["model"] == other]["seed"]))
            if seeds:
                pick = {m: block[(block["model"] == m) & (block["seed"] == seeds[0])]["run_id"].iloc[0]
                        for m in (other, reference)}
                frame = figures.per_relation_mrr(load_per_query(root, pick[other]),
                                                 load_per_query(root, pick[reference]), names=(other, reference),
                                                 split=split)
                fig = figures.per_relation_figure(frame, names=(other, reference),
                                                  title=f"{dataset}: per-relation {split} MRR, seed {seeds[0]}")
                paths.extend(save(fig, slug("per_relation", dataset, other, "vs", reference), frame))
    paths += _interpretation_figures(runs, root, save, notes)
    paths += _learning_curves(harness.drop_duplicates("run_id"), root, save)
    return paths


def _learning_curves(runs: pd.DataFrame, root: Path, save) -> list[Path]:
    """One learning curve per run that kept an audit record (audit protocol): the watched split's MRR,
    test's under three tie rules (audit only), the loss, and the selected epoch; numbers beside it."""
    from mmkgbench import plots
    written = []
    for r in runs.itertuples():
        folder = runs_dir(root) / r.run_id
        if not (folder / AUDIT_FILE).exists():
            continue
        history, audit = pd.read_csv(folder / "history.csv"), pd.read_csv(folder / AUDIT_FILE)
        frame = plots.learning_curve_frame(history, audit)
        if frame.empty:
            continue
        fig = plots.learning_curve(frame, history, best_epoch=int(r.best_epoch),
                                   title=f"{r.model} on {r.dataset}, {r.scenario} (level {float(r.level):g}), "
                                         f"seed {r.seed}: {int(r.epochs)} epochs")
        written += save(fig, plots.slug("learning_curve", r.dataset, r.model, r.scenario, f"{float(r.level):g}",
                                        f"seed{r.seed}"), frame)
    return written


def _interpretation_figures(runs: pd.DataFrame, root: Path, save, notes: list) -> list[Path]:
    """One figure per view that a model's runs on a data set declare (`interpretation.json`, the
    model's `interpretation_views`), models in registry order, with the numbers drawn beside it as
    CSV: <model>_<view>_<data set>. runs: one row per stored run (model, dataset, scenario, level,
    seed, run_id). A view of runs "clean" draws the clean run of the lowest seed, one of runs "all"
    every run that declares it. The report never names a model here: a new model, or a grid variant
    of one (named after the variant), gets its figures from what its runs stored."""
    from mmkgbench import figures
    from mmkgbench.plots import slug
    written, tables = [], {}

    def table(rid: str, name: str, view: dict) -> pd.DataFrame:
        where = str(runs_dir(root) / rid)
        view = figures.check_view(view, name=name, where=where)
        if rid not in tables:
            tables[rid] = load_interpretation(root, rid)
        if view["table"] not in tables[rid]:
            raise ValueError(f"{where}: interpretation view {name!r} draws table {view['table']!r}, which the run "
                             f"did not store (it has: {', '.join(sorted(tables[rid])) or 'none'})")
        frame = tables[rid][view["table"]]
        figures.check_view(view, frame.columns, name=name, where=where)
        return frame

    for model in model_order(runs["model"].unique()):
        for dataset, block in runs[runs["model"] == model].groupby("dataset", sort=True):
            block = block.sort_values(["seed", "scenario", "level", "run_id"], kind="stable")
            declared = {rid: load_interpretation_views(root, rid) for rid in block["run_id"]}
            if not any(declared.values()):
                if any(load_interpretation(root, rid) for rid in block["run_id"]):
                    notes.append(f"{model} on {dataset}: its runs store interpretation tables but no views "
                                 "(stored before views were recorded): no interpretation figure")
                continue
            names = list(dict.fromkeys(n for views in declared.values() for n in views))
            for name in names:
                specs = {json.dumps(views[name], sort_keys=True) for views in declared.values() if name in views}
                if len(specs) > 1:
                    notes.append(f"{model} on {dataset}: its runs declare view {name!r} in {len(specs)} different "
                                 "ways (runs of different code versions?): not drawn")
                    continue
                mine = block[[name in declared[rid] for rid in block["run_id"]]]
                view = figures.check_view(declared[mine["run_id"].iloc[0]][name], name=name,
                                          where=str(runs_dir(root) / mine["run_id"].iloc[0]))
                if view["runs"] == "clean":
                    clean = mine[mine["scenario"] == "clean"]
                    if clean.empty:
                        notes.append(f"{model} on {dataset}: view {name!r} draws the clean run, and none is stored")
                        continue
                    first = clean.iloc[0]
                    frame = table(first["run_id"], name, view)
                    where = str(runs_dir(root) / first["run_id"])
                    title = f"{dataset}: {model} {view['title']}, clean run, seed {int(first['seed'])}"
                else:
                    frame = pd.concat([table(r.run_id, name, view).assign(scenario=r.scenario, level=float(r.level),
                                                                           seed=int(r.seed))
                                       for r in mine.itertuples()], ignore_index=True)
                    where = f"{len(mine)} runs of {model} on {dataset}"
                    title = f"{dataset}: {model} {view['title']}"
                try:
                    fig = figures.DRAW[view["kind"]](frame, view, title=title)
                    drawn = figures.view_frame(frame, view)
                except ValueError as err:
                    raise ValueError(f"{where}: interpretation view {name!r}: {err}") from None
                written += save(fig, slug(model, name, dataset), drawn)
    return written
