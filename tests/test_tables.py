"""Tables: one frame, two renderers (Markdown, LaTeX); highlights, markers, escaping; golden files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmkgbench.report import main_tables, protocol_frame, protocol_tables
from mmkgbench.tables import build_table, latex_escape, to_latex, to_markdown

GOLDEN = Path(__file__).parent / "golden"


def cells(spec):
    """(row, group, metric, value) tuples -> the tidy table frame."""
    return pd.DataFrame(spec, columns=["row", "group", "metric", "value"])


def test_best_and_second_are_decided_on_the_printed_values():
    t = build_table(cells([("a", "", "mrr", 0.31234), ("b", "", "mrr", 0.31236), ("c", "", "mrr", 0.30),
                           ("d", "", "mrr", 0.29)]), title="t")
    emph = {r: t.cells[(r, ("", "mrr"))].emph for r in "abcd"}
    # 31.23 and 31.24 print differently: b best, a second; with one decimal both read 31.2 and tie
    assert emph == {"a": "second", "b": "best", "c": "", "d": ""}
    t1 = build_table(cells([("a", "", "mrr", 0.31234), ("b", "", "mrr", 0.31236), ("c", "", "mrr", 0.30)]),
                     title="t", decimals=1)
    assert [t1.cells[(r, ("", "mrr"))].emph for r in "abc"] == ["best", "best", "second"]


def test_mr_is_best_when_smallest_and_is_not_scaled():
    t = build_table(cells([("a", "", "mr", 12.0), ("b", "", "mr", 9.5), ("c", "", "mrr", 0.5)]), title="t")
    assert t.cells[("b", ("", "mr"))].emph == "best" and t.cells[("a", ("", "mr"))].emph == "second"
    assert t.cells[("b", ("", "mr"))].text == "9.50" and t.cells[("c", ("", "mrr"))].text == "50.00"


def test_unranked_rows_and_text_cells_take_no_part_in_highlights():
    frame = cells([("a", "", "mrr", 0.3), ("Δ", "", "mrr", 0.9), ("b", "", "mrr", 0.2), ("c", "", "mrr", np.nan)])
    frame["ranked"] = [True, False, True, True]
    frame["text"] = ["", "", "", "not yet obtained"]
    t = build_table(frame, title="t")
    assert t.cells[("a", ("", "mrr"))].emph == "best" and t.cells[("Δ", ("", "mrr"))].emph == ""
    assert t.cells[("c", ("", "mrr"))].text == "not yet obtained"
    assert "| c       | not yet obtained |" in to_markdown(t)


def test_one_cell_one_number():
    with pytest.raises(ValueError, match=r"2 entries for one cell \(row 'a', '' 'mrr'\)"):
        build_table(cells([("a", "", "mrr", 0.3), ("a", "", "mrr", 0.4)]), title="t")


def test_latex_escapes_labels_and_symbols():
    assert latex_escape("momok_no_exid") == r"momok\_no\_exid"
    assert latex_escape("DB15K+text~e5 & 50%") == r"DB15K+text\textasciitilde{}e5 \& 50\%"
    assert latex_escape("Δ ± ×") == r"$\Delta$ $\pm$ $\times$"
    t = build_table(cells([("momok_no_exid", "DB15K", "mrr", 0.3)]), title="a_b", notes=["x **y** *z* –"])
    tex = to_latex(t)
    assert r"momok\_no\_exid" in tex and r"\caption{a\_b}" in tex
    assert r"x \textbf{y} \textit{z} --" in tex


def rows_of(spec, protocol="harness-v2"):
    """(run_id, model, dataset, scenario, level, seed, metric, value) -> result rows (test, both sides)."""
    return pd.DataFrame([{"run_id": rid, "model": m, "dataset": d, "scenario": sc, "level": lv, "seed": s,
                          "split": "test", "side": "both", "metric": me, "value": v, "protocol": protocol}
                         for rid, m, d, sc, lv, s, me, v in spec])


SPEC = [(f"{m}{d}{s}", m, d, "clean", 0.0, s, metric, v + 0.01 * s + (0.1 if metric == "hits@10" else 0))
        for m, base in (("transe", 0.20), ("tucker", 0.30), ("momok", 0.35))
        for d, shift in (("DB15K", 0.0), ("MKG-W", 0.02))
        for s in (0, 1)
        for metric, v in (("mrr", base + shift), ("hits@10", base + shift))]


def sig_frame():
    """What significance.compare_to_reference returns, fixed: transe differs from momok, tucker only
    on DB15K MRR."""
    out = []
    for model in ("transe", "tucker"):
        for d in ("DB15K", "MKG-W"):
            for metric in ("mrr", "hits@10"):
                p = 0.001 if model == "transe" or (d == "DB15K" and metric == "mrr") else 0.2
                out.append({"protocol": "harness-v2", "dataset": d, "scenario": "clean", "level": 0.0,
                            "model": model, "reference": "momok", "metric": metric, "p": p, "p_holm": min(1, 8 * p),
                            "test": "randomization", "resamples": 10_000})
    return pd.DataFrame(out)


def test_main_table_golden_markdown_and_latex():
    """Regenerated tables diff cleanly: a fixed frame gives exactly the stored files."""
    (table,) = main_tables(rows_of(SPEC), sig_frame(), reference="momok", metrics=("mrr", "hits@10"))
    md, tex = to_markdown(table) + "\n", to_latex(table)
    assert md == (GOLDEN / "main_table.md").read_text()
    assert tex == (GOLDEN / "main_table.tex").read_text()


def test_main_table_markers_follow_holm_adjusted_p_values():
    (table,) = main_tables(rows_of(SPEC), sig_frame(), reference="momok", metrics=("mrr", "hits@10"))
    mark = {(r, c): cell.marker for (r, c), cell in table.cells.items()}
    assert mark[("transe", ("MKG-W", "hits@10"))] == "†"
    assert mark[("tucker", ("DB15K", "mrr"))] == "†"              # p_holm 0.008
    assert mark[("tucker", ("MKG-W", "mrr"))] == ""               # p_holm 1
    assert mark[("momok (ref.)", ("DB15K", "mrr"))] == ""
    assert table.rows == ["transe", "tucker", "momok (ref.)"]      # registry order, always
    assert "after Holm correction over the 8 comparisons" in " ".join(table.notes)
    (plain,) = main_tables(rows_of(SPEC), metrics=("mrr",))
    assert not any(c.marker for c in plain.cells.values()) and plain.rows == ["transe", "tucker", "momok"]


def test_a_single_data_set_goes_into_the_title():
    (table,) = main_tables(rows_of([r for r in SPEC if r[2] == "DB15K"]), metrics=("mrr",))
    assert table.title.startswith("DB15K, clean (level 0)") and table.columns == [("", "mrr")]
    assert table.cells[("momok", ("", "mrr"))].text == "35.50" and table.cells[("momok", ("", "mrr"))].std == "0.71"


def test_protocol_table_shows_the_inflation_of_the_reference_protocol():
    harness = rows_of([("h0", "tucker", "DB15K", "clean", 0.0, 0, "mrr", 0.30),
                       ("h1", "tucker", "DB15K", "clean", 0.0, 1, "mrr", 0.32)])
    ref = rows_of([("r0", "tucker", "DB15K", "clean", 0.0, 0, "mrr", 0.33),
                   ("r1", "tucker", "DB15K", "clean", 0.0, 1, "mrr", 0.35)], protocol="reference-v1")
    only = rows_of([("x0", "transe", "DB15K", "clean", 0.0, 0, "mrr", 0.2)])
    pf = protocol_frame(pd.concat([harness, ref, only]), metrics=("mrr",))
    assert list(pf["model"]) == ["tucker"]                        # transe has no reference run: left out
    assert pf["inflation_reference"].iloc[0] == pytest.approx(0.03) and "openke" not in pf.columns
    (table,) = protocol_tables(pd.concat([harness, ref, only]), metrics=("mrr",))
    md = to_markdown(table)
    assert "| tucker: inflation (reference − harness)" in md and "3.00" in md and "31.00" in md and "34.00" in md
    # clean DB15K: MoMoK's Table 1 prints TuckER's MRR (33.86), laid beside ours with its citation
    assert "| tucker: published" in md and "33.86" in md and "arXiv 2405.16869" in md
    noisy = pd.concat([harness, ref]).assign(scenario="noisy", level=0.2)
    assert "published" not in to_markdown(protocol_tables(noisy, metrics=("mrr",))[0])
    assert protocol_tables(harness, metrics=("mrr",)) == []
