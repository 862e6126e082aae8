"""DVC stage `report`: the ``report`` section of params.yaml -> report/index.html + README.md.

    python -m pipelines.report [--params params.yaml]

Thin glue over ``bench.report``. Training log locations that do not exist (no model trained yet)
are skipped, so the stage runs on a CPU profile that only evaluated the baselines.
"""
from __future__ import annotations

import sys
from pathlib import Path


from pipelines.commands import check_output_folder
from pipelines.params import read_section, run_stage_main, setting_source

DEFAULTS: dict = {
    "results": ["results/eval"],   # eval output folders (llvbench eval --out)
    "out": "report",
    "train_logs": ["runs"],        # run folders with metrics.csv, or folders of them; missing: skipped
    "samples_per_task": 2,         # example rows per task / mismatch pair (at most what eval saved)
    "formats": ["png", "svg"],
    "title": "llvbench report",
    "shards": [],                  # shards roots the results scored: the report names what made them
}
KINDS: dict = {"out": str, "samples_per_task": int, "title": str}
PATH_LISTS = ("results", "train_logs", "formats", "shards")  # a single string is a one-item list


def read_params(path: str | Path | None, *, required: bool = False) -> dict:
    """The ``report`` section of a params file and its profile overlay over the defaults; a value of
    the wrong type or an unknown figure format is a ValueError naming the file (params or overlay)
    and key."""
    return read_section(path, "report", DEFAULTS, required=required, kinds=KINDS, check=check_layer)


def check_layer(source: Path, values: dict) -> dict:
    """One layer of the report section, checked (errors name ``source`` and the key); single
    strings of the list settings become one-item lists."""
    from bench.figures import check_formats

    values = dict(values)
    for key in PATH_LISTS:
        if key not in values or (key in ("train_logs", "shards") and values[key] is None):
            continue
        value = [values[key]] if isinstance(values[key], str) else values[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{source}: report.{key} must be a list of strings (or one string), got {values[key]!r}")
        values[key] = value
    if values.get("samples_per_task") is not None and values["samples_per_task"] < 0:
        raise ValueError(f"{source}: report.samples_per_task must be >= 0, got {values['samples_per_task']}")
    if "formats" in values:
        check_formats(values["formats"], f"{source}: report.formats")
    return values


def run_stage(params: dict, params_file: str | Path | None = None):
    from bench.figures import check_formats
    from bench.report import ReportConfig, build_report

    source = setting_source(params_file, "report", "formats") if params_file is not None else None
    option = f"{source}: report.formats" if source is not None else "report.formats"
    check_output_folder(params["out"], "report.out")
    config = ReportConfig(title=str(params["title"]), samples_per_task=int(params["samples_per_task"]),
                          formats=check_formats(params["formats"], option), shards=tuple(params["shards"] or ()))
    return build_report(params["results"], params["out"], params["train_logs"] or (), config)


DEFAULT_PARAMS = "params.yaml"


def main(argv: list[str] | None = None) -> int:
    report, status = run_stage_main("report", __doc__.splitlines()[0], DEFAULT_PARAMS, read_params, run_stage, argv)
    if status:
        return status
    print(f"report: {report.html} and {report.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
