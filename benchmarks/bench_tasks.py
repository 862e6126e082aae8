"""Per-task generation speed: milliseconds per (input, target) pair on one core.

    python benchmarks/bench_tasks.py                 # every task, 256x256, test photos
    python benchmarks/bench_tasks.py --tasks jpeg,rl --size 256 --repeats 20 --source deadleaves

Prints one row per task with the median and best time over ``--repeats`` fresh samples (source
image drawn outside the timed region) and the issue target it is held to; exits 0 regardless
(figures, not a test). Also times the dead-leaves generator itself.
"""
from __future__ import annotations

import os

# One core, as the targets are stated: set before numpy/OpenCV start their thread pools.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import taskgen  # noqa: E402
from taskgen.deadleaves import dead_leaves  # noqa: E402
from taskgen.registry import sample_rng  # noqa: E402
from taskgen.sources import build_source  # noqa: E402

# ms per pair at 256^2 on one core, from the issues.
TARGET_MS = {
    "restoration": 20.0, "edge": 20.0, "enhancement": 60.0, "stylization": 100.0,
}
TASK_TARGET_MS = {"rl": 60.0, "mixed": 60.0, "tone_multiscale": 250.0, "rtv": 250.0, "pencil": 250.0}


def time_task(spec, source, size: int, repeats: int, seed: int) -> list[float]:
    times = []
    for i in range(repeats + 1):
        rng = sample_rng(seed, spec.name, "test", i)
        src = source.sample(i, size, rng)
        t0 = time.perf_counter()
        spec.generate(src.image, rng, depth=src.depth)
        dt = (time.perf_counter() - t0) * 1000.0
        if i > 0:  # the first call pays for imports and caches
            times.append(dt)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--source", default="photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    rows = []
    dl_times = []
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        dead_leaves(args.size, np.random.default_rng(i))
        if i:
            dl_times.append((time.perf_counter() - t0) * 1000.0)
    dl_median = statistics.median(dl_times)
    print(f"dead-leaves image {args.size}^2: median {dl_median:.1f} ms (target <= 10 ms)")

    source = build_source(args.source)
    print(f"\n{'task':<20} {'category':<12} {'median ms':>10} {'best ms':>9} {'target':>7}  ok")
    for spec in taskgen.resolve_tasks(args.tasks):
        times = time_task(spec, source, args.size, args.repeats, args.seed)
        median, best = statistics.median(times), min(times)
        target = TASK_TARGET_MS.get(spec.name, TARGET_MS[spec.category])
        ok = "yes" if median <= target else "NO"
        print(f"{spec.name:<20} {spec.category:<12} {median:>10.1f} {best:>9.1f} {target:>7.0f}  {ok}")
        rows.append({"task": spec.name, "category": spec.category, "median_ms": round(median, 2),
                     "best_ms": round(best, 2), "target_ms": target})
    if args.json:
        from taskgen.atomic import atomic_write_json

        atomic_write_json(args.json, {"size": args.size, "repeats": args.repeats, "source": args.source,
                                      "deadleaves_median_ms": round(dl_median, 2), "tasks": rows})


if __name__ == "__main__":
    main()
