"""A model's scores against a baseline, per task and per category, as Markdown for its model card.

    python scripts/model_card.py results/leaderboard genlv-s                  # against identity
    python scripts/model_card.py results/leaderboard genlv-s --baseline genlv-tiny
    python scripts/model_card.py results/leaderboard genlv-s --results results/eval   # + per-query columns

Reads ``model_task.parquet`` of a leaderboard folder (``llvbench eval --leaderboard`` or the DVC
eval stage) and prints, on each task's headline metric (PSNR; MAE for edges), both means, the
margin (positive = the model is better) and a per-category count of the tasks the model wins.
With ``--results`` (the eval folders the leaderboard was made from), each task also gets the
median of its per-query margins and its worst query: a mean lost to one query shows there.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.leaderboard import plain_table, query_margins, versus_baseline


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
    if results:
        per_query = query_margins(read_results(results), model, baseline).set_index("task")
        headers += ["median query margin", "worst query"]
        for row in rows:
            q = per_query.loc[row[0]] if row[0] in per_query.index else None
            row += ["" if q is None else f"{q['median']:+.3g}",
                    "" if q is None else f"{q['worst']:+.3g} ({q['worst_query'].rsplit('/', 1)[-1]})"]
    return "\n\n".join([
        plain_table(["category", f"tasks {model} wins over {baseline}", "worst margin", "mean margin"], summary),
        plain_table(headers, rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("leaderboard", help="leaderboard folder with model_task.parquet")
    parser.add_argument("model")
    parser.add_argument("--baseline", default="identity")
    parser.add_argument("--results", nargs="+", metavar="DIR",
                        help="the eval result folders behind the leaderboard: adds each task's median query margin "
                             "and worst query")
    args = parser.parse_args(argv)
    try:
        print(card_tables(args.leaderboard, args.model, args.baseline, args.results))
    except (FileNotFoundError, ValueError) as err:
        print(f"model_card: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
