"""CPU inference with glibc's malloc as configured against ``pipelines.memory.reuse_freed_memory``.

    python benchmarks/bench_malloc.py                                   # genlv-s, batch 8, 128 px
    python benchmarks/bench_malloc.py --arch genlv-tiny --batch 8 --size 128 --rounds 3

Each round runs two fresh processes, one per setting, in alternating order (a shared machine's
speed drifts; a ratio within one round is what to trust). Each process builds the network with
random weights, runs one untimed forward, then times ``--repeats`` forwards under
``torch.inference_mode`` on random images, and reports ms per image and the minor page faults
those forwards took. Prints both per round and the median ratio. Figures, not a test: exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("system", "reuse")


def measure(arch: str, batch: int, size: int, repeats: int, setting: str) -> dict:
    """ms per image and minor page faults of ``repeats`` forwards, in this process."""
    import resource
    import time

    import torch

    import model
    from pipelines.memory import reuse_freed_memory

    applied = reuse_freed_memory() if setting == "reuse" else False
    network = model.build(arch).eval()
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(batch, 3, size, size, generator=generator) for _ in range(3)]
    with torch.inference_mode():
        network(*images)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(repeats):
            network(*images)
        seconds = time.perf_counter() - start
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"setting": setting, "applied": applied, "ms_per_image": seconds / repeats / batch * 1000.0,
            "minor_faults_per_forward": faults / repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="genlv-s", help="architecture name (model.build)")
    parser.add_argument("--batch", type=int, default=8, help="images per forward (the eval stage's batch_size)")
    parser.add_argument("--size", type=int, default=128, help="query and prompt size in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per process")
    parser.add_argument("--rounds", type=int, default=2, help="process pairs, alternating which runs first")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for option, value in (("--batch", args.batch), ("--size", args.size), ("--repeats", args.repeats),
                          ("--rounds", args.rounds)):
        if value < 1:
            parser.error(f"{option} must be >= 1, got {value}")
    if args.child:
        print(json.dumps(measure(args.arch, args.batch, args.size, args.repeats, args.child)))
        return 0

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("LLVBENCH_SYSTEM_MALLOC", None)
    print(f"{args.arch}, batch {args.batch}, {args.size}², {args.repeats} timed forwards per process")
    print(f"{'round':>5}  {'setting':<7} {'ms/image':>9} {'faults/forward':>15}")
    ratios = []
    for round_index in range(args.rounds):
        order = SETTINGS if round_index % 2 == 0 else SETTINGS[::-1]
        results = {}
        for setting in order:
            command = [sys.executable, __file__, "--arch", args.arch, "--batch", str(args.batch), "--size",
                       str(args.size), "--repeats", str(args.repeats), "--child", setting]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"bench_malloc: the {setting} run failed:\n{done.stderr}", file=sys.stderr)
                return 1
            results[setting] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[setting]
            note = "" if setting == "system" or r["applied"] else "  (not applied: not glibc?)"
            print(f"{round_index + 1:>5}  {setting:<7} {r['ms_per_image']:>9.1f} "
                  f"{r['minor_faults_per_forward']:>15,.0f}{note}")
        ratios.append(results["system"]["ms_per_image"] / results["reuse"]["ms_per_image"])
    print(f"speed-up (system ms / reuse ms): median {statistics.median(ratios):.2f}x over {len(ratios)} "
          f"round(s): {', '.join(f'{r:.2f}' for r in ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
