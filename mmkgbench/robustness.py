"""Robustness curves and their summary number: pure functions of the stored result rows.

A curve is a metric against a scenario's level for one (protocol, dataset, scenario, model), one
point per seed and level. Level 0 of every curve is the clean run (a scenario at level 0 *is* the
clean data, and the runner stores it once, as `clean`), so curves and the clean table share their
reference point. The summary number is the area under the curve relative to the clean score,

    rel_auc = (1 / (L_max - L_min)) * integral over [L_min, L_max] of  score(level) / score(clean)  dlevel,

trapezoidal over the measured levels, per seed (each seed against its own clean run), then mean
± sample std over seeds. (A composition with a fixed step, e.g. sparse 0.4 + missing image swept,
has its own level 0; its area is still taken relative to the clean score.) 1 means no degradation over the whole range; 0.5 means the model kept
half its clean score on average. Unlike a drop at one level it uses every level measured, and
unlike an absolute area it does not reward a model for being good when clean (the clean column
already says that). Models are comparable only over the same levels, which one grid guarantees.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mmkgbench.tables import LABELS

CURVE_KEYS = ["protocol", "dataset", "scenario", "model"]


def curve_frame(rows: pd.DataFrame, *, metric: str = "mrr", split: str = "test", side: str = "both") -> pd.DataFrame:
    """Tidy curve points: protocol, dataset, scenario, model, level, seed, value, clean.

    rows: result rows (mmkgbench.results.ROW_COLUMNS). For each scenario other than clean, its own
    rows, plus the clean rows of the same (protocol, dataset, model) as its level 0 when level 0 of
    that scenario is the clean data (one scenario, or a composition without fixed steps; a
    composition with a fixed step has another level 0, and its curve starts where it was measured).
    `clean` is the same seed's clean score (NaN when that run is absent): what rel_auc divides by.
    """
    sel = rows[(rows["split"] == split) & (rows["side"] == side) & (rows["metric"] == metric)]
    cols = ["protocol", "dataset", "scenario", "model", "level", "seed", "value"]
    fixed = {sc for sc, blob in sel.drop_duplicates("scenario")[["scenario", "config_json"]].itertuples(index=False)
             if any(not st.get("swept", True) for st in json.loads(blob)["scenario"].get("steps", []))}
    sel = sel[cols].astype({"level": float})
    clean = sel[sel["scenario"] == "clean"]
    parts = []
    for (protocol, dataset, scenario), block in sel[sel["scenario"] != "clean"].groupby(
            ["protocol", "dataset", "scenario"], sort=True):
        if scenario not in fixed:
            parts.append(clean[(clean["protocol"] == protocol) & (clean["dataset"] == dataset) &
                               clean["model"].isin(block["model"].unique())].assign(scenario=scenario, level=0.0))
        parts.append(block[block["level"] > 0] if scenario not in fixed else block)
    if not parts:
        return pd.DataFrame(columns=cols + ["clean"])
    out = pd.concat(parts, ignore_index=True)
    ref = clean.drop(columns=["scenario", "level"]).rename(columns={"value": "clean"})
    ref = ref.drop_duplicates(["protocol", "dataset", "model", "seed"])
    out = out.merge(ref, on=["protocol", "dataset", "model", "seed"], how="left")
    return out.sort_values(CURVE_KEYS + ["level", "seed"], kind="stable").reset_index(drop=True)


def relative_auc(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (protocol, dataset, scenario, model): clean (mean over seeds), rel_auc mean and std
    (ddof=1; NaN for one seed), n_seeds, levels (the levels the area spans).

    curves: from `curve_frame`. A seed counts only if it has its clean run and every level of the
    curve (nothing is interpolated). With a single level the "area" is the score there over clean.
    """
    out = []
    for key, block in curves.groupby(CURVE_KEYS, sort=True):
        levels = np.sort(block["level"].unique())
        table = block.pivot_table(index="seed", columns="level", values="value", aggfunc="first")
        table = table.reindex(columns=levels)
        ref = block.groupby("seed")["clean"].first().reindex(table.index)
        ok = table.notna().all(axis=1) & ref.notna()
        v, c = table[ok].to_numpy(), ref[ok].to_numpy()
        if len(levels) >= 2:
            area = ((v[:, 1:] + v[:, :-1]) / 2 * np.diff(levels)).sum(1) / (levels[-1] - levels[0])
        else:
            area = v[:, 0] if len(v) else np.empty(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = area / c
        out.append({**dict(zip(CURVE_KEYS, key)), "clean": float(c.mean()) if len(c) else np.nan,
                    "rel_auc": float(rel.mean()) if len(rel) else np.nan,
                    "rel_auc_std": float(np.std(rel, ddof=1)) if len(rel) > 1 else np.nan,
                    "n_seeds": int(len(rel)), "levels": ", ".join(f"{x:g}" for x in levels)})
    return pd.DataFrame(out, columns=CURVE_KEYS + ["clean", "rel_auc", "rel_auc_std", "n_seeds", "levels"])


def robustness_tables(rows: pd.DataFrame, *, metric: str = "mrr", split: str = "test", decimals: int = 2) -> list:
    """Per (protocol, dataset): a summary table, models x (clean metric, rel. AUC per scenario), then
    per scenario the metric at each level (level 0 = clean) and its rel. AUC: mmkgbench.tables.Table
    objects (Markdown and LaTeX from the same cells). The metric is x100, rel. AUC a fraction with
    3 decimals (mean ± std over seeds in the summary). Empty when no perturbed scenario is stored."""
    from mmkgbench.modelinfo import model_order
    from mmkgbench.protocol import is_tested
    from mmkgbench.tables import HIGHLIGHT, build_table
    curves = curve_frame(rows, metric=metric, split=split)
    if curves.empty:
        return []
    auc = relative_auc(curves)
    name = LABELS.get(metric, metric)
    tables = []
    for (protocol, dataset), block in auc.groupby(["protocol", "dataset"], sort=True):
        models = model_order(block["model"].unique())
        scen = list(dict.fromkeys(block["scenario"]))
        pts = curves[(curves["protocol"] == protocol) & (curves["dataset"] == dataset)]
        clean = pts[pts["level"] == 0].groupby("model")["clean"].mean()
        cells = [{"row": m, "group": "", "metric": f"clean {name}", "value": clean.get(m, np.nan)} for m in models]
        for sc in scen:
            b = block[block["scenario"] == sc].set_index("model")
            cells += [{"row": m, "group": "", "metric": sc, "value": b["rel_auc"].get(m, np.nan),
                       "std": b["rel_auc_std"].get(m, np.nan)} for m in models]
        levels = block.drop_duplicates("scenario").set_index("scenario")["levels"]
        suffix = "" if is_tested(protocol) else f" [{protocol}]"
        tables.append(build_table(
            pd.DataFrame(cells), title=f"{dataset}: relative area under the {name} curve per scenario ({split}"
                                       f"{suffix})", decimals={**{sc: 3 for sc in scen}, f"clean {name}": decimals},
            unscaled=scen, label=f"robustness_{dataset}_{protocol}",
            notes=[f"clean {name} ×100, mean over seeds; rel. AUC: area under {name}(level)/{name}(clean), "
                   "per seed against its own clean run, mean ± std over seeds (1 = no loss). Levels: " +
                   "; ".join(f"{sc} {lv}" for sc, lv in levels.items()) + f". {HIGHLIGHT}."]))
        for sc in scen:
            mean = pts[pts["scenario"] == sc].groupby(["model", "level"])["value"].mean()
            auc_sc = block[block["scenario"] == sc].set_index("model")["rel_auc"]
            lvls = sorted(mean.index.get_level_values("level").unique())
            cells = []
            for m in model_order(mean.index.get_level_values("model").unique()):
                cells += [{"row": m, "group": "", "metric": f"{lv:g}", "value": mean.get((m, lv), np.nan)}
                          for lv in lvls]
                cells.append({"row": m, "group": "", "metric": "rel. AUC", "value": auc_sc.get(m, np.nan)})
            frame = pd.DataFrame(cells)
            tables.append(build_table(
                frame, title=f"{dataset}, {sc}: {name} ×100 at each level (0 = clean; mean over seeds; {split}"
                             f"{suffix})", decimals={"rel. AUC": 3}, unscaled=("rel. AUC",),
                label=f"robustness_{dataset}_{sc}_{protocol}", notes=[f"x axis: {level_label(rows, sc)}."]))
    return tables


def robustness_markdown(rows: pd.DataFrame, *, metric: str = "mrr", split: str = "test", decimals: int = 2) -> str:
    """`robustness_tables` as GitHub Markdown ("" when no perturbed scenario is stored)."""
    from mmkgbench.tables import to_markdown
    return "\n\n".join(to_markdown(t) for t in robustness_tables(rows, metric=metric, split=split,
                                                                  decimals=decimals))


def level_label(rows: pd.DataFrame, scenario: str) -> str:
    """The x-axis label of a scenario's curve, from the registry entry of its swept step."""
    from mmkgbench.scenarios import SCENARIOS
    hit = rows[rows["scenario"] == scenario]
    for blob in hit["config_json"].head(1):
        steps = json.loads(blob)["scenario"].get("steps", [])
        swept = [s for s in steps if s.get("swept", True)]
        if swept:
            return SCENARIOS[swept[-1]["name"]].level_label if swept[-1]["name"] in SCENARIOS else "level"
    return SCENARIOS[scenario].level_label if scenario in SCENARIOS else "level"
