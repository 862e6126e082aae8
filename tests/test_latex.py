"""bench.latex: the leaderboard as LaTeX floats (escaping, best/second marks, wide tables, every table)."""
from __future__ import annotations

import re

from test_leaderboard import frame, prov, results, row  # noqa: F401 - results is a fixture

from bench.latex import latex_escape, plain_latex_table, ranked_table, to_latex
from bench.leaderboard import build_leaderboards, column_ranks


def body_rows(tex: str) -> list[list[str]]:
    """The data rows of the (single) tabular in ``tex``, split into cells."""
    body = tex.split("\\midrule\n")[1].split("\\bottomrule")[0]
    return [line.removesuffix(" \\\\").split(" & ") for line in body.strip().splitlines()]


def float_with(tex: str, label: str) -> str:
    """The table float of ``tex`` that carries ``\\label{tab:LABEL}``."""
    return next(block for block in tex.split("\\begin{table")[1:] if f"\\label{{tab:{label}}}" in block)


def test_escape_turns_specials_and_the_leaderboard_unicode_into_latex():
    assert latex_escape("S&P 50% #1 $x a_b {c} ~^") == (
        r"S\&P 50\% \#1 \$x a\_b \{c\} \textasciitilde{}\textasciicircum{}")
    assert latex_escape("a\\b") == r"a\textbackslash{}b"  # the backslash's own braces are not escaped again
    assert latex_escape("SDR→HDR, PSNR↑, MAE↓, 3–5, 256²") == (
        r"SDR$\rightarrow$HDR, PSNR$\uparrow$, MAE$\downarrow$, 3--5, 256$^2$")


def test_column_ranks_are_dense_per_column_and_follow_each_direction():
    cells = {("a", "x"): 3.0, ("b", "x"): 3.0, ("c", "x"): 1.0, ("a", "y"): 0.2, ("b", "y"): 0.1,
             ("c", "y"): float("nan")}
    ranks = column_ranks(cells, ["a", "b", "c"], ["x", "y"], {"x": True, "y": False})
    assert ranks == {("a", "x"): 1, ("b", "x"): 1, ("c", "x"): 2, ("a", "y"): 2, ("b", "y"): 1}


def test_ranked_table_marks_best_bold_and_second_underlined_and_keeps_the_shape():
    cells = {("a", "x"): 30.0, ("b", "x"): 29.0, ("c", "x"): 28.0, ("a", "y"): 0.3, ("b", "y"): 0.1}
    tex = ranked_table(cells, ["a", "b", "c"], ["x", "y"], higher_is_better={"x": True, "y": False},
                       decimals={"x": 2, "y": 4}, caption="T: 50% of it", label="My Table", failed={("c", "y")})
    assert "\\begin{table}[t]" in tex and "\\resizebox" not in tex
    assert "\\caption{T: 50\\% of it}" in tex and "\\label{tab:my-table}" in tex
    assert "\\begin{tabular}{lcc}" in tex and "Method & x & y \\\\" in tex
    assert body_rows(tex) == [["a", "\\textbf{30.00}", "\\underline{0.3000}"],
                              ["b", "\\underline{29.00}", "\\textbf{0.1000}"],
                              ["c", "28.00", "\\textit{failed}"]]


def test_a_wide_table_is_a_full_width_float_scaled_to_the_text():
    columns = [f"t{i}" for i in range(9)]
    tex = ranked_table({("a", c): 1.0 for c in columns}, ["a", "b"], columns, higher_is_better=True, decimals=1,
                       caption="c", label="l")
    assert tex.startswith("\\begin{table*}[t]") and tex.endswith("\\end{table*}")
    assert "\\resizebox{\\textwidth}{!}{%" in tex
    assert body_rows(tex)[1] == ["b"] + ["--"] * 9  # not evaluated: '--'
    plain = plain_latex_table(["model", "n"], [["my_model", 3]], caption="c", label="l")
    assert body_rows(plain) == [["my\\_model", "3"]] and "\\begin{table}[t]" in plain


