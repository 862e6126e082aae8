"""Does a visual-prompt model learn to use its prompt? Train it and watch, every few steps.

    python scripts/prompt_use.py                          # the CPU profile's genlv-tiny run (params.yaml)
    python scripts/prompt_use.py --lr 1e-3 --stop 100     # the learning rate that collapses it
    python scripts/prompt_use.py --arch xrestormer-s --overrides '{"dim": 12}' --stop 50 --every 10

Trains exactly as ``llvbench train`` does (``model.train.Trainer`` over the train shards' step
loader, the run's settings from params.yaml's ``train`` section unless given here) and, before the
first step and every ``--every`` steps, scores a fixed probe of ``--probe`` train samples drawn with
another seed, in eval mode:

- ``l1_right``: mean L1 of the output against the target with each sample's own prompt pair;
- ``l1_wrong``: the same queries with the prompt pair of the next probe sample of another task;
- ``gain``: l1_wrong − l1_right, what the right prompt is worth (0: the prompt is ignored);
- ``token_spread``: for models with a prompt encoder (GenLV's ``encode_prompt``), the standard
  deviation of its prompt-input tokens (the keys) across the probe's first 16 prompts, over their standard
  deviation within one prompt (about 0.35 at initialisation; near 0 when the encoder has collapsed
  to one output whatever the prompt);
- ``l1_identity``: the query itself as output, for scale.

Prints one line per measurement and, with ``--json``, writes them all. Nothing is saved but that:
it is a diagnostic, not a training run (use ``llvbench train`` for that).
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def wrong_prompt_order(tasks: list[str]) -> list[int]:
    """For each probe sample, the index of the next sample (cyclically) whose task differs."""
    if len(set(tasks)) < 2:
        raise SystemExit(f"prompt_use: the probe holds one task only ({tasks[0] if tasks else 'none'}); "
                         "a wrong prompt needs another task (more --probe samples or more tasks)")
    order = []
    for i, task in enumerate(tasks):
        j = (i + 1) % len(tasks)
        while tasks[j] == task:
            j = (j + 1) % len(tasks)
        order.append(j)
    return order


def measure(net, probe: dict, wrong: list[int]) -> dict:
    """L1 with the right and the wrong prompts, their gap, the prompt tokens' spread (see the module doc);
    the outputs come from ``model.objectives.predict``, as each network is trained and evaluated."""
    import torch

    from model.objectives import predict

    was_training = net.training
    net.eval()
    with torch.no_grad():
        query, target = probe["query"], probe["target"]
        right = predict(net, query, probe["prompt_input"], probe["prompt_target"]).clamp(0, 1)
        swapped = predict(net, query, probe["prompt_input"][wrong], probe["prompt_target"][wrong]).clamp(0, 1)
        spread = None
        if hasattr(net, "encode_prompt") and getattr(getattr(net, "config", None), "use_prompt", True):
            keys, _ = net.encode_prompt(probe["prompt_input"][:16], probe["prompt_target"][:16])
            spread = round(float(keys.std(0).mean() / keys[0].std()), 4)
    net.train(was_training)
    l1_right = float((right - target).abs().mean())
    l1_wrong = float((swapped - target).abs().mean())
    return {"l1_right": round(l1_right, 5), "l1_wrong": round(l1_wrong, 5), "gain": round(l1_wrong - l1_right, 5),
            "token_spread": spread, "l1_identity": round(float((query - target).abs().mean()), 5)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml",
                        help="params file whose train section gives the settings not given here")
    for name, kind in (("arch", str), ("shards", str), ("steps", int), ("batch", int), ("size", int),
                       ("lr", float), ("warmup", int), ("seed", int), ("identity_rate", float),
                       ("workers", int), ("threads", int)):
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"train.{name} (default: the params file's)")
    parser.add_argument("--overrides", type=json.loads, help="model.build overrides as JSON")
    parser.add_argument("--stop", type=int, help="stop after this step (the schedule still spans --steps)")
    parser.add_argument("--every", type=int, default=25, help="steps between measurements")
    parser.add_argument("--probe", type=int, default=96, help="probe samples (train stream, seed 999)")
    parser.add_argument("--json", help="write every measurement to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.every < 1 or args.probe < 2:
        raise SystemExit("prompt_use: --every must be at least 1 and --probe at least 2")
    import torch

    from model.data import TrainStream, batch_to_float
    from model.train import (Distributed, StepBatches, TrainConfig, Trainer, build_network, make_step_loader,
                             make_stream, resolve_device)
    from pipelines.memory import reuse_freed_memory
    from pipelines.train import configure, read_params
    from taskgen.atomic import atomic_write_json

    reuse_freed_memory()
    given = {k: v for k, v in vars(args).items() if v is not None and k in TrainConfig.__dataclass_fields__}
    config = configure(read_params(args.params), given)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    trainer = Trainer(build_network(config), config, device)
    raw = next(iter(StepBatches(TrainStream(config.shards, config.size, seed=999, raw=True), args.probe, 0, 1)))
    wrong = wrong_prompt_order(list(raw["task"]))
    probe = batch_to_float(raw, device)
    stop = min(args.stop or config.steps, config.steps)
    print(f"{config.arch} lr {config.lr:g}, warm-up {config.warmup}, batch {config.batch} at {config.size} px, "
          f"{stop} of {config.steps} steps; probe of {args.probe} train samples", flush=True)
    rows, losses, start = [], [], time.perf_counter()

    def record(step: int) -> None:
        row = {"step": step, "loss": round(sum(losses) / len(losses), 5) if losses else None,
               **measure(trainer.net, probe, wrong), "seconds": round(time.perf_counter() - start, 1)}
        losses.clear()
        rows.append(row)
        print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)

    record(0)
    for batch in make_step_loader(make_stream(config, Distributed()), config.batch, 0, stop, workers=config.workers):
        losses.append(trainer.step(batch).loss)
        if trainer.step_count % args.every == 0 or trainer.step_count == stop:
            record(trainer.step_count)
    if args.json:
        settings = ("arch", "overrides", "shards", "steps", "batch", "size", "lr", "warmup", "seed", "identity_rate")
        atomic_write_json(args.json, {"config": {k: getattr(config, k) for k in settings}, "stop": stop,
                                      "device": str(device), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
