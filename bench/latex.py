"""The leaderboard as LaTeX tables to paste into a paper (``leaderboard.tex``, next to ``leaderboard.md``).

The same tables as the Markdown leaderboard, in the paper's shape (models as rows, tasks as columns
with the paper's short labels): Tables 1–3, the unseen tasks, the other tasks
(bench.leaderboard.paper_tables), Table 4 (prompt robustness) when that track ran, the overall
mean rank, and efficiency when it ran. Each column's best value is in bold and
the second best underlined (ties share the mark); '--' is a cell not evaluated, \\textit{failed} one
whose unit failed. Tables wider than ``WIDE_COLUMNS`` task columns are ``table*`` scaled to the text
width. The fragment needs ``\\usepackage{booktabs,graphicx}`` and nothing else.
"""
from __future__ import annotations

import math
import re
from typing import Iterable

from .leaderboard import (DECIMALS, SHORT_NAMES, Leaderboards, column_ranks, counted, efficiency_rows,
                          format_value, overall_rows, paper_tables, per_column, prompt_blind, prompt_blind_note,
                          ranked_rows, robustness_decimals, robustness_models, scored_counts, task_order)
from .metrics import METRICS

WIDE_COLUMNS = 8

# Characters LaTeX treats specially, and the Unicode the Markdown labels use, in text mode.
_REPLACEMENTS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "→": r"$\rightarrow$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "–": "--", "×": r"$\times$",
    "²": r"$^2$", "·": r"$\cdot$",
}
_SPECIAL = re.compile("|".join(re.escape(k) for k in _REPLACEMENTS))


def latex_escape(text: str) -> str:
    """Plain text -> LaTeX text mode: specials escaped, the leaderboard's arrows and dashes as LaTeX."""
    return _SPECIAL.sub(lambda m: _REPLACEMENTS[m.group(0)], str(text))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _float(body: str, caption: str, label: str, wide: bool) -> str:
    """A tabular in a table float; a wide one in ``table*``, scaled to the text width."""
    env = "table*" if wide else "table"
    lines = [f"\\begin{{{env}}}[t]", "\\centering", f"\\caption{{{caption}}}", f"\\label{{tab:{label}}}"]
    lines += ["\\resizebox{\\textwidth}{!}{%", body + "%", "}"] if wide else [body]
    return "\n".join(lines + [f"\\end{{{env}}}"])


def ranked_table(cells: dict, rows: list[str], columns: list[str], *, higher_is_better: dict | bool,
                 decimals: dict | int, caption: str, label: str, labels: dict | None = None,
                 failed: set | None = None, row_header: str = "Method", unranked: Iterable[str] = ()) -> str:
    """{(row, column): value} -> a booktabs table float: each column's best value bold, second underlined.

    ``higher_is_better`` and ``decimals`` are one value for every column or a dict per column;
    ``caption`` is plain text (escaped here); ``label`` becomes ``tab:LABEL``; rows in ``unranked``
    are shown, never marked.
    """
    labels, failed = labels or {}, failed or set()
    ranks = column_ranks(cells, ranked_rows(rows, unranked), columns, higher_is_better, decimals)
    marks = {1: "\\textbf{%s}", 2: "\\underline{%s}"}
    head = " & ".join([latex_escape(row_header)] + [latex_escape(labels.get(c, c)) for c in columns])
    lines = [f"\\begin{{tabular}}{{l{'c' * len(columns)}}}", "\\toprule", head + " \\\\", "\\midrule"]
    for r in rows:
        out = [latex_escape(r)]
        for c in columns:
            if (r, c) in failed:
                out.append("\\textit{failed}")
                continue
            text = latex_escape(format_value(cells.get((r, c), math.nan), per_column(decimals, c)))
            out.append(marks.get(ranks.get((r, c)), "%s") % text)
        lines.append(" & ".join(out) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return _float("\n".join(lines), latex_escape(caption), _slug(label), len(columns) > WIDE_COLUMNS)


def plain_latex_table(headers: list[str], rows: list[list], *, caption: str, label: str, wide: bool = False) -> str:
    """Rows of values (str() of each, escaped) -> a booktabs table float without highlighting."""
    lines = [f"\\begin{{tabular}}{{l{'c' * (len(headers) - 1)}}}", "\\toprule",
             " & ".join(latex_escape(h) for h in headers) + " \\\\", "\\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return _float("\n".join(lines), latex_escape(caption), _slug(label), wide)


def _queries(rows) -> str:
    """'8 queries per task', or the range when the tasks or models differ."""
    counts = scored_counts(rows)
    return f"{counted(counts, 'query', 'queries')} per task" if len(counts) else "no queries"


def to_latex(lb: Leaderboards) -> str:
    """Every leaderboard table that has rows, as LaTeX floats (see the module docstring)."""
    mt = lb.model_task
    models = list(lb.overall["model"]) if len(lb.overall) else sorted(mt["model"].unique())
    marks = "Best in bold, second best underlined."
    blocks = ["% llvbench leaderboard (bench.latex); needs \\usepackage{booktabs,graphicx}"
              + "".join(f"\n% WARNING: {' '.join(w.split())}" for w in lb.warnings)]
    for t in paper_tables(mt):
        caption = (f"{t.title}. Mean over {_queries(t.rows)}, each with one fixed prompt "
                   f"(the next test pair of the task from another photo). {marks}")
        blocks.append(ranked_table(t.cells, models, t.tasks, higher_is_better=METRICS[t.metric].higher_is_better,
                                   decimals=DECIMALS[t.metric], labels=SHORT_NAMES, failed=t.failed,
                                   caption=caption, label=f"llvbench-{t.title.split(',')[0]}"))
    rb = lb.robustness
    if len(rb):
        cells = {(r.model, r.task): r.std for r in rb.itertuples()}
        blind = prompt_blind(rb)
        blocks.append(ranked_table(
            cells, robustness_models(rb, models), task_order(rb["task"].unique()),
            higher_is_better=False, decimals=robustness_decimals(rb), labels=SHORT_NAMES, label="llvbench-table-4",
            unranked=blind,
            caption=(f"Table 4: standard deviation↓ of the task mean across {counted(rb['prompts'], 'prompt')} "
                     f"(headline metric: dB "
                     f"for PSNR tasks, MAE for edges), on the same queries. {marks}"
                     + (f" {prompt_blind_note(blind)}" if blind else ""))))
    if len(lb.overall):
        blocks.append(plain_latex_table(*overall_rows(lb.overall), label="llvbench-rank",
                                        caption="Mean rank across tasks (1 = best) on each task's headline metric."))
    if len(lb.efficiency):
        blocks.append(plain_latex_table(
            *efficiency_rows(lb.efficiency), label="llvbench-efficiency", wide=True,
            caption=("Efficiency (the bench's efficiency track). The last column is the authors' implementation of "
                     "the same network on one NVIDIA H200 (reference data); compare it with ours only on that GPU.")))
    return "\n\n".join(blocks) + "\n"

