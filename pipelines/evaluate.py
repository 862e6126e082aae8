"""DVC stage `eval`: the ``eval`` section of params.yaml -> results for every model -> leaderboards.

    python -m pipelines.evaluate [--params params.yaml]

Thin glue over ``bench``: each model listed is loaded by spec (a load failure is recorded and the
next model runs), every configured track is evaluated into ``out``, then ``leaderboard`` gets
the aggregates, leaderboard.md, leaderboard.tex and metrics.json. Units already evaluated with the same settings
are skipped, so re-running the stage after a crash only does what is missing.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path


from pipelines.params import read_section

log = logging.getLogger(__name__)

DEFAULTS: dict = {
    "shards": "data/shards",
    "out": "results/eval",
    "leaderboard": "results/leaderboard",
    # [{spec: NAME, checkpoint: PATH?, options: {...}?, tracks: [...]?}, ...]; a model's own
    # `tracks` narrows the tracks below for that model (e.g. main and efficiency only for a slow one)
    "models": [{"spec": "identity"}, {"spec": "prompt-target"}],
    "tasks": "all",
    "tracks": ["main", "robustness", "mismatch", "efficiency"],
    "limit": None,
    "batch_size": 8,
    "robustness_prompts": 20,
    "mismatch_pairs": "default",   # or ["PROMPT_TASK:QUERY_TASK", ...]
    "latency_repeats": 10,
    "seed": 0,
    "save_samples": 2,             # outputs kept per main/mismatch unit for the report's figures
    "splits": ["test", "unseen"],  # unseen: the held-out tasks, main track only (skipped if not synthesised)
}


def read_params(path: str | Path | None) -> dict:
    """The ``eval`` section of a params file and its profile overlay over the defaults."""
    return read_section(path, "eval", DEFAULTS)


def eval_config(params: dict):
    from bench.evaluate import EvalConfig
    from pipelines.commands.eval import parse_mismatch, parse_tracks

    tasks = params["tasks"]
    tasks = None if tasks in (None, "all") else tuple(tasks.split(",") if isinstance(tasks, str) else tasks)
    pairs = params["mismatch_pairs"]
    pairs = parse_mismatch(None if pairs in (None, "default") else ",".join(pairs))
    tracks = params["tracks"]
    tracks = parse_tracks(tracks) if isinstance(tracks, str) else tuple(tracks)
    return EvalConfig(tracks=tracks, tasks=tasks, limit=params["limit"],
                      batch_size=int(params["batch_size"]), robustness_prompts=int(params["robustness_prompts"]),
                      mismatch_pairs=pairs, latency_repeats=int(params["latency_repeats"]), seed=int(params["seed"]),
                      save_samples=int(params["save_samples"]))


def run_stage(params: dict) -> list:
    from bench.evaluate import evaluate_spec
    from bench.leaderboard import write_leaderboards
    from taskgen.testset import TestSplit

    config = eval_config(params)
    entries = [model_entry(entry) for entry in params["models"]]  # every typo reported before any work
    outcomes = []
    for split_name in params["splits"]:
        split = TestSplit(params["shards"], split=split_name)
        if split_name != "test":
            if not split.tasks:
                log.info("split %s has no tasks in %s; skipped", split_name, params["shards"])
                continue
            # Held-out tasks: does the prompt alone carry the model to a new mapping? (main track)
            config = dataclasses.replace(eval_config(params), tracks=("main",), tasks=None)
        for entry in entries:
            options = dict(entry.get("options") or {})
            if entry.get("checkpoint"):
                options["checkpoint"] = entry["checkpoint"]
            model_config = config
            if entry.get("tracks") is not None:
                model_config = dataclasses.replace(config, tracks=tuple(t for t in config.tracks if t in entry["tracks"]))
                if not model_config.tracks:
                    continue
            outcomes += evaluate_spec(entry["spec"], options, split, params["out"], model_config)
    removed = prune_stale_units(params["out"], [o.path for o in outcomes if o.path])
    if removed:
        log.info("removed %d result files that the current params no longer produce "
                 "(other models, data or settings)", removed)
    write_leaderboards([params["out"]], params["leaderboard"])
    return outcomes


MODEL_KEYS = ("spec", "checkpoint", "options", "tracks")


def model_entry(entry) -> dict:
    """One ``eval.models`` item as a dict; a typo in its keys or tracks is a ValueError naming the model."""
    from bench.evaluate import TRACK_NAMES
    from bench.registry import check_spec
    from pipelines.commands.eval import parse_tracks

    entry = {"spec": entry} if isinstance(entry, str) else dict(entry)
    unknown = sorted(set(entry) - set(MODEL_KEYS))
    if unknown or "spec" not in entry:
        raise ValueError(f"eval.models entry {entry}: needs `spec`; allowed keys {list(MODEL_KEYS)}, "
                         f"unknown {unknown}")
    tracks = entry.get("tracks")
    if tracks is not None:
        parsed = parse_tracks(tracks if isinstance(tracks, str) else ",".join(tracks))
        if not parsed or set(parsed) - set(TRACK_NAMES):
            raise ValueError(f"eval.models entry {entry['spec']}: tracks {tracks!r}; known tracks "
                             f"{list(TRACK_NAMES)}")
        entry["tracks"] = parsed
    check_spec(entry["spec"], {"checkpoint": entry["checkpoint"]} if entry.get("checkpoint") else {})
    return entry


def prune_stale_units(out: str | Path, kept: list[str]) -> int:
    """Delete the result files under ``out`` that this run neither wrote nor kept; returns how many.

    ``out`` persists between runs so that a killed stage resumes, but a model dropped from
    ``eval.models`` or units of another profile's data would otherwise stay in the leaderboard and
    the report. Folders of models that no longer have results go too (their run.json, samples).
    """
    import shutil

    out = Path(out)
    keep = {Path(p).resolve() for p in kept}
    removed = 0
    for path in sorted(out.glob("*/**/*.parquet")):
        if path.resolve() not in keep and not path.relative_to(out).parts[0] == "samples":
            path.unlink()
            removed += 1
    live = {Path(p).resolve().relative_to(out.resolve()).parts[0] for p in keep}
    for folder in sorted(out.iterdir()) if out.is_dir() else []:
        if folder.is_dir() and folder.name not in live and folder.name != "samples":
            shutil.rmtree(folder)
    samples = out / "samples"
    for folder in sorted(samples.iterdir()) if samples.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith("_") and folder.name not in live:
            shutil.rmtree(folder)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pipelines.commands.eval import print_summary

    print_summary(run_stage(read_params(args.params)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
