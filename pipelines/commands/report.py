"""`llvbench report --results DIR --out DIR [--train-logs PATH...] [--shards DIR]`: the HTML + Markdown report."""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("--results", action="append", required=True, metavar="DIR",
                   help="eval output folder (llvbench eval --out); repeat to combine several")
    p.add_argument("--out", required=True, help="report folder: index.html, README.md, figures/, samples/, data/")
    p.add_argument("--train-logs", nargs="+", action="extend", default=[], metavar="PATH",
                   help="training runs for the loss curves: a run folder with metrics.csv (llvbench train --out), "
                        "a folder of run folders, or a CSV file")
    p.add_argument("--samples-per-task", type=int, default=2,
                   help="example rows per task and mismatch pair (at most what eval saved; default 2)")
    p.add_argument("--formats", default="png,svg",
                   help="figure formats, comma list (default: png,svg); PNG is always written for the page, "
                        "other formats are linked beside each chart")
    p.add_argument("--title", default="llvbench report")
    p.add_argument("--shards", action="append", default=[], metavar="DIR",
                   help="shards root whose manifest the results scored (e.g. data/shards): the report names the "
                        "library versions and CPU kernels that made its shards; repeatable")


def run(args) -> int:
    from bench.figures import check_formats
    from bench.report import ReportConfig, build_report
    from pipelines.commands import check_output_folder

    formats = check_formats(args.formats.split(","), "--formats")  # before any file is written
    check_output_folder(args.out, "--out")
    if args.samples_per_task < 0:
        raise ValueError("--samples-per-task must be 0 or more")
    report = build_report(args.results, args.out, args.train_logs,
                          ReportConfig(title=args.title, samples_per_task=args.samples_per_task, formats=formats,
                                       shards=tuple(args.shards)))
    print(f"report: {report.html} and {report.markdown} ({len(report.figures)} figure files, "
          f"{len(report.images)} example images)")
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable example file(s) (logged above)", file=sys.stderr)
    return 0
