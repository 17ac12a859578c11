"""Tables from stored result rows: pure functions of the results frame (nothing is trained here)."""
from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from mmkgbench.models import MODELS

METRICS = ("mrr", "hits@1", "hits@3", "hits@10")
LABELS = {"mrr": "MRR", "mr": "MR", "hits@1": "H@1", "hits@3": "H@3", "hits@10": "H@10"}


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


def _model_order(names) -> list[str]:
    """Registry order first (deterministic tables), then anything else alphabetically."""
    reg = [m for m in MODELS if m in set(names)]
    return reg + sorted(set(names) - set(reg))


def markdown_table(rows: pd.DataFrame, *, split: str = "test", metrics=METRICS, scale: float = 100.0,
                   decimals: int = 2) -> str:
    """GitHub Markdown tables, one per (dataset, scenario, level): models x metrics, mean ± std over seeds.

    Values are multiplied by `scale` (x100, as MMKGC papers print them); MR is never scaled.
    The best mean per column is bold.
    """
    summ = summarise(rows, split=split, metrics=metrics)
    if summ.empty:
        return f"(no {split} results)"
    parts = []
    for (protocol, dataset, scenario, level), block in summ.groupby(["protocol", "dataset", "scenario", "level"],
                                                                   sort=True):
        models = _model_order(block["model"].unique())
        table, seeds = [], {}
        best = {m: block[block["metric"] == m]["mean"].agg("min" if m == "mr" else "max") for m in metrics}
        for model in models:
            line = [model]
            for metric in metrics:
                hit = block[(block["model"] == model) & (block["metric"] == metric)]
                if hit.empty:
                    line.append("–")
                    continue
                mean, std, n = hit.iloc[0][["mean", "std", "n_seeds"]]
                seeds[model] = int(n)
                k = 1.0 if metric == "mr" else scale
                cell = f"{mean * k:.{decimals}f}" + ("" if pd.isna(std) else f" ± {std * k:.{decimals}f}")
                line.append(f"**{cell}**" if mean == best[metric] else cell)
            line.append(seeds.get(model, 0))
            table.append(line)
        head = ["model"] + [LABELS.get(m, m) for m in metrics] + ["seeds"]
        how = ("realistic ranks" if protocol.startswith("harness") else
               f"**{protocol} protocol**: best value of each metric over test evaluations, random ties")
        title = f"**{dataset}**, {scenario} (level {level:g}), {split}, filtered, {how}"
        parts.append(title + "\n\n" + tabulate(table, headers=head, tablefmt="github", disable_numparse=True))
    return "\n\n".join(parts)
