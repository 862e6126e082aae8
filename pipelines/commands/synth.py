"""`llvbench synth`: write the train/test/unseen WebDataset shards and their manifest.

    llvbench synth [--params params.yaml] [--out data/shards] [--tasks A,B] [--splits train,test]
                   [--n-train N] [--n-test N] [--size S] [--seed K] [--workers W]
                   [--scheduler tcp://host:8786] [--train-dir DIR] [--test-dir DIR]

Values given here override the ``synth`` section of the params file and its profile overlay.
Sizes, seeds and image source specs are checked before any work; every user image folder is
scanned once up front (each unusable file logged once, counts by reason in the summary).
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_PARAMS = "params.yaml"


def add_arguments(p) -> None:
    p.add_argument("--params", help=f"params file (default: {DEFAULT_PARAMS} if it exists, else built-in defaults); "
                                    "its `profile` key adds profiles/PROFILE.yaml over it (docs/profiles.md)")
    p.add_argument("--out", help="shards directory (default: synth.out, data/shards)")
    p.add_argument("--tasks", help="comma list of task names or categories, or 'all'")
    p.add_argument("--splits", help="comma list of splits (train,test,unseen)")
    p.add_argument("--n-train", type=int, help="train samples per task (overrides every task's count)")
    p.add_argument("--n-test", type=int, help="test samples per task")
    p.add_argument("--n-unseen", type=int, help="samples per held-out task in the unseen split")
    p.add_argument("--size", type=int, help="crop size of the stored images in pixels (>= 8)")
    p.add_argument("--seed", type=int, help="base seed of every sample's generator (>= 0)")
    p.add_argument("--workers", type=int, help="worker processes (default: one per core while each gets "
                                               "enough work; 1 = run in this process)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786); workers must "
                                       "see --out on a shared file system")
    p.add_argument("--train-dir", help="train images from this folder instead of dead leaves")
    p.add_argument("--test-dir", help="test (and unseen) images from this folder instead of the packaged photos")
    p.add_argument("--summary", help="per-task summary JSON (default: synth.summary, metrics/synth.json, which "
                                     "belongs to data/shards: when the out folder is elsewhere, by --out or by "
                                     "synth.out, none is written and the summary is only printed)")
    p.add_argument("--merge", action="store_true",
                   help="DVC's last synth stage: write OUT/manifest.json over the per-task roots OUT/tasks/TASK "
                        "of the tasks under synth.per_task")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from pipelines.synth import configure, format_summary, merge_task_roots, read_params, run_synth

    params_path = args.params or (DEFAULT_PARAMS if Path(DEFAULT_PARAMS).is_file() else None)
    params = read_params(params_path, required=args.params is not None)
    overrides = {"out": args.out, "tasks": args.tasks, "splits": args.splits, "n_train": args.n_train,
                 "n_test": args.n_test, "n_unseen": args.n_unseen, "size": args.size, "seed": args.seed,
                 "workers": args.workers, "scheduler": args.scheduler, "train_dir": args.train_dir,
                 "test_dir": args.test_dir, "summary": args.summary}
    if args.merge:  # the merge reads the per-task roots synth.per_task names; what makes shards does not apply
        ignored = [f"--{key.replace('_', '-')}" for key, value in overrides.items()
                   if value is not None and key not in ("out", "summary")]
        if ignored:
            raise ValueError(f"--merge combines the per-task roots of the tasks under synth.per_task; "
                             f"{', '.join(ignored)} would be ignored (only --params, --out and --summary apply)")
    config = configure(params, overrides)
    if args.merge:
        summary = merge_task_roots(config)
        print(f"merged {len(summary['tasks']) or 'the'} task manifests into {config.out / 'manifest.json'}")
        return 0
    summary = run_synth(config, progress=not args.no_progress)
    print(format_summary(summary))
    print(f"wrote {config.out / 'manifest.json'}" + (f" and {config.summary}" if config.summary else
                                                      " (no summary file: --summary FILE writes one)"))
    return 0
