"""Synthesis throughput: per task, and for the whole default suite at 1 and 2 Dask workers.

    python benchmarks/bench_synth.py                       # the params.yaml suite, workers 1 and 2
    python benchmarks/bench_synth.py --tasks restoration --workers 1,2,4 --repeats 3

1. Sequential pass in this process (no Dask): per task, ms per pair spent in the task itself
   (source image + task function: "pure task time") and in writing it (PNG, JSON, tar, sha256).
2. The whole suite through a ``distributed.LocalCluster`` of W single-threaded worker processes
   (cluster start-up included), for each W: wall time, speed-up over W=1, and
   overhead ratio = wall / (sum of pure task time / W)   (target <= 1.15; 1 -> 2 workers >= 1.8x),
   where the pure task time is what the Dask tasks themselves took (each writes one shard: task
   functions, PNG, tar), as the workers measured it in that run; so the ratio is what start-up,
   scheduling and the idle tail cost. The ratio against the sequential pass is printed too.

Figures, not a test: prints them and exits 0. Every run writes to a fresh temporary directory.
"""
from __future__ import annotations

import os

# One thread per process, as the figures are stated: set before numpy/OpenCV start their pools.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

from pipelines.synth import configure, execute, read_params  # noqa: E402
from taskgen.shards import plan_shards, write_shard  # noqa: E402

TARGET_SPEEDUP_2 = 1.8
TARGET_OVERHEAD = 1.15


def sequential_pass(jobs, root: Path) -> dict[str, dict]:
    """Write every shard in this process; per task: pairs, pure task seconds, writing seconds."""
    rows: dict[str, dict] = {}
    for job in jobs:
        res = write_shard(job, root, journal=False)
        row = rows.setdefault(job.task, {"pairs": 0, "task_s": 0.0, "write_s": 0.0})
        row["pairs"] += job.count
        row["task_s"] += res.generate_s
        row["write_s"] += res.encode_s + res.write_s
    return rows


def warm_up(jobs, root: Path) -> None:
    """Pay first-call costs (imports, photo loading, caches) outside the timed region."""
    seen = set()
    for job in jobs:
        if (job.task, job.split) not in seen:
            seen.add((job.task, job.split))
            write_shard(dataclasses.replace(job, stop=job.start + 1), root, journal=False)


def dask_run(jobs, workers: int) -> tuple[float, float]:
    """(wall seconds, busy seconds: the shard-writing time the workers measured) of one run."""
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        t0 = time.perf_counter()
        results, _ = execute(jobs, Path(tmp), workers=workers, progress=False, force_dask=True)
        wall = time.perf_counter() - t0
    return wall, sum(r.generate_s + r.encode_s + r.write_s for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--tasks", help="default: the params file's task list")
    parser.add_argument("--size", type=int)
    parser.add_argument("--n-train", type=int)
    parser.add_argument("--n-test", type=int)
    parser.add_argument("--png-compression", type=int, help="default: the params file's")
    parser.add_argument("--workers", default="1,2", help="comma list of Dask worker counts")
    parser.add_argument("--repeats", type=int, default=1, help="runs per worker count (median reported)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    params = read_params(args.params if Path(args.params).is_file() else None)
    if args.png_compression is not None:
        params["png_compression"] = args.png_compression
    config = configure(params, {"tasks": args.tasks, "size": args.size, "n_train": args.n_train,
                                "n_test": args.n_test})
    jobs = plan_shards(config.tasks, config.counts, seed=config.seed, size=config.size, sources=config.sources,
                       samples_per_shard=config.samples_per_shard, png_compression=config.png_compression,
                       paired=config.paired)
    pairs = sum(job.count for job in jobs)
    print(f"suite: {len(config.tasks)} tasks, {len(jobs)} shards, {pairs} pairs at {config.size}^2, "
          f"PNG level {config.png_compression}")

    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        warm_up(jobs, Path(tmp) / "warm")
        t0 = time.perf_counter()
        rows = sequential_pass(jobs, Path(tmp) / "seq")
        seq_wall = time.perf_counter() - t0
    print(f"\n{'task':<22} {'pairs':>6} {'task ms/pair':>13} {'write ms/pair':>14}")
    for name, row in rows.items():
        print(f"{name:<22} {row['pairs']:>6} {1000 * row['task_s'] / row['pairs']:>13.2f} "
              f"{1000 * row['write_s'] / row['pairs']:>14.2f}")
    task_s = sum(r["task_s"] for r in rows.values())
    write_s = sum(r["write_s"] for r in rows.values())
    print(f"{'total':<22} {pairs:>6} {1000 * task_s / pairs:>13.2f} {1000 * write_s / pairs:>14.2f}")
    print(f"sequential in-process: wall {seq_wall:.1f} s = task {task_s:.1f} s + writing {write_s:.1f} s "
          f"({100 * write_s / task_s:.0f} % of task time)")

    results = {}
    print(f"\n{'workers':>7} {'wall s':>8} {'pairs/s':>8} {'speed-up':>9} {'busy s':>7} {'overhead':>9} "
          f"{'vs seq':>7}   (median of {args.repeats})")
    for w in [int(v) for v in args.workers.split(",")]:
        runs = sorted(dask_run(jobs, w) for _ in range(args.repeats))
        wall, busy = runs[len(runs) // 2]
        base = results.get(1, {}).get("wall_s")
        results[w] = {"wall_s": round(wall, 3), "walls": [round(r[0], 3) for r in runs], "busy_s": round(busy, 3),
                      "speedup": round(base / wall, 3) if base else None,
                      "overhead": round(wall / (busy / w), 3),
                      "overhead_vs_sequential": round(wall / ((task_s + write_s) / w), 3)}
        speedup = f"{base / wall:8.2f}x" if base else f"{'-':>9}"
        print(f"{w:>7} {wall:>8.1f} {pairs / wall:>8.1f} {speedup} {busy:>7.1f} {results[w]['overhead']:>9.2f} "
              f"{results[w]['overhead_vs_sequential']:>7.2f}")
    print("busy: shard-writing seconds the workers measured (task + PNG + tar) in that run; overhead = wall /"
          " (busy / workers): start-up, scheduling and idle tail; vs seq: the same against the sequential pass.")
    if 2 in results and 1 in results:
        contention = results[2]["busy_s"] / results[1]["busy_s"]
        ok_speed = results[2]["speedup"] >= TARGET_SPEEDUP_2
        ok_over = results[2]["overhead"] <= TARGET_OVERHEAD
        print(f"\nthe same work takes {contention:.2f}x the CPU time with 2 workers busy than with 1 (this "
              f"machine's cores slow each other down); the speed-up cannot exceed {2 / contention:.2f}x here")
        print(f"targets: 1->2 workers >= {TARGET_SPEEDUP_2}x: {'yes' if ok_speed else 'NO'}; "
              f"overhead ratio at 2 workers <= {TARGET_OVERHEAD}: {'yes' if ok_over else 'NO'}")
    print(f"(cores available: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()};"
          f" timings on a shared machine are noisy)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "size": config.size, "pairs": pairs, "tasks": {k: {"pairs": v["pairs"],
                                                              "task_ms_per_pair": 1000 * v["task_s"] / v["pairs"],
                                                              "write_ms_per_pair": 1000 * v["write_s"] / v["pairs"]}
                                                          for k, v in rows.items()},
            "sequential_wall_s": seq_wall, "task_s": task_s, "write_s": write_s,
            "dask": results}, indent=2))


if __name__ == "__main__":
    main()
