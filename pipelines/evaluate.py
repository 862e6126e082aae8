"""DVC stage `eval`: the ``eval`` section of params.yaml -> results for every model -> leaderboards.

    python -m pipelines.evaluate [--params params.yaml]

Thin glue over ``bench``: each model listed is loaded by spec (a load failure is recorded and the
next model runs), every configured track is evaluated into ``out``, then ``leaderboard`` gets
the aggregates, leaderboard.md, leaderboard.tex and metrics.json. Units already evaluated with the same settings
are skipped, so re-running the stage after a crash only does what is missing.

Params mistakes (types, track, task and split names, model entries, specs, checkpoints) are one
line naming the params file and key, before any work. When a model fails to load, no earlier
result is pruned (its results stay in the leaderboard) and the stage exits 1 naming the model, so
``dvc repro`` stops there instead of recording a leaderboard without it.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path


from pipelines.commands import check_output_folder
from pipelines.params import did_you_mean, read_section, run_stage_main, setting_source

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


SPLIT_NAMES = ("test", "unseen")
# Types of the settings that have one; the others (names, lists of them) are checked by check_layer.
KINDS: dict = {"shards": str, "out": str, "leaderboard": str, "models": list, "limit": int | None,
               "batch_size": int, "robustness_prompts": int, "latency_repeats": int, "seed": int,
               "save_samples": int}
# The least value of each count (EvalConfig's rules, checked here to name the file and key).
LEAST = {"limit": 1, "batch_size": 1, "robustness_prompts": 2, "latency_repeats": 1, "seed": 0, "save_samples": 0}


def read_params(path: str | Path | None, *, required: bool = False) -> dict:
    """The ``eval`` section of a params file and its profile overlay over the defaults; a value of
    the wrong type, out of range, or naming an unknown track, task, split or model key is a
    ValueError naming the file (params or overlay) and key."""
    return read_section(path, "eval", DEFAULTS, required=required, kinds=KINDS, check=check_layer)


def _names(value, where: str) -> list[str]:
    """A comma string or a list of strings -> the names (ValueError naming ``where`` otherwise)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise ValueError(f"{where} must be a comma string or a list of names, got {value!r}")


def _known_names(value, where: str, known, what: str, also: str = "") -> list[str]:
    """``_names`` of ``value``, each one of ``known`` (ValueError naming ``where`` and a did-you-mean)."""
    names = _names(value, where)
    if not names:
        raise ValueError(f"{where} names no {what}; known: {', '.join(known)}{also}")
    for name in names:
        if name not in known:
            raise ValueError(f"{where}: unknown {what} {name!r}{did_you_mean(name, known)}")
    return names


def _check_task(name: str, where: str, allow: tuple[str, ...] = ()) -> None:
    """A task name or category (or one of ``allow``); ValueError naming ``where`` otherwise."""
    from pipelines.commands.eval import check_task_name
    from taskgen.registry import CATEGORIES

    check_task_name(name, where, allow=(*CATEGORIES, *allow))


def check_layer(source: Path, values: dict) -> dict:
    """One layer (params file or overlay) of the eval section, checked: counts in range, and the
    names of tracks, tasks, splits, mismatch pairs and model entries known; comma strings of splits
    and mismatch pairs become lists. Errors name ``source`` and the key."""
    from bench.tracks import CLEAN, TRACKS

    values = dict(values)

    def where(key: str) -> str:
        return f"{source}: eval.{key}"

    for key, least in LEAST.items():
        if values.get(key) is not None and values[key] < least:
            raise ValueError(f"{where(key)} must be >= {least}" + (" or null (every query)" if key == "limit" else "")
                             + f", got {values[key]}")
    if "tracks" in values and values["tracks"] != "all":
        _known_names(values["tracks"], where("tracks"), TRACKS, "track", also=", or all")
    if values.get("tasks") not in (None, "all"):
        names = _names(values["tasks"], where("tasks"))
        if not names:
            raise ValueError(f"{where('tasks')} names no task; give task names or categories, or all")
        for name in names:
            _check_task(name, where("tasks"))
    if "splits" in values:
        values["splits"] = _known_names(values["splits"], where("splits"), SPLIT_NAMES, "split")
    if values.get("mismatch_pairs") not in (None, "default"):
        values["mismatch_pairs"] = pairs = _names(values["mismatch_pairs"], where("mismatch_pairs"))
        for item in pairs:
            prompt_task, sep, query_task = (part.strip() for part in item.partition(":"))
            if not sep or not prompt_task or not query_task:
                raise ValueError(f"{where('mismatch_pairs')}: item {item!r} is not PROMPT_TASK:QUERY_TASK")
            _check_task(prompt_task, f"{where('mismatch_pairs')} item {item!r}")
            _check_task(query_task, f"{where('mismatch_pairs')} item {item!r}", allow=(CLEAN,))
    if "models" in values:
        if not values["models"]:
            raise ValueError(f"{where('models')} lists no model; the stage would prune every earlier result")
        for entry in values["models"]:
            model_entry(entry, where("models"))
    return values


