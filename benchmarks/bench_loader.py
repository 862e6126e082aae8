"""Training-loader throughput: samples per second per DataLoader worker at 256^2.

    python benchmarks/bench_loader.py                      # synthesises a small 256^2 train set first
    python benchmarks/bench_loader.py --shards data/shards --size 128

A training sample is four images (prompt input/target, query input/target): four PNG decodes,
two crops, one flip/rotation, four float conversions. The script times those parts separately
in this process (what bounds one worker), then a DataLoader with 1 and 2 workers in steady state
(after the first batch, so worker start-up is reported apart). Target: >= 150 samples/s per
worker. Figures, not a test: prints them and exits 0.
"""
from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import torch  # noqa: E402

from model.data import TrainStream, dihedral, make_loader, to_chw_float  # noqa: E402
from pipelines.synth import configure, read_params, run_synth  # noqa: E402
from taskgen.imageio import decode_png  # noqa: E402

TARGET_PER_WORKER = 150.0
BENCH_TASKS = "gaussian_noise,jpeg,low_light,canny,pencil,vermeer,sdr_to_hdr,haze"


def synthesise(out: Path, size: int, n_train: int, tasks: str, png_compression: int) -> None:
    params = read_params(None)
    params.update({"tasks": tasks, "size": size, "summary": None, "per_task": {}, "splits": ["train"],
                   "counts": {"train": n_train, "test": 0, "unseen": 0}, "png_compression": png_compression})
    run_synth(configure(params, {"out": str(out)}), progress=False)


def time_parts(stream: TrainStream, n: int) -> dict[str, float]:
    """Median milliseconds of each step of one sample, measured on real entries."""
    plan = stream.epoch_plan(0)
    decode, crop_flip, convert, total = [], [], [], []
    for position in range(n):
        row = plan[position % len(plan)]
        task = stream.tasks[int(row[0])]
        refs = (stream.refs[task][int(row[2])], stream.refs[task][int(row[1])])
        t0 = time.perf_counter()
        blobs = []
        for ref in refs:
            fd = stream._fd(ref.shard)
            blobs += [os.pread(fd, ref.input[1], ref.input[0]), os.pread(fd, ref.target[1], ref.target[0])]
        images = [decode_png(b) for b in blobs]
        t2 = time.perf_counter()
        c = stream.size
        views = [dihedral(img[:c, :c], 5) for img in images]
        t3 = time.perf_counter()
        [to_chw_float(v) for v in views]
        t4 = time.perf_counter()
        decode.append((t2 - t0) * 1000)
        crop_flip.append((t3 - t2) * 1000)
        convert.append((t4 - t3) * 1000)
        t5 = time.perf_counter()
        stream.make_sample(0, position, row)
        total.append((time.perf_counter() - t5) * 1000)
    return {"read+decode 4 PNGs": statistics.median(decode), "crop+flip": statistics.median(crop_flip),
            "to float tensors": statistics.median(convert), "whole sample": statistics.median(total)}


def loader_rate(shards: Path, size: int, workers: int, batch: int, batches: int) -> tuple[float, float]:
    """(steady samples/s, seconds to the first batch) of a DataLoader with ``workers`` workers."""
    loader = make_loader(shards, batch_size=batch, size=size, workers=workers, seed=0)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * batch / (time.perf_counter() - t1)
    del it
    return rate, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", help="existing shards directory (default: synthesise a small set)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=24, help="train pairs per task when synthesising")
    parser.add_argument("--tasks", default=BENCH_TASKS)
    parser.add_argument("--png-compression", type=int, help="default: params.yaml's")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        shards = Path(args.shards) if args.shards else Path(tmp) / "shards"
        if not args.shards:
            level = args.png_compression
            if level is None:
                level = read_params("params.yaml" if Path("params.yaml").is_file() else None)["png_compression"]
            t0 = time.perf_counter()
            synthesise(shards, args.size, args.n_train, args.tasks, level)
            print(f"synthesised {args.tasks.count(',') + 1} tasks x {args.n_train} train pairs at {args.size}^2, "
                  f"PNG level {level}, in {time.perf_counter() - t0:.1f} s")
        stream = TrainStream(shards, args.size, seed=0)
        parts = time_parts(stream, 200)
        print(f"\none sample in this process (median ms, {args.size}^2):")
        for name, ms in parts.items():
            print(f"  {name:<20} {ms:6.2f}")
        single = 1000.0 / parts["whole sample"]
        share = 100 * parts["read+decode 4 PNGs"] / parts["whole sample"]
        print(f"  -> {single:.0f} samples/s on one core; PNG decoding is {share:.0f} % of it")

        print(f"\n{'workers':>7} {'samples/s':>10} {'per worker':>11} {'first batch s':>14}  target >= "
              f"{TARGET_PER_WORKER:.0f}/s/worker")
        for w in [int(v) for v in args.workers.split(",")]:
            rate, first = loader_rate(shards, args.size, w, args.batch, args.batches)
            ok = "yes" if rate / w >= TARGET_PER_WORKER else "NO"
            print(f"{w:>7} {rate:>10.1f} {rate / w:>11.1f} {first:>14.2f}  {ok}")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"(cores available: {cores}; per-worker rates above the core count are not meaningful;"
              f" shared machines are noisy)")


if __name__ == "__main__":
    main()