def test_to_latex_has_every_table_with_the_leaderboard_values(results):  # noqa: F811
    lb = build_leaderboards(results)
    tex = to_latex(lb)
    labels = re.findall(r"\\label\{tab:([^}]*)\}", tex)
    assert labels == ["llvbench-table-1-restoration", "llvbench-table-2-enhancement-and-stylization",
                      "llvbench-table-3-edge-detection", "llvbench-table-4", "llvbench-rank", "llvbench-efficiency"]
    assert len(re.findall(r"\\begin\{table\*?\}", tex)) == len(re.findall(r"\\end\{table\*?\}", tex)) == 6
    table1 = float_with(tex, "llvbench-table-1-restoration")
    rows = {r[0]: r[1:] for r in body_rows(table1)}
    # Models in overall-rank order; GN: alpha 31 (best), beta 21 (second), gamma failed.
    assert list(rows) == list(lb.overall["model"])
    assert rows["alpha"][0] == "\\textbf{31.00}" and rows["beta"][0] == "\\underline{21.00}"
    assert rows["gamma"][0] == "\\textit{failed}" and rows["beta"][1] == "--"
    assert "Mean over 1--2 queries per task" in table1  # GN 2, the rain tasks 1
    table3 = float_with(tex, "llvbench-table-3-edge-detection")
    edge = {r[0]: r[1] for r in body_rows(table3)}
    assert edge == {"beta": "\\textbf{0.1000}", "gamma": "\\underline{0.2000}", "alpha": "0.3000"}  # MAE: lower wins
    assert "MAE$\\downarrow$" in tex and "S\\&P" not in tex  # only the tasks present are columns
    table4 = {r[0]: r[1] for r in body_rows(float_with(tex, "llvbench-table-4"))}
    # std: lower wins, but beta's 0 everywhere means its output ignores the prompt: shown, not ranked
    assert table4 == {"alpha": "\\textbf{1.000}", "beta": "0.000"}
    assert "Not ranked: beta reads 0 on every task" in float_with(tex, "llvbench-table-4")
    assert body_rows(float_with(tex, "llvbench-efficiency")) == [["alpha", "2.000", "--", "12.50", "--", "cpu", "--"]]
    # The fixture's models were run on different tasks: that one warning, and no other.
    assert [line for line in tex.splitlines() if line.startswith("% WARNING")] == [
        "% WARNING: " + " ".join(lb.warnings[0].split())] and "evaluated on different tasks" in lb.warnings[0]
    unescaped = tex.replace("\\{", "").replace("\\}", "")
    assert unescaped.count("{") == unescaped.count("}") and tex.count("$") % 2 == 0  # balanced groups and maths


def test_to_latex_puts_warnings_on_top_as_comments():
    rows = [row(prov("a"), value=30.0, sample=f"s{i}") for i in range(2)] + [row(prov("b"), value=29.0)]
    lb = build_leaderboards(frame(rows))
    assert lb.warnings
    head = to_latex(lb).split("\\begin{table")[0]
    assert head.count("% WARNING: ") == len(lb.warnings) and "\n\n" not in head.strip()


def test_captions_give_the_span_of_queries_across_models_not_the_most():  # noqa: F811
    from bench.leaderboard import query_spans

    a, b = prov("alpha"), prov("beta")
    rows = [row(a, value=30.0 + i, sample=f"s{i}") for i in range(3)]
    rows += [row(b, value=20.0 + i, sample=f"s{i}") for i in range(8)]
    lb = build_leaderboards(frame(rows))
    assert "Mean over 3--8 queries per task" in float_with(to_latex(lb), "llvbench-table-1-restoration")
    assert query_spans(lb.model_task) == {"gaussian_noise": "3–8"}


def test_to_latex_has_the_other_tasks_tables():
    from test_leaderboard import other_tasks_results

    tex = to_latex(build_leaderboards(other_tasks_results()))
    labels = re.findall(r"\\label\{tab:([^}]*)\}", tex)
    assert labels[:3] == ["llvbench-table-1-restoration", "llvbench-other-tasks-headline-metric-mae",
                          "llvbench-other-tasks-headline-metric-psnr"]
    assert {r[0]: r[1] for r in body_rows(float_with(tex, "llvbench-other-tasks-headline-metric-mae"))} == {
        "beta": "\\underline{0.2000}", "alpha": "\\textbf{0.1000}"}