def eval_config(params: dict):
    from bench.evaluate import EvalConfig
    from pipelines.commands.eval import parse_mismatch, parse_tracks

    tasks = params["tasks"]
    tasks = None if tasks in (None, "all") else tuple(_names(tasks, "eval.tasks"))
    pairs = params["mismatch_pairs"]
    pairs = parse_mismatch(None if pairs in (None, "default") else ",".join(pairs))
    tracks = params["tracks"]
    tracks = parse_tracks(tracks) if isinstance(tracks, str) else tuple(tracks)
    return EvalConfig(tracks=tracks, tasks=tasks, limit=params["limit"],
                      batch_size=int(params["batch_size"]), robustness_prompts=int(params["robustness_prompts"]),
                      mismatch_pairs=pairs, latency_repeats=int(params["latency_repeats"]), seed=int(params["seed"]),
                      save_samples=int(params["save_samples"]))


class StageOutcomes(list):
    """The outcomes of every unit (UnitOutcome), the models that failed to load (labels such as
    ``checkpoint (checkpoints/genlv-s)``), whose earlier results were kept, and the params file."""

    def __init__(self, outcomes=(), load_failures=(), params_file: str | Path | None = None):
        super().__init__(outcomes)
        self.load_failures = list(load_failures)
        self.params_file = params_file


def model_label(entry: dict) -> str:
    """``spec`` or ``spec (checkpoint)``: how logs and errors name one ``eval.models`` entry."""
    return f"{entry['spec']} ({entry['checkpoint']})" if entry.get("checkpoint") else str(entry["spec"])


def model_options(entry: dict) -> dict:
    """The load options of one ``eval.models`` entry: its ``options`` plus its ``checkpoint``."""
    options = dict(entry.get("options") or {})
    if entry.get("checkpoint"):
        options["checkpoint"] = entry["checkpoint"]
    return options


def run_stage(params: dict, params_file: str | Path | None = None) -> StageOutcomes:
    """Evaluate every model of ``params`` (read_params), prune stale units unless a model failed to
    load, and write the leaderboards. ``params_file`` names the file in the errors found here (a
    spec or checkpoint that names nothing, tasks the test split lacks), all before any work."""
    from bench.evaluate import check_distinct_models, evaluate_spec, select_tasks
    from bench.leaderboard import write_leaderboards
    from taskgen.testset import TestSplit

    def where(key: str) -> str:
        source = setting_source(params_file, "eval", key) if params_file is not None else None
        return f"{source}: eval.{key}" if source is not None else f"eval.{key}"

    for key in ("out", "leaderboard"):  # before any model runs, not after them all
        check_output_folder(params[key], where(key))
    config = eval_config(params)
    entries = [model_entry(entry, where("models")) for entry in params["models"]]  # every typo before any work
    for entry in entries:
        check_model(entry, where("models"))
    check_distinct_models([(entry["spec"], model_options(entry)) for entry in entries],
                          lambda spec, options: f"{where('models')}: {spec}"
                          + (f" ({options['checkpoint']})" if "checkpoint" in options else ""))
    if "test" in params["splits"] and config.tasks is not None:
        test_split = TestSplit(params["shards"], split="test")
        if test_split.tasks:  # tasks the test split does not have: refused before any model loads
            try:
                select_tasks(test_split, config.tasks)
            except ValueError as err:
                # the CLI's hint (--split unseen) does not apply: the stage scores the unseen split itself
                raise ValueError(f"{where('tasks')}: " + str(err).replace(
                    ": --split unseen", " (the stage scores every held-out task there, main track)")) from None
    outcomes, load_failures = [], []
    for split_name in params["splits"]:
        split = TestSplit(params["shards"], split=split_name)
        if split_name != "test":
            if not split.tasks:
                log.info("split %s has no tasks in %s; skipped", split_name, params["shards"])
                continue
            # Held-out tasks: does the prompt alone carry the model to a new mapping? (main track)
            config = dataclasses.replace(eval_config(params), tracks=("main",), tasks=None)
        for entry in entries:
            options = model_options(entry)
            model_config = config
            if entry.get("tracks") is not None:
                model_config = dataclasses.replace(config, tracks=tuple(t for t in config.tracks if t in entry["tracks"]))
                if not model_config.tracks:
                    continue
            result = evaluate_spec(entry["spec"], options, split, params["out"], model_config)
            if any(o.track == "load" for o in result) and model_label(entry) not in load_failures:
                load_failures.append(model_label(entry))
            outcomes += result
    if load_failures:
        # A model that did not load produced no units this run; pruning would delete its earlier
        # results and drop it from the leaderboard without a word.
        log.warning("kept the earlier results in %s (nothing pruned) because %s failed to load",
                    params["out"], ", ".join(load_failures))
    else:
        removed = prune_stale_units(params["out"], [o.path for o in outcomes if o.path])
        if removed:
            log.info("removed %d result files that the current params no longer produce "
                     "(other models, data or settings)", removed)
    write_leaderboards([params["out"]], params["leaderboard"])
    return StageOutcomes(outcomes, load_failures, params_file)


