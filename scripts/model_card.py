"""A model's scores against a baseline, per task and per category, as Markdown for its model card.

    python scripts/model_card.py results/leaderboard genlv-s                  # against identity
    python scripts/model_card.py results/leaderboard genlv-s --baseline genlv-tiny

Reads ``model_task.parquet`` of a leaderboard folder (``llvbench eval --leaderboard`` or the DVC
eval stage) and prints, on each task's headline metric (PSNR; MAE for edges), both means, the
margin (positive = the model is better) and a per-category count of the tasks the model wins.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.leaderboard import plain_table, versus_baseline


def card_tables(leaderboard: str | Path, model: str, baseline: str = "identity") -> str:
    """The Markdown: a summary line per category, then the per-task table."""
    import pandas as pd

    path = Path(leaderboard) / "model_task.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no leaderboard here (run llvbench eval --leaderboard DIR)")
    table = versus_baseline(pd.read_parquet(path), model, baseline)
    summary = [[category, f"{int(group['beats'].sum())} / {len(group)}",
                f"{group['margin'].min():+.2f}", f"{group['margin'].mean():+.2f}"]
               for category, group in table.groupby("category", sort=False)]
    rows = [[r["task"], r["category"], r["metric"], f"{r[model]:.4g}", f"{r[baseline]:.4g}", f"{r['margin']:+.3g}",
             "yes" if r["beats"] else "no"] for r in table.to_dict("records")]
    return "\n\n".join([
        plain_table(["category", f"tasks {model} wins over {baseline}", "worst margin", "mean margin"], summary),
        plain_table(["task", "category", "metric", model, baseline, "margin", "better"], rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("leaderboard", help="leaderboard folder with model_task.parquet")
    parser.add_argument("model")
    parser.add_argument("--baseline", default="identity")
    args = parser.parse_args(argv)
    try:
        print(card_tables(args.leaderboard, args.model, args.baseline))
    except (FileNotFoundError, ValueError) as err:
        print(f"model_card: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
