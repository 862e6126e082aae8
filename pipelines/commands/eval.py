"""`llvbench eval --model SPEC [--checkpoint PATH] [--shards DIR] [--tasks A,B] [--tracks ...] --out DIR`."""
from __future__ import annotations

import sys

from pipelines.commands import check_output_folder


def add_arguments(p) -> None:
    from bench.tracks import TRACKS

    p.add_argument("--model", action="append", required=True, metavar="SPEC",
                   help="built-in name (identity, prompt-target, checkpoint), entry point of the group "
                        "'llvbench.generalists', 'package.module:attr', or a checkpoint path; repeat for several")
    p.add_argument("--checkpoint", help="checkpoint folder or file for the model (passed as checkpoint=PATH to "
                                        "every --model: score models that need other options in separate runs "
                                        "into the same --out)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="option passed to every --model's factory (JSON values: 1, 0.5, true, \"text\")")
    p.add_argument("--device", help="shortcut for --option device=DEVICE (cpu, cuda, auto)")
    p.add_argument("--shards", default="data/shards", help="test split location (default: data/shards)")
    p.add_argument("--split", default="test", choices=["test", "unseen"],
                   help="test: the training tasks' test split; unseen: the held-out tasks (dvc repro scores "
                        "them on the main track only)")
    p.add_argument("--tasks", default="all", help="comma list of tasks or categories (default: all in the split); "
                                                  "also narrows the default mismatch pairs to these tasks")
    p.add_argument("--tracks", default="main", help="comma list of tracks, or 'all' (default: main): " + "; ".join(
        f"{t.name}: {t.description}" for t in TRACKS.values()))
    p.add_argument("--limit", type=int, help="query images per task (default: all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--robustness-prompts", type=int, default=20,
                   help="K prompts per task (paper Table 4: 20), capped per task by the test pairs of the "
                        "photos that give no query (Table 4's heading says the range used)")
    p.add_argument("--mismatch", help="comma list of PROMPT_TASK:QUERY_TASK (QUERY_TASK may be 'clean'); "
                                      "default: the paper's examples")
    p.add_argument("--latency-repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-samples", type=int, default=2, metavar="N",
                   help="save the outputs of the first N queries of each main/mismatch unit, with their inputs, "
                        "under OUT/samples for llvbench report (default 2; 0: none)")
    p.add_argument("--leaderboard", metavar="DIR", help="also aggregate --out into leaderboards in DIR")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any unit failed")
    p.add_argument("--force", action="store_true",
                   help="evaluate every unit again, even those whose results are already there with the same "
                        "model, checkpoint, options, data and settings (after changing a plug-in's code); also "
                        "replaces results another implementation made under the same model name")
    p.add_argument("--out", required=True, help="results folder (one sub-folder per model)")


def parse_tracks(text: str) -> tuple[str, ...]:
    from bench.evaluate import TRACK_NAMES

    if text == "all":
        return TRACK_NAMES
    tracks = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tracks:
        raise ValueError(f"--tracks {text!r} names no track; give a comma list of {', '.join(TRACK_NAMES)}, or 'all'")
    return tracks


def check_task_name(name: str, option: str, allow: tuple[str, ...] = ()) -> None:
    """ValueError naming ``option`` unless ``name`` is a registered task (or one of ``allow``)."""
    import taskgen

    from pipelines.params import did_you_mean

    known = [*taskgen.task_names(), *allow]
    if name not in known:
        raise ValueError(f"{option}: unknown task {name!r}{did_you_mean(name, known)}")


def parse_mismatch(text: str | None):
    from bench.tracks import CLEAN, DEFAULT_MISMATCH_PAIRS

    if not text:
        return DEFAULT_MISMATCH_PAIRS
    pairs = []
    for item in text.split(","):
        prompt_task, sep, query_task = (part.strip() for part in item.strip().partition(":"))
        if not sep or not prompt_task or not query_task:
            raise ValueError(f"--mismatch item {item!r} is not PROMPT_TASK:QUERY_TASK")
        check_task_name(prompt_task, f"--mismatch {item.strip()}")
        check_task_name(query_task, f"--mismatch {item.strip()}", allow=(CLEAN,))
        pairs.append((prompt_task, query_task))
    return tuple(pairs)


def parse_tasks(text: str | None) -> tuple[str, ...] | None:
    """--tasks: None for 'all' (every task of the split), else the names; an empty list is an error."""
    if text is None or text.strip() == "all":
        return None
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tasks:
        raise ValueError(f"--tasks {text!r} names no task; give a comma list of tasks or categories, or 'all'")
    return tasks


def build_config(args):
    from bench.evaluate import EvalConfig

    tasks = parse_tasks(args.tasks)
    return EvalConfig(tracks=parse_tracks(args.tracks), tasks=tasks, limit=args.limit, batch_size=args.batch_size,
                      robustness_prompts=args.robustness_prompts, mismatch_pairs=parse_mismatch(args.mismatch),
                      latency_repeats=args.latency_repeats, seed=args.seed, save_samples=args.save_samples)


def model_options(args) -> dict:
    """--option/--checkpoint/--device -> the generalists' options; --device auto is resolved here,
    so a plug-in receives a torch device name."""
    from bench.adapters import resolve_device
    from bench.registry import parse_options

    options = parse_options(args.option)
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    if args.device:
        options["device"] = args.device
    if "device" in options:
        options["device"] = resolve_device(str(options["device"]))
    return options


def print_summary(outcomes) -> int:
    """One line per model with unit counts, then every failure; returns the number of failures."""
    from collections import Counter

    by_model: dict = {}
    for o in outcomes:
        by_model.setdefault(o.model, Counter())[o.status] += 1
    for model, counts in by_model.items():
        print(f"{model}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    failures = [o for o in outcomes if o.status == "failed"]
    for o in failures:
        print(f"  FAILED {o.model} {o.track}/{o.unit}: {o.error}", file=sys.stderr)
    return len(failures)


def run(args) -> int:
    from bench.evaluate import check_distinct_models, evaluate_spec, select_tasks
    from bench.registry import check_spec
    from taskgen.testset import TestSplit

    config = build_config(args)
    check_output_folder(args.out, "--out")
    if args.leaderboard:
        check_output_folder(args.leaderboard, "--leaderboard")
    split = TestSplit(args.shards, split=args.split)
    select_tasks(split, config.tasks)  # an empty or wrong selection fails here, before any model loads
    options = model_options(args)
    for spec in args.model:  # a spec that names nothing is a usage error, reported before any work
        check_spec(spec, options)
    check_distinct_models((spec, options) for spec in args.model)  # two specs, one results folder: refused
    outcomes = []
    for spec in args.model:
        outcomes += evaluate_spec(spec, options, split, args.out, config, force=args.force)
    failures = print_summary(outcomes)
    print(f"results in {args.out}")
    if args.leaderboard:
        from bench.leaderboard import write_leaderboards

        write_leaderboards([args.out], args.leaderboard)
        print(f"leaderboards in {args.leaderboard}")
    return 1 if args.strict and failures else 0