MODEL_KEYS = ("spec", "checkpoint", "options", "tracks")


def model_entry(entry, where: str = "eval.models") -> dict:
    """One ``eval.models`` item as a dict; a typo in its keys or tracks, or a value of the wrong type,
    is a ValueError naming ``where`` (``FILE: eval.models``) and the entry."""
    from bench.evaluate import TRACK_NAMES

    if not isinstance(entry, (str, dict)):
        raise ValueError(f"{where} entry {entry!r}: must be a spec or a mapping {{spec, checkpoint?, options?, "
                         f"tracks?}}")
    entry = {"spec": entry} if isinstance(entry, str) else dict(entry)
    unknown = sorted(map(str, set(entry) - set(MODEL_KEYS)))
    if unknown:
        hint = did_you_mean(unknown[0], MODEL_KEYS).replace("; known:", "; allowed:")
        raise ValueError(f"{where} entry {entry}: unknown key(s) {', '.join(unknown)}{hint}")
    if not isinstance(entry.get("spec"), str) or not entry["spec"].strip():
        raise ValueError(f"{where} entry {entry}: needs `spec`, a model name, module:attr or checkpoint path; "
                         f"allowed keys: {', '.join(MODEL_KEYS)}")
    name = f"{where} entry {entry['spec']}"
    if entry.get("checkpoint") is not None and not isinstance(entry["checkpoint"], str):
        raise ValueError(f"{name}: checkpoint must be a path, got {entry['checkpoint']!r}")
    if entry.get("options") is not None and not isinstance(entry["options"], dict):
        raise ValueError(f"{name}: options must be a mapping, got {entry['options']!r}")
    tracks = entry.get("tracks")
    if tracks is not None:
        parsed = tuple(TRACK_NAMES) if tracks == "all" else tuple(_names(tracks, f"{name}: tracks"))
        if not parsed:
            raise ValueError(f"{name}: tracks {tracks!r} names no track; known tracks: {', '.join(TRACK_NAMES)}")
        for track in parsed:
            if track not in TRACK_NAMES:
                raise ValueError(f"{name}: tracks {tracks!r}: unknown track {track!r}"
                                 f"{did_you_mean(track, TRACK_NAMES)}")
        entry["tracks"] = parsed
    return entry


def check_model(entry: dict, where: str = "eval.models") -> None:
    """The spec names something to load and its checkpoint exists (``bench.registry.check_spec``);
    builds nothing. The error, of check_spec's class, names ``where`` and the model."""
    from bench.protocol import GeneralistError
    from bench.registry import check_spec

    try:
        check_spec(entry["spec"], {"checkpoint": entry["checkpoint"]} if entry.get("checkpoint") else {})
    except GeneralistError as err:
        raise type(err)(f"{where} entry {model_label(entry)}: {err}") from None


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


DEFAULT_PARAMS = "params.yaml"


def main(argv: list[str] | None = None) -> int:
    from pipelines.commands.eval import print_summary

    outcomes, status = run_stage_main("eval", __doc__.splitlines()[0], DEFAULT_PARAMS, read_params, run_stage, argv)
    if status:
        return status
    failed = print_summary(outcomes)
    if failed:
        # DVC records the stage as done whatever failed, so its next repro would not try them again.
        print(f"llvbench eval stage: {failed} unit(s) failed (above; the leaderboard's Failures table lists them). "
              "`dvc repro --force eval` tries them again and keeps every finished unit.", file=sys.stderr)
    if outcomes.load_failures:
        params_file = outcomes.params_file or DEFAULT_PARAMS
        print(f"llvbench eval stage: error: {setting_source(params_file, 'eval', 'models') or params_file}: "
              f"eval.models: {', '.join(outcomes.load_failures)} failed to load (above); its earlier results "
              f"were kept, not pruned, and the leaderboards written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
