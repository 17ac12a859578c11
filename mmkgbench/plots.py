"""Figures from stored result rows (matplotlib, no display needed). Each is a pure function of the
rows: it draws, saves atomically and returns the paths written."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from mmkgbench.modelinfo import model_order
from mmkgbench.protocol import is_tested
from mmkgbench.robustness import curve_frame, level_label
from mmkgbench.tables import LABELS


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported on first use: the report starts without it)."""
    import matplotlib
    matplotlib.use("Agg", force=False)        # files only; never needs a display
    import matplotlib.pyplot as plt
    return plt


def slug(*parts) -> str:
    """A file-name stem: each part with runs of other characters than [A-Za-z0-9.+-] turned into '-',
    the parts joined by '_' (slug('my_model', 'DB15K') -> 'my-model_DB15K')."""
    return "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", str(p)).strip("-") for p in parts)


def save_figure(fig, stem: Path, formats=("png",)) -> list[Path]:
    """Save `fig` as stem.<fmt> for each format through a temporary file and a rename."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # metadata without dates: a regenerated PDF/PNG of the same rows is byte-identical
        meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None} if fmt == "png" else {}
        fig.savefig(tmp, format=fmt, bbox_inches="tight", dpi=150, metadata=meta)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def robustness_curves(rows: pd.DataFrame, out_dir, *, metric: str = "mrr", split: str = "test",
                      formats=("png",), scale: float = 100.0) -> list[Path]:
    """One figure per (protocol, dataset, scenario), see `robustness_figure`; files
    robustness_<dataset>_<scenario>[_<protocol>].<fmt> under out_dir. Returns the paths written."""
    plt = pyplot()
    curves = curve_frame(rows, metric=metric, split=split)
    written = []
    for (protocol, dataset, scenario), block in curves.groupby(["protocol", "dataset", "scenario"], sort=True):
        fig = robustness_figure(block, xlabel=level_label(rows, scenario), metric=metric, split=split, scale=scale)
        suffix = () if is_tested(protocol) else (protocol,)
        written += save_figure(fig, Path(out_dir) / slug("robustness", dataset, scenario, *suffix), formats)
        plt.close(fig)
    return written


def robustness_figure(block: pd.DataFrame, *, xlabel: str, metric: str = "mrr", split: str = "test",
                      scale: float = 100.0):
    """The robustness curve of one (protocol, dataset, scenario): `metric` x scale against the level,
    one line per model (mean over seeds) with a band of ± one sample std over seeds (none for one
    seed). block: rows of `robustness.curve_frame` for that triple (level 0 = the clean run)."""
    plt = pyplot()
    protocol, dataset, scenario = block.iloc[0][["protocol", "dataset", "scenario"]]
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for model in model_order(block["model"].unique()):
        pts = block[block["model"] == model].groupby("level")["value"]
        mean, std, n = pts.mean() * scale, pts.std(ddof=1) * scale, pts.count()
        line, = ax.plot(mean.index, mean.values, marker="o", markersize=3.5, label=model)
        if (n > 1).any():
            ax.fill_between(mean.index, (mean - std).values, (mean + std).values, alpha=0.18,
                            color=line.get_color(), linewidth=0)
    seeds = int(block.groupby("model")["seed"].nunique().max())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{LABELS.get(metric, metric)} ×{scale:g} ({split}, filtered)")
    ax.set_title(f"{dataset}: {scenario}" + ("" if is_tested(protocol) else f" [{protocol}]"), fontsize=10)
    ax.grid(alpha=0.3)
    # outside the axes: with many models a legend inside would hide the curves it names
    ax.legend(fontsize=7, frameon=False, title=f"band: ± 1 std\nover {seeds} seeds" if seeds > 1 else None,
              title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def learning_curve_frame(history: pd.DataFrame, audit: pd.DataFrame, *, metric: str = "mrr",
                         watched: str = "valid") -> pd.DataFrame:
    """Long frame (epoch, series, value) behind a learning curve: the watched split's `metric` from
    a run's history (what selection read), and test's from its audit record under each tie rule the
    published conventions use (realistic, random, optimistic; never read by selection)."""
    col = f"{watched}_{metric}"
    parts = []
    if col in history.columns:
        h = history.dropna(subset=[col])
        parts.append(pd.DataFrame({"epoch": h["epoch"], "series": f"{watched} (realistic; selection)",
                                   "value": h[col]}))
    a = audit[(audit["metric"] == metric) & (audit["side"] == "both") & (audit["split"] == "test")]
    for tie in ("realistic", "random", "optimistic"):
        t = a[a["tie"] == tie]
        if not t.empty:
            parts.append(pd.DataFrame({"epoch": t["epoch"], "series": f"test ({tie}; audit only)",
                                       "value": t["value"]}))
    if not parts:
        return pd.DataFrame(columns=["epoch", "series", "value"])
    return pd.concat(parts, ignore_index=True).astype({"epoch": int, "value": float})


def learning_curve(frame: pd.DataFrame, history: pd.DataFrame, *, best_epoch: int | None = None,
                   title: str = "", metric: str = "mrr", scale: float = 100.0):
    """One run's learning curve: `frame` (learning_curve_frame) x scale against the epoch on the left
    axis, the training loss of `history` on a right axis, the selected epoch marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for series, g in frame.groupby("series", sort=False):
        ax.plot(g["epoch"], g["value"] * scale, marker="o", markersize=3, label=series,
                linestyle="-" if series.startswith(("valid", "test (realistic")) else "--")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linewidth=0.8, linestyle=":", label=f"selected epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{LABELS.get(metric, metric)} ×{scale:g} (filtered)")
    ax.grid(alpha=0.3)
    if "loss" in history.columns:
        twin = ax.twinx()
        twin.plot(history["epoch"], history["loss"], color="black", alpha=0.35, linewidth=0.9, label="train loss")
        twin.set_ylabel("train loss", fontsize=8)
        twin.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.12, 1.0))
    return fig
