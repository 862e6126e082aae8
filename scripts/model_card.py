"""A model's scores against a baseline, per task and per category, as Markdown for its model card.

    python scripts/model_card.py results/leaderboard genlv-s                  # against identity
    python scripts/model_card.py results/leaderboard genlv-s --baseline genlv-tiny
    python scripts/model_card.py results/leaderboard genlv-s --results results/eval   # + per-query columns

Reads ``model_task.parquet`` of a leaderboard folder (``llvbench eval --leaderboard`` or the DVC
eval stage) and prints, on each task's headline metric (PSNR; MAE for edges), both means, the
margin (positive = the model is better) and a per-category count of the tasks the model wins.
With ``--results`` (the eval folders the leaderboard was made from), each task also gets the
95 % interval of its mean margin from the paired per-query margins and a verdict (``better`` or
``worse`` when the interval excludes 0, else ``within noise``: the queries cannot tell), the median
of its per-query margins and its worst query: a mean lost to one query shows there. The summary
then counts the tasks each verdict applies to per category.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.leaderboard import VERDICTS, plain_table, query_margins, verdict_counts, versus_baseline


def card_tables(leaderboard: str | Path, model: str, baseline: str = "identity", results=None) -> str:
    """The Markdown: a summary line per category, then the per-task table (with per-query columns
    when ``results``, result folders, are given)."""
    import pandas as pd

    from bench.results import read_results

    path = Path(leaderboard) / "model_task.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no leaderboard here (run llvbench eval --leaderboard DIR)")
    table = versus_baseline(pd.read_parquet(path), model, baseline)
    summary = [[category, f"{int(group['beats'].sum())} / {len(group)}",
                f"{group['margin'].min():+.2f}", f"{group['margin'].mean():+.2f}"]
               for category, group in table.groupby("category", sort=False)]
    rows = [[r["task"], r["category"], r["metric"], f"{r[model]:.4g}", f"{r[baseline]:.4g}", f"{r['margin']:+.3g}",
             "yes" if r["beats"] else "no"] for r in table.to_dict("records")]
    headers = ["task", "category", "metric", model, baseline, "margin", "better"]
    summary_headers = ["category", f"tasks {model} wins over {baseline}", "worst margin", "mean margin"]
    if results:
        per_query = query_margins(read_results(results), model, baseline).set_index("task")
        headers += ["95% CI of the margin (paired)", "verdict", "median query margin", "worst query"]
        for row in rows:
            q = per_query.loc[row[0]] if row[0] in per_query.index else None
            row += ["" if q is None else _interval(q["mean"], q["ci95"]), "" if q is None else q["verdict"],
                    "" if q is None else f"{q['median']:+.3g}",
                    "" if q is None else f"{q['worst']:+.3g} ({q['worst_query'].rsplit('/', 1)[-1]})"]
        counts = verdict_counts(per_query.reset_index())
        summary_headers += [" / ".join(VERDICTS) + " (95% CI)"]
        for line in summary:
            line.append(" / ".join(str(counts.get(line[0], {}).get(v, 0)) for v in VERDICTS))
    return "\n\n".join([plain_table(summary_headers, summary), plain_table(headers, rows)])


def _interval(mean: float, half_width: float) -> str:
    """'[low, high]' of a margin's interval; '' without one."""
    return "" if half_width != half_width else f"[{mean - half_width:+.3g}, {mean + half_width:+.3g}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("leaderboard", help="leaderboard folder with model_task.parquet")
    parser.add_argument("model")
    parser.add_argument("--baseline", default="identity")
    parser.add_argument("--results", nargs="+", metavar="DIR",
                        help="the eval result folders behind the leaderboard: adds each task's median query margin "
                             "and worst query")
    args = parser.parse_args(argv)
    if args.model == args.baseline:
        parser.error(f"the model and --baseline are both {args.model!r}: compare it with another model")
    try:
        print(card_tables(args.leaderboard, args.model, args.baseline, args.results))
    except (FileNotFoundError, ValueError) as err:
        print(f"model_card: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
