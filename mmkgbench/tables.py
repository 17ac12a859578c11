"""One table model, two renderers: GitHub Markdown and LaTeX (booktabs), from the same tidy frame.

A table is built from a tidy long frame, one row per printed cell:

    row      the row label (a model, "published", ...)
    group    the column group (a data set); "" for a table without groups
    metric   the column inside the group ("mrr", "hits@1", ... or any label)
    value    the number (NaN for a missing cell)
  optional:
    std      printed as "± std" (NaN: nothing printed)
    marker   a significance marker appended to the cell ("" for none)
    text     printed instead of the number (e.g. "not yet obtained")
    ranked   False for rows that take no part in best / second (a difference row)
    section  a header above a block of rows (e.g. "Uni-modal KGC methods")

Best and second per column are decided on the value *as printed* (after scaling and rounding), so
two cells that read the same are both bold: a reader can check every highlight against the
numbers. MR (and any metric in `lower_better`) is best when smallest. Rows, groups and metrics keep
the order of their first appearance in the frame, so the caller fixes the order once and a
regenerated table diffs cleanly. Markdown has no underline: the second best is in italics there,
underlined in LaTeX (anchors.md §6: best bold, second underlined).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from tabulate import tabulate

LOWER_BETTER = ("mr",)
LABELS = {"mrr": "MRR", "mr": "MR", "hits@1": "H@1", "hits@3": "H@3", "hits@10": "H@10"}
_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   # symbols our labels and notes use, which pdflatex's default input encoding lacks
                   "±": r"$\pm$", "×": r"$\times$", "α": r"$\alpha$", "Δ": r"$\Delta$", "ε": r"$\epsilon$",
                   "δ": r"$\delta$", "–": "--", "−": "$-$", "≥": r"$\geq$", "≤": r"$\leq$", "†": r"$^{\dagger}$",
                   "‡": r"$^{\ddagger}$"}
# A note may say how cells are highlighted; each renderer words it for what it draws.
HIGHLIGHT = "{highlight}"
_HIGHLIGHT_TEXT = {"md": "**bold** best, *italic* second best", "tex": r"\textbf{bold} best, \underline{underlined} "
                   "second best"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in a label (model names hold `_`, data set names `~`)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


@dataclass(frozen=True)
class Cell:
    text: str                  # the printed number, "–" or a note
    emph: str = ""             # "best", "second" or ""
    marker: str = ""           # e.g. "†"
    std: str = ""              # the printed std, "" for none


@dataclass
class Table:
    """A rendered-independent table: `cells[(row, (group, metric))]`, rows in `sections` order."""
    title: str
    columns: list[tuple[str, str]]
    sections: list[tuple[str, list[str]]]          # (header or "", row labels)
    cells: dict[tuple[str, tuple[str, str]], Cell]
    notes: list[str] = field(default_factory=list)
    label: str = ""                                 # LaTeX \label and file stem
    row_header: str = "model"

    @property
    def rows(self) -> list[str]:
        return [r for _, rows in self.sections for r in rows]


def _fmt(value: float, decimals: int) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def build_table(frame: pd.DataFrame, *, title: str, label: str = "", notes=(), scale: float = 100.0,
                decimals: int | dict = 2, lower_better=LOWER_BETTER, unscaled=("mr",), highlight: bool = True,
                row_header: str = "model") -> Table:
    """A Table from the tidy frame described in the module docstring.

    Values are multiplied by `scale` (x100 as MMKGC papers print MRR and Hits@k) except metrics in
    `unscaled` (MR is a rank); std likewise. `decimals`: one number for every column, or a dict
    metric -> decimals (others: 2). `highlight`: mark best (bold) and second per column.
    """
    f = frame.copy()
    for col, default in (("std", float("nan")), ("marker", ""), ("text", ""), ("ranked", True), ("section", "")):
        if col not in f:
            f[col] = default
    f["group"] = f["group"].fillna("").astype(str)
    f = f.fillna({"marker": "", "text": "", "section": ""})
    dup = f[f.duplicated(["row", "group", "metric"], keep=False)]
    if not dup.empty:
        r = dup.iloc[0]
        raise ValueError(f"table {title!r}: {len(dup)} entries for one cell (row {r['row']!r}, "
                         f"{r['group']!r} {r['metric']!r}); a cell holds one number")
    columns = list(dict.fromkeys(zip(f["group"], f["metric"])))
    sections: list[tuple[str, list[str]]] = []
    for sec, row in dict.fromkeys(zip(f["section"], f["row"])):
        if sections and sections[-1][0] == sec:
            sections[-1][1].append(row)
        else:
            sections.append((sec, [row]))
    cells = {}
    for (group, metric), col in f.groupby(["group", "metric"], sort=False):
        k = 1.0 if metric in unscaled else scale
        dec = decimals.get(metric, 2) if isinstance(decimals, dict) else decimals
        printed = {r.row: round(r.value * k, dec) for r in col.itertuples()
                   if r.ranked and not r.text and not pd.isna(r.value)}
        order = sorted(set(printed.values()), reverse=metric not in lower_better)
        for r in col.itertuples():
            emph = ""
            if highlight and r.row in printed:
                emph = "best" if printed[r.row] == order[0] else "second" if len(order) > 1 and \
                    printed[r.row] == order[1] else ""
            text = r.text or _fmt(r.value * k, dec)
            std = "" if r.text or pd.isna(r.std) else _fmt(r.std * k, dec)
            cells[(r.row, (group, metric))] = Cell(text, emph, r.marker, std)
    return Table(title=title, columns=columns, sections=sections, cells=cells, notes=list(notes), label=label,
                 row_header=row_header)


def _column_name(group: str, metric: str) -> str:
    name = LABELS.get(metric, metric)
    return f"{group} {name}" if group else name


def to_markdown(table: Table) -> str:
    """GitHub Markdown: bold best, italic second, markers after the number, `± std` in the cell; a
    section header is a row of its own in bold. Title above, notes below."""
    head = [table.row_header] + [_column_name(g, m) for g, m in table.columns]
    lines = []
    for sec, rows in table.sections:
        if sec:
            lines.append([f"*{sec}*"] + [""] * len(table.columns))
        for row in rows:
            line = [row]
            for col in table.columns:
                c = table.cells.get((row, col))
                if c is None:
                    line.append("")
                    continue
                body = c.text + (f" ± {c.std}" if c.std else "")
                body = f"**{body}**" if c.emph == "best" else f"*{body}*" if c.emph == "second" else body
                line.append(body + c.marker)
            lines.append(line)
    text = f"**{table.title}**\n\n" + tabulate(lines, headers=head, tablefmt="github", disable_numparse=True)
    notes = [n.replace(HIGHLIGHT, _HIGHLIGHT_TEXT["md"]) for n in table.notes]
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def to_latex(table: Table) -> str:
    """A booktabs `table` environment: \\toprule/\\midrule/\\bottomrule, no vertical rules, a
    \\cmidrule under each column group, best \\textbf, second \\underline, std as a small `± x`,
    markers as superscripts. Needs \\usepackage{booktabs}."""
    groups = list(dict.fromkeys(g for g, _ in table.columns))
    grouped = any(groups)
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(table.title)}}}"]
    if table.label:
        lines.append(rf"\label{{tab:{table.label}}}")
    lines += [r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule"]
    if grouped:
        head, rules, start = [""], [], 2
        for g in groups:
            n = sum(1 for gg, _ in table.columns if gg == g)
            head.append(rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(g)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
            start += n
        lines.append(" & ".join(head) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join([latex_escape(table.row_header)] +
                            [latex_escape(LABELS.get(m, m)) for _, m in table.columns]) + r" \\")
    lines.append(r"\midrule")
    for i, (sec, rows) in enumerate(table.sections):
        if i:
            lines.append(r"\midrule")
        if sec:
            lines.append(rf"\multicolumn{{{len(table.columns) + 1}}}{{l}}{{\textit{{{latex_escape(sec)}}}}} \\")
        for row in rows:
            out = [latex_escape(row)]
            for col in table.columns:
                c = table.cells.get((row, col))
                if c is None:
                    out.append("")
                    continue
                body = latex_escape(c.text)
                body = rf"\textbf{{{body}}}" if c.emph == "best" else rf"\underline{{{body}}}" \
                    if c.emph == "second" else body
                if c.std:
                    body += rf"{{\scriptsize$\pm${c.std}}}"
                out.append(body + latex_escape(c.marker))
            lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.notes:
        lines.append(r"\par\smallskip{\footnotesize " + _latex_note(note) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _latex_note(note: str) -> str:
    """A note in LaTeX: escaped, its Markdown emphasis (`**x**`, `*x*`) as \\textbf / \\textit."""
    import re
    head, sep, tail = note.partition(HIGHLIGHT)
    if sep:
        return _latex_note(head) + _HIGHLIGHT_TEXT["tex"] + _latex_note(tail)
    text = latex_escape(note)
    text = re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", text)
    return re.sub(r"(?<![\w\\])\*(.+?)\*", r"\\textit{\1}", text)
