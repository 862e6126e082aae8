"""Where a training step's time goes: the top kernels/operators of ``llvbench train``'s step.

    python benchmarks/profile_step.py --arch genlv-tiny --size 32 --batch 2            # CPU smoke
    python benchmarks/profile_step.py --arch genlv-base --size 256 --batch 8 --bf16    # GPU

Runs ``--warmup`` untimed steps (allocator, cuDNN algorithm choice, compilation), then profiles
``--steps`` steps with ``torch.profiler`` and prints the operators sorted by device time (CPU time
on a CPU run): self ms per step (the profiled total divided by ``--steps``), their share of the
total and calls per step; ``--out`` also saves that table as text, followed by torch's own table,
whose times are totals over the profiled steps. The step is ``model.train.Trainer.step`` on random
uint8 images already on the device, built as bench_train.py builds it (the same options, checks and
messages). On CUDA, cuDNN autotuning and TF32 are on as in ``llvbench train``
(``--no-cudnn-benchmark``, ``--no-tf32`` turn them off); neither exists on the CPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import (add_step_arguments, apply_cuda_settings, check_arguments, check_device,  # noqa: E402
                         device_name, on_off, random_batch, synchronize, train_config)

from model.train import Trainer, build_network  # noqa: E402
from taskgen.atomic import atomic_write_text  # noqa: E402


def compact_table(prof, device: torch.device, rows: int, steps: int) -> str:
    """Operators by self time (device time on CUDA): ms per step (profiled total / ``steps``), share,
    calls per step."""
    on_device = device.type == "cuda"

    def self_us(event) -> float:
        if on_device:
            return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)
        return event.self_cpu_time_total

    events = sorted(prof.key_averages(), key=self_us, reverse=True)
    total = sum(self_us(e) for e in events) or 1.0
    lines = [f"{'self ms/step':>12} {'share':>6} {'calls/step':>10}  operator"]
    for event in events[:rows]:
        calls = event.count / steps
        lines.append(f"{self_us(event) / 1000 / steps:>12.3f} {100 * self_us(event) / total:>5.1f}% "
                     f"{calls:>10.{0 if calls.is_integer() else 1}f}  {event.key[:90]}")
    lines.append(f"{total / 1000 / steps:>12.3f} total self {'device' if on_device else 'CPU'} time per step "
                 f"(mean of {steps} profiled step{'s' if steps != 1 else ''})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, batch_default="2", batch_help="batch size")
    parser.add_argument("--cudnn-benchmark", "--autotune", dest="cudnn_benchmark",
                        action=argparse.BooleanOptionalAction, default=True,
                        help="cuDNN times its algorithms first, as llvbench train does (default on; "
                             "--no-cudnn-benchmark or --no-autotune: its heuristic choice; CUDA only)")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                        help="TF32 matmuls and convolutions, as llvbench train does (default on; CUDA only)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--steps", type=int, default=2, help="profiled steps (times are per step)")
    parser.add_argument("--rows", type=int, default=30, help="operators to list")
    parser.add_argument("--out", help="save the table to this text file")
    return parser


def main(argv: list[str] | None = None) -> str:
    parser = build_parser()
    args = parser.parse_args(argv)
    if "," in str(args.batch):
        parser.error(f"--batch {args.batch!r}: profile_step.py profiles one batch size")
    [batch] = check_arguments(parser, args)
    if args.rows < 1:
        parser.error(f"--rows must be >= 1, got {args.rows}")
    device = check_device(parser, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    autotune = apply_cuda_settings(device, autotune=args.cudnn_benchmark, tf32=args.tf32)
    config = train_config(args, batch)
    trainer = Trainer(build_network(config), config, device)
    data = random_batch(batch, args.size, device)
    for _ in range(args.warmup):
        trainer.step(data)
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            trainer.step(data)
        synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=args.rows, max_name_column_width=60)
    tf32 = args.tf32 if device.type == "cuda" else None
    header = (f"{args.arch} at {args.size}², batch {batch}, bf16={trainer.use_bf16}, compile={on_off(args.compile)}, "
              f"channels_last={args.channels_last}, checkpointing={on_off(args.checkpointing)}, "
              f"ema={args.ema or 'off'}, cuDNN autotuning={on_off(autotune)}, TF32={on_off(tf32)}, "
              f"on {device_name(device)}; {args.steps} profiled step(s) after {args.warmup} warm-up, "
              f"sorted by {sort_by}")
    text = (header + "\n" + compact_table(prof, device, args.rows, args.steps)
            + f"\n\ntorch.profiler's table (totals over the {args.steps} profiled step(s)):\n" + table)
    print(header + "\n" + compact_table(prof, device, args.rows, args.steps))
    if args.out:
        atomic_write_text(args.out, text)
    return text


if __name__ == "__main__":
    main()
