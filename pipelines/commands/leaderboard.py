"""`llvbench leaderboard RESULTS... --out DIR`: aggregate eval results into leaderboards."""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("results", nargs="+", help="eval output folders or result .parquet files")
    p.add_argument("--out", required=True,
                   help="folder for the leaderboard tables, leaderboard.md, leaderboard.tex, metrics.json")
    p.add_argument("--quiet", action="store_true", help="do not print the Markdown tables")


def run(args) -> int:
    from bench.leaderboard import to_markdown, write_leaderboards
    from pipelines.commands import check_output_folder

    check_output_folder(args.out, "--out")
    lb = write_leaderboards(args.results, args.out)
    if not args.quiet:
        print(to_markdown(lb))
    print(f"wrote {len(lb.tables())} tables, leaderboard.md, leaderboard.tex and metrics.json to {args.out}"
          + (f" ({len(lb.warnings)} warning(s): see leaderboard.md)" if lb.warnings else ""))
    return 0
