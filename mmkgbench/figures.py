"""Analysis figures: per-relation comparison of two runs, the views a model declares over its own
interpretation tables (heatmaps, bars), and critical-difference diagrams. Nothing here knows a model:
a model's name reaches a figure only through the title its caller gives.

Each figure function is a pure function of a tidy frame (or plain values) and returns a matplotlib
Figure; the caller saves it with `mmkgbench.plots.save_figure` and closes it.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mmkgbench.plots import pyplot
from mmkgbench.stats import cliques as groups_within

def _require(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})")


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
    plt = pyplot()
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


# -- 2. interpretation views: what a model declares about its own tables ----------------------
KINDS = ("heatmap", "bars")
RUNS = ("clean", "all")        # the lowest-seed clean run per data set | every run, per scenario cell
_REQUIRED = {"heatmap": ("table", "kind", "value", "index", "columns"), "bars": ("table", "kind", "value", "x")}
_OPTIONAL = {"heatmap": ("labels", "max_rows"), "bars": ()}
_COMMON = ("runs", "where", "order", "range", "title", "value_label")
RUN_COLUMNS = ("scenario", "level", "seed")     # what the report adds to each run's table for runs = "all"


def check_view(view: dict, columns=None, *, name: str = "view", where: str = "") -> dict:
    """The view with its defaults filled in; ValueError naming `where` (e.g. the run folder) and the
    view `name` on a bad one.

    view: one entry of a model's `interpretation_views` (keys documented at
    mmkgbench.model.KGEModel.interpretation_views). columns: the stored table's columns; when given,
    every column the view reads (value, index, columns, x, where) must be among them.
    Defaults: runs "clean", where {}, order None (ascending), range None (the data's), title = the name
    with spaces, value_label "mean <value>", labels None, max_rows 40.
    """
    at = f"{where}: " if where else ""
    bad = lambda msg: ValueError(f"{at}interpretation view {name!r}: {msg}")
    if not isinstance(view, dict):
        raise bad(f"must be a dict, not {type(view).__name__}")
    kind = view.get("kind")
    if kind not in KINDS:
        raise bad(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    missing = [k for k in _REQUIRED[kind] if k not in view]
    if missing:
        raise bad(f"a {kind} needs {', '.join(missing)}")
    unknown = sorted(set(view) - set(_REQUIRED[kind]) - set(_OPTIONAL[kind]) - set(_COMMON))
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)} for a {kind}; valid: "
                  f"{', '.join(_REQUIRED[kind] + _OPTIONAL[kind] + _COMMON)}")
    out = {"runs": "clean", "where": {}, "order": None, "range": None, "title": name.replace("_", " "),
           "value_label": f"mean {view['value']}", **view}
    if out["runs"] not in RUNS:
        raise bad(f"runs must be one of {', '.join(RUNS)}, not {out['runs']!r}")
    if kind == "heatmap":
        out = {"labels": None, "max_rows": 40, **out}
        cols = out["columns"]
        out["columns"] = [cols] if isinstance(cols, str) else list(cols)
        if not out["columns"] or not all(isinstance(c, str) for c in out["columns"]):
            raise bad(f"columns must be a column name or a non-empty list of them, not {cols!r}")
        if out["runs"] != "clean":
            raise bad(f"a heatmap draws one run: runs must be 'clean', not {out['runs']!r}")
        if out["max_rows"] is not None and not (isinstance(out["max_rows"], int) and out["max_rows"] > 0):
            raise bad(f"max_rows must be a positive int or null, not {out['max_rows']!r}")
    if not isinstance(out["where"], dict):
        raise bad(f"where must map columns to a value or a list of values, not {out['where']!r}")
    rng = out["range"]
    if rng is not None and not (isinstance(rng, (list, tuple)) and len(rng) == 2 and rng[0] < rng[1]):
        raise bad(f"range must be [lo, hi] with lo < hi, not {rng!r}")
    if out["order"] is not None and not isinstance(out["order"], (list, tuple)):
        raise bad(f"order must be a list of values ('*' for the others), not {out['order']!r}")
    if columns is not None:
        need = [out["value"], *([out["index"], *out["columns"]] if kind == "heatmap" else [out["x"]]),
                *out["where"]]
        absent = [c for c in dict.fromkeys(need) if c not in set(columns)]
        if absent:
            raise bad(f"table {out['table']!r} lacks column(s) {', '.join(map(str, absent))} "
                      f"(has {', '.join(map(str, columns))})")
    return out


def _name(view) -> str:
    """What to call a view handed over without its name (errors, default title): its table's name."""
    return view["table"] if isinstance(view, dict) and isinstance(view.get("table"), str) else "view"


def _ordered(values, order=None) -> list:
    """Distinct `values` in `order` ("*" = the values not listed, ascending; listed values that are
    absent are skipped; without "*" the others follow), else ascending."""
    values = list(dict.fromkeys(values))
    try:
        rest = sorted(v for v in values if order is None or v not in order)
    except TypeError:                         # mixed types: a stable order all the same
        rest = sorted((v for v in values if order is None or v not in order), key=str)
    if order is None:
        return rest
    out = []
    for o in order:
        out += rest if o == "*" else [o] if o in values else []
    return out + ([] if "*" in order else rest)


def _mean(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Per group of `keys` (sorted): the mean of `value`, weighted by `queries` where the frame has
    that column (then also the summed queries)."""
    if "queries" not in frame.columns:
        return frame.groupby(keys, sort=True)[value].mean().reset_index()
    return _weighted_mean(frame, keys, value)


def _selected(frame: pd.DataFrame, view: dict) -> pd.DataFrame:
    keep = np.ones(len(frame), dtype=bool)
    for col, want in view["where"].items():
        keep &= frame[col].isin(want if isinstance(want, (list, tuple)) else [want]).to_numpy()
    sel = frame[keep]
    if sel.empty:
        raise ValueError(f"no rows of table {view['table']!r} match where={view['where']} "
                         f"(of {len(frame)} rows)")
    return sel


def _cell_label(scenario, level) -> str:
    return "clean" if scenario == "clean" else f"{scenario} {float(level):g}"


def view_frame(frame: pd.DataFrame, view: dict) -> pd.DataFrame:
    """The numbers a view draws, in drawing order (what the report saves beside the figure).

    frame: the stored table of one run (runs = "clean"), or of every run concatenated with the
    columns scenario, level, seed (runs = "all"). Rows are first kept by `where`.
    heatmap -> index, label, *columns, value[, queries]: the (query-weighted) mean per cell; rows
      ordered by queries (most first, then index; without queries by index), at most max_rows of them.
    bars, runs "clean" -> x, value[, queries]: the (query-weighted) mean per bar.
    bars, runs "all" -> cell, scenario, level, x, value, std, seeds: per run the (query-weighted)
      mean per bar, then mean and sample std (ddof=1; 0 for one seed) over seeds; cells clean first,
      then by scenario and level.
    """
    view = check_view(view, frame.columns, name=_name(view))
    value = view["value"]
    if view["runs"] == "all":
        _require(frame, RUN_COLUMNS, f"the concatenated runs of view {view['title']!r}")
    sel = _selected(frame, view)
    if view["kind"] == "heatmap":
        index, cols = view["index"], view["columns"]
        cells = _mean(sel, [index, *cols], value)
        rows = pd.DataFrame({index: _ordered(cells[index])})
        if "queries" in cells.columns:
            # the queries of a row: those of its most-visited cell (every query passes every gate)
            q = cells.groupby(index)["queries"].max()
            rows["queries"] = rows[index].map(q)
            rows = rows.sort_values(["queries", index], ascending=[False, True], kind="stable")
        if view["max_rows"] is not None:
            rows = rows.head(view["max_rows"])
        labels = view["labels"]
        names = sel.drop_duplicates(index).set_index(index)[labels] if labels in sel.columns else None
        rows["label"] = [str(names[v]) if names is not None else str(v) for v in rows[index]]
        keys = _column_keys(cells, cols, view["order"])
        grid = cells.set_index([index, *cols])
        out = []
        for rv, label in zip(rows[index], rows["label"]):
            for key in keys:
                rec = {index: rv, "label": label, **dict(zip(cols, key))}
                at = (rv, *key)
                rec[value] = float(grid[value].get(at, np.nan))
                if "queries" in grid.columns:
                    rec["queries"] = grid["queries"].get(at, 0)
                out.append(rec)
        return pd.DataFrame(out)
    x = view["x"]
    if view["runs"] == "clean":
        means = _mean(sel, [x], value).set_index(x)
        return means.reindex(_ordered(means.index, view["order"])).rename_axis(x).reset_index()
    per_run = _mean(sel, [*RUN_COLUMNS, x], value)
    stats = per_run.groupby(["scenario", "level", x], sort=True)[value].agg(["mean", "std", "count"]).reset_index()
    stats["cell"] = [_cell_label(s, lv) for s, lv in zip(stats["scenario"], stats["level"])]
    stats["clean_first"] = np.where(stats["scenario"] == "clean", 0, 1)
    rank = {v: i for i, v in enumerate(_ordered(stats[x], view["order"]))}
    stats = stats.assign(_x=stats[x].map(rank)).sort_values(["clean_first", "scenario", "level", "_x"], kind="stable")
    return pd.DataFrame({"cell": stats["cell"], "scenario": stats["scenario"], "level": stats["level"],
                         x: stats[x], value: stats["mean"], "std": stats["std"].fillna(0.0),
                         "seeds": stats["count"].astype(int)}).reset_index(drop=True)


def _column_keys(cells: pd.DataFrame, cols: list[str], order) -> list[tuple]:
    """Column keys of a heatmap: the first column in `order`, the others ascending within it."""
    keys = []
    for first in _ordered(cells[cols[0]], order):
        sub = cells[cells[cols[0]] == first]
        keys += [(first, *k) for k in sorted(set(map(tuple, sub[cols[1:]].itertuples(index=False))))]
    return keys


def heatmap(frame: pd.DataFrame, view: dict, *, title: str | None = None):
    """A heatmap of one run's table: the mean `value` per `index` (rows) and column key (columns).

    frame: the stored table (e.g. a table of expert gates: relation, modality, expert, weight,
    queries, direction); view: a heatmap view (see check_view). Cells are `view_frame`'s; row labels
    "<label> (n=<queries>)" where the table counts queries; column labels the key's values joined by
    spaces, with a white line between groups of the first key column; colour limits the view's
    range, else the data's.
    """
    plt = pyplot()
    view = check_view(view, frame.columns, name=_name(view))
    if view["kind"] != "heatmap":
        raise ValueError(f"heatmap() got a {view['kind']} view")
    cells = view_frame(frame, view)
    index, cols, value = view["index"], view["columns"], view["value"]
    rows = list(dict.fromkeys(cells[index]))
    keys = list(dict.fromkeys(map(tuple, cells[cols].itertuples(index=False))))
    matrix = cells[value].to_numpy(dtype=float).reshape(len(rows), len(keys))
    counted = "queries" in cells.columns
    labels = cells.drop_duplicates(index)["label"].tolist()
    if counted:                   # a row's queries: those of its most-visited cell, as view_frame orders them
        per_row = cells.groupby(index, sort=False)["queries"].max()
        labels = [f"{lab} (n={int(per_row[r])})" for lab, r in zip(labels, rows)]
    lo, hi = view["range"] if view["range"] is not None else (np.nanmin(matrix), np.nanmax(matrix))
    fig, ax = plt.subplots(figsize=(1.6 + 0.38 * len(keys), max(2.2, 0.26 * len(rows) + 1.4)))
    im = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", vmin=lo, vmax=hi, cmap="viridis",
                   interpolation="nearest")
    ax.set_xticks(np.arange(len(keys)), [" ".join(map(str, k)) for k in keys], rotation=90, fontsize=7)
    ax.set_yticks(np.arange(len(rows)), labels, fontsize=7)
    if len(cols) > 1:
        for j in range(1, len(keys)):
            if keys[j][0] != keys[j - 1][0]:
                ax.axvline(j - 0.5, color="white", linewidth=2)
    ax.set_xlabel(" × ".join(cols))
    ax.set_ylabel(f"{index} (queries)" if counted else index)
    ax.set_title(title if title is not None else view["title"], fontsize=10)
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label(view["value_label"])
    return fig


def bars(frame: pd.DataFrame, view: dict, *, title: str | None = None):
    """Bars of a table: the mean `value` per `x`.

    frame, view: see `view_frame`. runs "clean": one bar per x value, labelled with its value.
    runs "all": one group per scenario cell (clean first), one bar per x value in each (the legend),
    ± one sample std over seeds as error bars when there are several. The y label says
    "(query-weighted)" where the table counts queries; the y axis spans the view's range.
    """
    plt = pyplot()
    view = check_view(view, frame.columns, name=_name(view))
    if view["kind"] != "bars":
        raise ValueError(f"bars() got a {view['kind']} view")
    data = view_frame(frame, view)
    x, value = view["x"], view["value"]
    ylabel = view["value_label"] + ("\n(query-weighted)" if "queries" in frame.columns else "")
    if view["runs"] == "clean":
        fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(data) + 2.4), 3.4))
        drawn = ax.bar(np.arange(len(data)), data[value].to_numpy(), color="C0")
        ax.bar_label(drawn, fmt="%.2f", fontsize=7)
        ax.set_xticks(np.arange(len(data)), [str(v) for v in data[x]], fontsize=8)
        ax.set_xlabel(x)
    else:
        cells = list(dict.fromkeys(data["cell"]))
        series = list(dict.fromkeys(data[x]))
        n_seeds = int(data["seeds"].max())
        fig, ax = plt.subplots(figsize=(max(3.6, 0.45 * len(cells) * max(1, len(series)) + 1.5), 3.4))
        width = 0.8 / len(series)
        pos = np.arange(len(cells), dtype=float)
        for i, s in enumerate(series):
            sub = data[data[x] == s].set_index("cell").reindex(cells)
            err = sub["std"].fillna(0.0).to_numpy() if n_seeds > 1 else None
            ax.bar(pos - 0.4 + width * (i + 0.5), sub[value].to_numpy(), width=width, yerr=err, capsize=2,
                   label=str(s))
        ax.set_xticks(pos, cells, rotation=30 if len(cells) > 4 else 0, fontsize=8)
        ax.set_xlabel("scenario (level)")
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  title=f"{x}\n± 1 std over {n_seeds} seeds" if n_seeds > 1 else x, title_fontsize=7)
    if view["range"] is not None:
        lo, hi = view["range"]
        ax.set_ylim(lo, hi + 0.05 * (hi - lo))        # room for the value labels
    ax.set_ylabel(ylabel)
    ax.set_title(title if title is not None else view["title"], fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return fig


DRAW = {"heatmap": heatmap, "bars": bars}          # view kind -> figure function (frame, view, title=)


# -- 3. critical-difference diagram ------------------------------------------------------------
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
    plt = pyplot()
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
