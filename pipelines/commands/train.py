"""`llvbench train`: train a model on the train shards (single process, or one per GPU via torchrun).

    llvbench train --arch NAME [--shards DIR] [--steps N] [--batch B] [--size S] [--out DIR] [--resume]
    torchrun --nproc-per-node 8 -m pipelines.cli train --arch genlv-base ...

Values given here override the ``train`` section of the params file and its profile overlay.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_PARAMS = "params.yaml"


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_arguments(p) -> None:
    p.add_argument("--params", help=f"params file (default: {DEFAULT_PARAMS} if it exists, else built-in defaults); "
                                    "its `profile` key adds profiles/PROFILE.yaml over it (docs/profiles.md)")
    p.add_argument("--arch", help="architecture name (model.build), e.g. genlv-tiny, genlv-s, genlv-base")
    p.add_argument("--override", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="architecture config override, repeatable (e.g. --override dim=16)")
    p.add_argument("--shards", help="shards directory with manifest.json (default: train.shards, data/shards)")
    p.add_argument("--out", help="checkpoint folder (default: train.out)")
    p.add_argument("--steps", type=int, help="optimizer steps of the whole schedule")
    p.add_argument("--batch", type=int, help="global batch size (split evenly over torchrun ranks)")
    p.add_argument("--size", type=int, help="crop size of prompt and query images (multiple of 32 for GenLV)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                   help="continue the run in --out (same data order and loss curve)")
    p.add_argument("--stop-at", type=int, help="stop after this step (the schedule still spans --steps); "
                                               "continue later with --resume")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget of this process: stop with a checkpoint "
                                                     "when it is spent (continue later with --resume)")
    p.add_argument("--init", help="start a new run from these weights (a checkpoint folder or .safetensors; "
                                  "same architecture), with a fresh optimizer and schedule")
    p.add_argument("--lr", type=float, help="peak learning rate (paper: 1e-4)")
    p.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine")
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--grad-clip", type=float, help="max gradient norm (0 = no clipping)")
    p.add_argument("--ema", type=float, nargs="?", const=0.999, help="keep an EMA of the weights with this "
                   "decay (0.999 if no value; 0 = off); the EMA is saved as the eval weights")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast on CUDA (default on; CPU always trains in fp32)")
    p.add_argument("--compile", nargs="?", const="regional", choices=("off", "regional", "full"),
                   help="torch.compile: regional (the default when given alone: each repeated block, fast "
                        "to compile), full (the whole network) or off")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC weights and inputs (faster bf16 convolutions on GPU)")
    p.add_argument("--checkpointing", nargs="?", const="sublayer", choices=("off", "sublayer", "block"),
                   help="activation checkpointing: sublayer (the default when given alone; about a third "
                        "more compute) or block (least memory; about two thirds more) or off")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, help="DataLoader worker processes per rank")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, help="weight init and data order")
    p.add_argument("--task-weights", help="uniform, genlv (the paper's task mix), a JSON object {task: weight} or a .json file holding one")
    p.add_argument("--identity-rate", type=float, help="fraction of samples made identity pairs (prompt (x, x), "
                   "query q -> q from the drawn inputs), to train fidelity; 0 = off (default; not in the paper)")
    p.add_argument("--epoch-length", type=int, help="samples per epoch (default: every train sample once)")
    p.add_argument("--log-every", type=int, help="metrics row every N steps")
    p.add_argument("--ckpt-every", type=int, help="checkpoint every N steps (and at the end)")
    p.add_argument("--metrics", help="metrics CSV (default: train.metrics of the params file; OUT/metrics.csv without "
                                     "one or when --out names another folder)")
    p.add_argument("--summary", help="summary JSON (default: train.summary of the params file; OUT/summary.json without "
                                     "one or when --out names another folder)")
    p.add_argument("--name", help="label written to config.json, the model's name in the leaderboard (default: train.name "
                                  "of the params file; the --out folder's name when --out names another folder "
                                  "or --arch another arch)")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")


def overrides_from(args) -> dict:
    """Command-line values by TrainConfig field (None = not given)."""
    return {
        "arch": args.arch, "overrides": dict(args.override) if args.override else None, "shards": args.shards,
        "out": args.out, "steps": args.steps, "batch": args.batch, "size": args.size, "resume": args.resume,
        "stop_at": args.stop_at, "lr": args.lr, "min_lr": args.min_lr, "warmup": args.warmup,
        "weight_decay": args.weight_decay, "grad_clip": args.grad_clip, "ema": args.ema, "bf16": args.bf16,
        "compile": args.compile, "channels_last": args.channels_last, "checkpointing": args.checkpointing,
        "device": args.device, "workers": args.workers, "threads": args.threads,
        "seed": args.seed, "task_weights": args.task_weights, "epoch_length": args.epoch_length,
        "identity_rate": args.identity_rate,
        "log_every": args.log_every, "ckpt_every": args.ckpt_every, "metrics": args.metrics,
        "summary": args.summary, "name": args.name, "max_minutes": args.max_minutes, "init": args.init,
    }


def run(args) -> int:
    from pipelines.train import configure, format_summary, params_name_arch, read_params, run_train

    params_path = args.params or (DEFAULT_PARAMS if Path(DEFAULT_PARAMS).is_file() else None)
    params = read_params(params_path, required=args.params is not None)
    # A params file that names no arch (scripts/equal_budget.py's one schedule for every model) did
    # not tune its schedule for the default arch, and without a file the defaults are the paper's:
    # no "inherited settings" warning then.
    named = params_path is not None and params_name_arch(params_path)
    config = configure(params, overrides_from(args), schedule_arch=params["arch"] if named else None)
    summary = run_train(config, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_summary(summary), file=sys.stdout)
    return 0
