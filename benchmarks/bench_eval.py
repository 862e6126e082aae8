"""Evaluation overhead outside the model: milliseconds per query image on one core.

    python benchmarks/bench_eval.py                       # 256x256, every task, 32 images each
    python benchmarks/bench_eval.py --size 256 --n 32 --repeats 5 --tasks jpeg,canny

Synthesizes a small test split in a temporary folder (not timed), then runs the ``identity``
generalist through ``bench.evaluate`` on the main track, whose model cost is nil, so the time
is the bench's own: PNG decoding and prompt selection, tensor conversion and output checks,
quantization (on the model's device), PSNR + SSIM (or MAE + PSNR), parquet writing. Prints the median over
``--repeats`` runs per image and a breakdown by stage; the issue's target is <= 5 ms per 256²
image. Figures, not a test: exits 0 regardless.
"""
from __future__ import annotations


import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

TARGET_MS = 5.0


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


MIN_SIZE = 8  # synth's smallest crop (pipelines.synth.MIN_SIZE)


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """Refuse bad options before anything is synthesised (parser.error: one line naming the option)."""
    from taskgen import UnknownTaskError, resolve_tasks

    for option, value, least in (("--size", args.size, MIN_SIZE), ("--n", args.n, 1),
                                 ("--batch-size", args.batch_size, 1), ("--repeats", args.repeats, 1),
                                 ("--threads", args.threads, 0)):
        if value < least:
            parser.error(f"{option} must be >= {least}, got {value}")
    try:
        specs = resolve_tasks(args.tasks)
    except UnknownTaskError as err:
        parser.error(f"--tasks {args.tasks}: {err}")
    if not specs:
        parser.error(f"--tasks {args.tasks!r} names no task; give task names or categories, or 'all'")
    # 'all' and the categories take the tasks with a test split (held-out tasks have only the unseen
    # split); a held-out task named on its own, or a selection with none left, is refused.
    named = {name.strip() for name in args.tasks.split(",")}
    held_out = [spec.name for spec in specs if "test" not in spec.splits
                and (spec.name in named or all("test" not in s.splits for s in specs))]
    if held_out:
        parser.error(f"--tasks {args.tasks}: {', '.join(held_out)} {'has' if len(held_out) == 1 else 'have'} "
                     "no test split (held-out tasks have only the unseen split); this benchmark times the test split")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="all", help="comma list of tasks or categories (default: all)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n", type=int, default=32, help="test images per task")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenCV and torch threads (1: the bench's CPU cost per image; "
                             "0: their defaults, i.e. all cores, as `llvbench eval` runs)")
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    import torch

    if args.threads > 0:
        cv2.setNumThreads(args.threads)
        torch.set_num_threads(args.threads)
    threads = args.threads or f"{cv2.getNumThreads()} (default)"

    import bench
    from bench.evaluate import EvalConfig, EvalContext, evaluate, provenance
    from bench.metrics import METRICS_BY_HEADLINE, score
    from bench.protocol import describe
    from pipelines.synth import configure, read_params, run_synth
    from taskgen import get_task
    from taskgen.testset import TestSplit

    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        run_synth(configure(read_params(None), {"out": str(shards), "tasks": args.tasks, "splits": "test",
                                                 "n_test": args.n, "size": args.size, "workers": 1,
                                                 "summary": ""}), progress=False)
        split = TestSplit(shards)
        identity = bench.load_generalist("identity")
        config = EvalConfig(batch_size=args.batch_size)
        n_images = sum(len(split.pairs(t)) for t in split.tasks)

        runs = iter(range(10**6))
        total = median_ms(lambda: evaluate(identity, split, Path(tmp) / f"out{next(runs)}", config),
                          args.repeats) / n_images

        # Stage by stage, on the same data (one task at a time, as evaluate does).
        info = describe(identity)
        ctx = EvalContext(identity, info, split, config, get_task, split.tasks, split.tasks,
                          provenance("identity", info, split, "bench"))
        queries = {t: list(split.queries(t)) for t in split.tasks}
        decode = median_ms(lambda: [list(split.queries(t)) for t in split.tasks], args.repeats) / n_images

        def predict_all():
            return {t: [ctx.predict([q.query.input for q in qs[i:i + args.batch_size]],
                                    [q.prompt.input for q in qs[i:i + args.batch_size]],
                                    [q.prompt.target for q in qs[i:i + args.batch_size]],
                                    quantize_to=qs[i].query.target.dtype)
                        for i in range(0, len(qs), args.batch_size)]
                    for t, qs in queries.items()}

        convert = median_ms(predict_all, args.repeats) / n_images
        outputs = predict_all()

        def metrics_all():
            for t, qs in queries.items():
                names = METRICS_BY_HEADLINE[get_task(t).metric]
                for j, pred in enumerate(outputs[t]):
                    score(pred, np.stack([q.query.target for q in qs[j * args.batch_size:(j + 1) * args.batch_size]]),
                          names)

        metrics = median_ms(metrics_all, args.repeats) / n_images

    print(f"bench overhead per {args.size}x{args.size} image (identity, main track, {n_images} images of "
          f"{args.tasks}, batch {args.batch_size}, median of {args.repeats} runs, "
          f"{threads} thread(s))")
    print(f"  decode + prompt selection       {decode:6.2f} ms")
    print(f"  tensors + predict + check + quantize {convert:6.2f} ms")
    print(f"  metrics                         {metrics:6.2f} ms")
    print(f"  rows + parquet + rest           {max(total - decode - convert - metrics, 0.0):6.2f} ms")
    print(f"  total (bench.evaluate)          {total:6.2f} ms   target <= {TARGET_MS:.0f} ms: "
          f"{'yes' if total <= TARGET_MS else 'NO'}")


if __name__ == "__main__":
    main()
