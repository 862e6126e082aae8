"""DVC stage `report`: the ``report`` section of params.yaml -> report/index.html + README.md.

    python -m pipelines.report [--params params.yaml]

Thin glue over ``bench.report``. Training log locations that do not exist (no model trained yet)
are skipped, so the stage runs on a CPU profile that only evaluated the baselines.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


from pipelines.params import read_section

DEFAULTS: dict = {
    "results": ["results/eval"],   # eval output folders (llvbench eval --out)
    "out": "report",
    "train_logs": ["runs"],        # run folders with metrics.csv, or folders of them; missing: skipped
    "samples_per_task": 2,         # example rows per task / mismatch pair (at most what eval saved)
    "formats": ["png", "svg"],
    "title": "llvbench report",
}


def read_params(path: str | Path | None) -> dict:
    """The ``report`` section of a params file and its profile overlay over the defaults."""
    params = read_section(path, "report", DEFAULTS)
    for key in ("results", "train_logs", "formats"):  # a single string is a one-item list
        if isinstance(params[key], str):
            params[key] = [params[key]]
    return params


def run_stage(params: dict):
    from bench.figures import check_formats
    from bench.report import ReportConfig, build_report

    config = ReportConfig(title=str(params["title"]), samples_per_task=int(params["samples_per_task"]),
                          formats=check_formats(params["formats"], "report.formats (params.yaml)"))
    return build_report(params["results"], params["out"], params["train_logs"] or (), config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = run_stage(read_params(args.params))
    print(f"report: {report.html} and {report.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
