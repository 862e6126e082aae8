"""Where a training step's time goes: the top kernels/operators of ``llvbench train``'s step.

    python benchmarks/profile_step.py --arch genlv-tiny --size 32 --batch 2            # CPU smoke
    python benchmarks/profile_step.py --arch genlv-base --size 256 --batch 8 --bf16    # GPU

Runs ``--warmup`` untimed steps (allocator, cuDNN algorithm choice), then profiles ``--steps``
steps with ``torch.profiler`` and prints the operators sorted by device time (CPU time on a CPU
run), with their share of the total; ``--out`` also saves that table as text. The step is
``model.train.Trainer.step`` on random uint8 images already on the device, as in bench_train.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import device_name, random_batch, synchronize  # noqa: E402

from model.train import Trainer, TrainConfig, build_network, resolve_device  # noqa: E402
from taskgen.atomic import atomic_write_text  # noqa: E402


def compact_table(prof, device: torch.device, rows: int) -> str:
    """Operators by self time (device time on CUDA): ms per profiled run, share, calls."""
    on_device = device.type == "cuda"

    def self_us(event) -> float:
        if on_device:
            return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)
        return event.self_cpu_time_total

    events = sorted(prof.key_averages(), key=self_us, reverse=True)
    total = sum(self_us(e) for e in events) or 1.0
    lines = [f"{'self ms':>9} {'share':>6} {'calls':>6}  operator"]
    for event in events[:rows]:
        lines.append(f"{self_us(event) / 1000:>9.2f} {100 * self_us(event) / total:>5.1f}% {event.count:>6}  "
                     f"{event.key[:90]}")
    lines.append(f"{total / 1000:>9.2f} total self {'device' if on_device else 'CPU'} time")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="genlv-tiny")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--checkpointing", nargs="?", const="sublayer", default="", choices=("sublayer", "block"))
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms first")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rows", type=int, default=30, help="operators to list")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="save the table to this text file")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    config = TrainConfig(arch=args.arch, batch=args.batch, size=args.size, bf16=args.bf16, steps=10**9, warmup=0,
                         channels_last=args.channels_last, checkpointing=args.checkpointing)
    trainer = Trainer(build_network(config), config, device)
    data = random_batch(args.batch, args.size, device)
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
    header = (f"{args.arch} at {args.size}², batch {args.batch}, bf16={trainer.use_bf16}, "
              f"channels_last={args.channels_last}, checkpointing={args.checkpointing}, on {device_name(device)}; "
              f"{args.steps} profiled step(s) after {args.warmup} warm-up, sorted by {sort_by}")
    text = header + "\n" + compact_table(prof, device, args.rows) + "\n\n" + table
    print(header + "\n" + compact_table(prof, device, args.rows))
    if args.out:
        atomic_write_text(args.out, text)
    return text


if __name__ == "__main__":
    main()
