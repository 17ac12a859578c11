"""Analysis figures: per-relation comparison of two runs, MoMoK's expert gates and modality
contributions, MoCME's modality weights, and critical-difference diagrams.

Each figure function is a pure function of a tidy frame (or plain values) and returns a matplotlib
Figure; the caller saves it with `mmkgbench.plots.save_figure` and closes it.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mmkgbench.plots import _pyplot
from mmkgbench.stats import cliques as groups_within

STRUCTURE, JOINT = "structure", "joint"      # the names MoMoK / MoCME give these modalities


def _require(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})")


def _modality_order(names) -> list[str]:
    """structure first, then the feature modalities alphabetically, the joint decision last (the
    models' own order: `self.names = [structure] + sorted(features)`, then joint)."""
    names = set(names)
    head = [STRUCTURE] if STRUCTURE in names else []
    tail = [JOINT] if JOINT in names else []
    return head + sorted(names - {STRUCTURE, JOINT}) + tail


def _relation_label(r: int, relation_names) -> str:
    if relation_names is None:
        return f"r{r}"
    try:
        return str(relation_names[r])
    except (KeyError, IndexError):
        return f"r{r}"


def _weighted_mean(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Per group of `keys`: sum(value * queries) / sum(queries), and the summed queries."""
    tmp = frame.assign(_wv=frame[value] * frame["queries"])
    g = tmp.groupby(keys, sort=True)[["_wv", "queries"]].sum()
    return pd.DataFrame({value: g["_wv"] / g["queries"], "queries": g["queries"]}).reset_index()


# -- 1. per-relation comparison of two runs ----------------------------------------------------
def per_relation_mrr(per_query_a: pd.DataFrame, per_query_b: pd.DataFrame, *, names=("A", "B"),
                     split: str = "test", relation_names=None, top: int | None = 30,
                     min_queries: int = 1) -> pd.DataFrame:
    """MRR per relation of two runs on the same queries.

    per_query_a / per_query_b: per-query ranks of one run each (`mmkgbench.results.load_per_query`:
    split, query_id, h, r, t, side, rank_real, ...). MRR = mean of 1 / rank_real (realistic rank,
    the mean of the optimistic and pessimistic ranks, filtered setting) over the relation's tail and
    head queries of `split`. The two runs must hold the same queries of that split (same
    (split, query_id, side) keys with the same (h, r, t)); ValueError otherwise.

    Returns one row per relation with at least `min_queries` queries, most queries first (ties by
    relation id), at most `top` rows (None: all): relation, label (relation_names[r], else "r<id>"),
    queries, mrr_a, mrr_b, diff = mrr_b - mrr_a. `names` only documents which run is a / b.
    """
    cols = ["split", "query_id", "side", "h", "r", "t", "rank_real"]
    _require(per_query_a, cols, f"per-query frame of {names[0]}")
    _require(per_query_b, cols, f"per-query frame of {names[1]}")
    a = per_query_a[per_query_a["split"] == split]
    b = per_query_b[per_query_b["split"] == split]
    if a.empty or b.empty:
        raise ValueError(f"no {split!r} queries in the per-query frame of {names[0] if a.empty else names[1]}")
    keys = ["split", "query_id", "side", "h", "r", "t"]
    ka = set(map(tuple, a[keys].itertuples(index=False)))
    kb = set(map(tuple, b[keys].itertuples(index=False)))
    for run, frame, got in ((names[0], a, ka), (names[1], b, kb)):
        if len(got) != len(frame):
            raise ValueError(f"the per-query frame of {run} repeats {len(frame) - len(got)} {split!r} queries")
    if ka != kb:
        raise ValueError(f"the two runs do not hold the same {split!r} queries: {len(ka - kb)} only in "
                         f"{names[0]}, {len(kb - ka)} only in {names[1]} (of {len(a)} and {len(b)}); "
                         "compare runs of the same data set and split")
    ga = a.assign(rr=1.0 / a["rank_real"]).groupby("r")["rr"].agg(["mean", "count"])
    gb = b.assign(rr=1.0 / b["rank_real"]).groupby("r")["rr"].mean()
    out = pd.DataFrame({"relation": ga.index.astype(int), "queries": ga["count"].astype(int).values,
                        "mrr_a": ga["mean"].values, "mrr_b": gb.reindex(ga.index).values})
    out["label"] = [_relation_label(int(r), relation_names) for r in out["relation"]]
    out["diff"] = out["mrr_b"] - out["mrr_a"]
    out = out[out["queries"] >= min_queries].sort_values(["queries", "relation"], ascending=[False, True])
    if top is not None:
        out = out.head(top)
    return out[["relation", "label", "queries", "mrr_a", "mrr_b", "diff"]].reset_index(drop=True)


def per_relation_figure(frame: pd.DataFrame, *, names, metric_label: str = "MRR ×100", title: str | None = None,
                        top: int | None = 30):
    """Paired horizontal bars: the two runs' MRR ×100 per relation, most frequent relation on top.

    frame: `per_relation_mrr` output (relation, label, queries, mrr_a, mrr_b). Bars of names[0] are
    mrr_a ×100, of names[1] mrr_b ×100; tick labels "<label> (n=<queries>)"; at most `top` relations.
    """
    plt = _pyplot()
    _require(frame, ["relation", "label", "queries", "mrr_a", "mrr_b"], "per-relation frame")
    rows = frame.sort_values(["queries", "relation"], ascending=[False, True])
    if top is not None:
        rows = rows.head(top)
    n = len(rows)
    fig, ax = plt.subplots(figsize=(5.5, max(2.2, 0.32 * n + 1.2)))
    y = np.arange(n, dtype=float)
    h = 0.4
    ax.barh(y - h / 2, rows["mrr_a"].to_numpy() * 100.0, height=h, label=str(names[0]))
    ax.barh(y + h / 2, rows["mrr_b"].to_numpy() * 100.0, height=h, label=str(names[1]))
    ax.set_yticks(y, [f"{lab} (n={q})" for lab, q in zip(rows["label"], rows["queries"])], fontsize=7)
    ax.set_ylim(n - 0.5, -0.5)               # most frequent relation on top
    ax.set_xlabel(metric_label)
    ax.set_ylabel("relation (queries, both sides)")
    ax.set_title(title if title is not None else
                 f"{metric_label} per relation: {names[0]} vs {names[1]} ({n} most frequent)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# -- 2. MoMoK expert gates ---------------------------------------------------------------------
def gate_heatmap(expert_gates: pd.DataFrame, *, relation_names=None, direction: str = "tail",
                 max_relations: int | None = 40, title: str | None = None):
    """MoMoK's expert-gate heatmap: mean gate weight per relation (rows) and modality × expert (columns).

    expert_gates: `MoMoK.interpretation(...)["expert_gates"]` (relation, modality, expert, weight,
    queries, direction): the mean softmax gate of each modality's experts over the queries of a
    relation and direction. direction "tail" / "head" keeps those rows; "both" averages the two
    directions weighted by their query counts. Rows: the `max_relations` relations with the most
    queries, most first; columns grouped by modality (structure first), separated by white lines.
    """
    plt = _pyplot()
    _require(expert_gates, ["relation", "modality", "expert", "weight", "queries", "direction"], "expert_gates")
    if direction not in ("tail", "head", "both"):
        raise ValueError(f"direction must be 'tail', 'head' or 'both', not {direction!r}")
    sel = expert_gates if direction == "both" else expert_gates[expert_gates["direction"] == direction]
    if sel.empty:
        raise ValueError(f"expert_gates has no rows for direction {direction!r}")
    cells = _weighted_mean(sel, ["relation", "modality", "expert"], "weight")
    # every query of a relation passes every gate: one query count per relation
    counts = cells.groupby("relation")["queries"].max().reset_index()
    counts = counts.sort_values(["queries", "relation"], ascending=[False, True])
    if max_relations is not None:
        counts = counts.head(max_relations)
    modalities = _modality_order(cells["modality"].unique())
    columns = [(m, int(k)) for m in modalities for k in sorted(cells.loc[cells["modality"] == m, "expert"].unique())]
    grid = cells.set_index(["relation", "modality", "expert"])["weight"]
    matrix = np.full((len(counts), len(columns)), np.nan)
    for i, rel in enumerate(counts["relation"]):
        for j, (m, k) in enumerate(columns):
            matrix[i, j] = grid.get((rel, m, k), np.nan)
    fig, ax = plt.subplots(figsize=(1.6 + 0.38 * len(columns), max(2.2, 0.26 * len(counts) + 1.4)))
    im = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis",
                   interpolation="nearest")
    ax.set_xticks(np.arange(len(columns)), [f"{m} e{k}" for m, k in columns], rotation=90, fontsize=7)
    ax.set_yticks(np.arange(len(counts)),
                  [f"{_relation_label(int(r), relation_names)} (n={int(q)})"
                   for r, q in zip(counts["relation"], counts["queries"])], fontsize=7)
    edges = np.cumsum([sum(1 for c in columns if c[0] == m) for m in modalities])[:-1]
    for x in edges:
        ax.axvline(x - 0.5, color="white", linewidth=2)
    ax.set_xlabel("modality × expert")
    ax.set_ylabel("relation (queries)")
    ax.set_title(title if title is not None else f"MoMoK expert gates ({direction} queries)", fontsize=10)
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label("mean gate weight")
    return fig


# -- 3. MoMoK modality contributions -----------------------------------------------------------
def modality_contribution(fusion_weights: pd.DataFrame | None = None,
                          decision_probability: pd.DataFrame | None = None, *, title: str | None = None):
    """MoMoK's modality contributions, one panel per frame given.

    fusion_weights: `MoMoK.interpretation(...)["fusion_weights"]` (relation, modality, weight,
    queries, direction): the adaptive joint-fusion weight of each modality; plotted per modality as
    the query-weighted mean over relations and directions. decision_probability: the same file's
    "decision_probability" (relation, modality, probability, queries, direction): each decision's
    (incl. "joint") mean sigmoid probability of the true answer; plotted likewise.
    """
    plt = _pyplot()
    panels = []
    if fusion_weights is not None:
        _require(fusion_weights, ["modality", "weight", "queries"], "fusion_weights")
        panels.append((fusion_weights, "weight", "mean fusion weight", "adaptive fusion weight"))
    if decision_probability is not None:
        _require(decision_probability, ["modality", "probability", "queries"], "decision_probability")
        panels.append((decision_probability, "probability", "mean P(true answer)",
                       "decision: probability of the true answer"))
    if not panels:
        raise ValueError("modality_contribution needs fusion_weights, decision_probability or both")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + 0.6, 3.2), squeeze=False)
    for ax, (frame, value, ylabel, subtitle) in zip(axes[0], panels):
        means = _weighted_mean(frame, ["modality"], value).set_index("modality")[value]
        order = _modality_order(means.index)
        bars = ax.bar(np.arange(len(order)), means.reindex(order).to_numpy(), color="C0")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(np.arange(len(order)), order, fontsize=8)
        ax.set_ylim(0.0, 1.05)
        ax.set_xlabel("modality" if value == "weight" else "decision")
        ax.set_ylabel(f"{ylabel} (query-weighted)")
        ax.set_title(subtitle, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title if title is not None else "MoMoK modality contribution (training queries)", fontsize=10)
    fig.tight_layout()
    return fig


# -- 4. MoCME modality weights per scenario ----------------------------------------------------
def _cell_label(scenario, level) -> str:
    return "clean" if scenario == "clean" else f"{scenario} {float(level):g}"


def mocme_modality_weights(frame: pd.DataFrame, *, title: str | None = None):
    """MoCME's learned modality weights per scenario cell, grouped bars (one per modality).

    frame: scenario, level, modality, weight[, seed]: `MoCME.interpretation(...)["modality_weights"]`
    (the mean entity-level modality weight) of one run per row, tagged with its scenario, level and
    seed. Cells in the frame's order, the clean one(s) first, labelled "clean" or "<scenario> <level>";
    several seeds: the mean with ± one sample std (ddof=1) error bars.
    """
    plt = _pyplot()
    _require(frame, ["scenario", "level", "modality", "weight"], "modality-weight frame")
    seeds = "seed" in frame.columns
    dup = frame.duplicated(["scenario", "level", "modality"] + (["seed"] if seeds else []))
    if dup.any():
        raise ValueError(f"{int(dup.sum())} repeated (scenario, level, modality{', seed' if seeds else ''}) rows: "
                         + ("one row per run" if seeds else "add a seed column to average several runs"))
    data = frame.assign(cell=[_cell_label(s, lv) for s, lv in zip(frame["scenario"], frame["level"])])
    cells = list(dict.fromkeys(data["cell"]))
    cells = [c for c in cells if c == "clean"] + [c for c in cells if c != "clean"]
    modalities = _modality_order(data["modality"].unique())
    stats = data.groupby(["cell", "modality"])["weight"].agg(["mean", "std", "count"])
    n_seeds = int(stats["count"].max())
    fig, ax = plt.subplots(figsize=(max(3.6, 0.9 * len(cells) * max(1, len(modalities)) / 2 + 1.5), 3.4))
    width = 0.8 / len(modalities)
    x = np.arange(len(cells), dtype=float)
    for i, m in enumerate(modalities):
        sub = stats.xs(m, level="modality").reindex(cells)
        err = sub["std"].fillna(0.0).to_numpy() if n_seeds > 1 else None
        ax.bar(x - 0.4 + width * (i + 0.5), sub["mean"].to_numpy(), width=width, yerr=err, capsize=2, label=m)
    ax.set_xticks(x, cells, rotation=30 if len(cells) > 4 else 0, fontsize=8)
    ax.set_xlabel("scenario (level)")
    ax.set_ylabel("mean modality weight")
    ax.set_title(title if title is not None else "MoCME modality weights", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title=f"± 1 std over {n_seeds} seeds" if n_seeds > 1 else None, title_fontsize=7)
    return fig


# -- 5. critical-difference diagram ------------------------------------------------------------
def cd_diagram(avg_ranks: pd.Series, cd: float, *, cliques=None, descriptive: bool = False,
               title: str | None = None, alpha: float = 0.05, n_blocks: int | None = None):
    """A critical-difference diagram (Demšar, JMLR 7:1-30, 2006, Fig. 1-2).

    avg_ranks: model -> average rank over the data sets (1 = best); cd: the critical difference of
    the post-hoc test at level `alpha`. The rank axis runs from 1 (best, on the LEFT) to k; each model
    is marked by a line from its rank to its label "<name> (<rank>)", the better half labelled on the
    left, the worse half on the right. Thick bars join the models of each clique (no two of them
    differ by cd or more): `cliques` as lists of names, else `mmkgbench.stats.cliques`. A scale bar shows
    "CD = x.xx". With descriptive=True (fewer than 5 data sets) the title says so: not a test.
    """
    plt = _pyplot()
    ranks = pd.Series(avg_ranks, dtype=float).sort_values(kind="stable")
    k = len(ranks)
    if k < 2:
        raise ValueError("a CD diagram needs at least two models")
    if not np.isfinite(ranks.to_numpy()).all() or ranks.min() < 1 - 1e-9 or ranks.max() > k + 1e-9:
        raise ValueError(f"average ranks must lie in [1, {k}] for {k} models: {ranks.to_dict()}")
    if not (math.isfinite(cd) and cd > 0):
        raise ValueError(f"cd must be a positive number, not {cd!r}")
    if cliques is None:
        cliques = groups_within(ranks, cd)
    unknown = sorted({m for c in cliques for m in c} - set(ranks.index))
    if unknown:
        raise ValueError(f"cliques name models without an average rank: {', '.join(map(str, unknown))}")
    n_left = math.ceil(k / 2)
    fig, ax = plt.subplots(figsize=(6.4, 1.6 + 0.26 * (n_left + len(cliques))))
    # the axis (y = 0) with integer ticks above it
    ax.plot([1, k], [0, 0], color="black", linewidth=1.2)
    for v in range(1, k + 1):
        ax.plot([v, v], [0, 0.12], color="black", linewidth=1.0)
        ax.text(v, 0.2, str(v), ha="center", va="bottom", fontsize=8)
    # the CD scale bar above the axis, from rank 1
    ycd = 0.75
    ax.plot([1, 1 + cd], [ycd, ycd], color="black", linewidth=1.2)
    for xe in (1, 1 + cd):
        ax.plot([xe, xe], [ycd - 0.07, ycd + 0.07], color="black", linewidth=1.0)
    ax.text(1 + cd / 2, ycd + 0.12, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    # clique bars just below the axis
    step, pad = 0.3, 0.04
    for i, clique in enumerate(cliques):
        r = ranks[list(clique)]
        y = -(i + 1) * step * 0.7
        ax.plot([r.min() - pad, r.max() + pad], [y, y], color="black", linewidth=4, solid_capstyle="round")
    top = -(len(cliques) * step * 0.7 + step)
    # elbow lines to the labels
    for i, (name, rank) in enumerate(ranks.items()):
        left = i < n_left
        row = i if left else k - 1 - i             # the outermost models get the lowest rows
        y = top - row * step
        xe = 0.6 if left else k + 0.4
        ax.plot([rank, rank, xe], [0, y, y], color="0.35", linewidth=0.8)
        ax.text(xe - 0.05 if left else xe + 0.05, y, f"{name} ({rank:.2f})", ha="right" if left else "left",
                va="center", fontsize=8)
    ax.set_xlim(-1.0, max(k + 0.4, 1 + cd) + 1.6)
    ax.set_ylim(top - n_left * step, ycd + 0.45)
    ax.axis("off")
    head = title if title is not None else (
        f"Average ranks (1 = best){'' if n_blocks is None else f' over {n_blocks} data sets'}, CD at α = {alpha:g}")
    if descriptive:          # a string gives the reason (e.g. blocks that are not independent data sets)
        why = descriptive if isinstance(descriptive, str) else \
            f"{'N' if n_blocks is None else n_blocks} < 5 data sets"
        head += f"\ndescriptive: {why}, not a significance test"
    ax.set_title(head, fontsize=9)
    return fig
