"""Fidelity probe of a trained GenLV on its own shards: task PSNR, identity PSNR and pass-through PSNR.

    python scripts/passthrough_probe.py checkpoints/genlv-s --shards /work/genlvs/shards
    python scripts/passthrough_probe.py RUN_DIR --shards DIR --tasks jpeg,ringing --queries 8 --split test

For each task, the first sample of the split is the prompt and the next ``--queries`` are queries.
Three mean PSNRs (dB, on the target's integer range): the model's output against the target, the
input against the target (identity), and pass-through: the prompt pair (t, t) made of the prompt's
own target with a query's target as the query, the output scored against that query target. A
model that cannot reproduce an image it is told to leave alone scores below identity on every mild
degradation, which is what the pass-through column measures. The last column scores the same
pass-through outputs with each image's mean colour offset (per channel) taken out of the error:
the gap between the two is what a global colour cast costs.

The test split of a shard root made with the default sources is the packaged photos (not the
dead-leaves images of the train split), with the first pair as the one prompt of every query.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_TASKS = "jpeg,ringing,rl,poisson_noise,gaussian_blur,local_laplacian"


def task_samples(shards: Path, split: str, task: str, count: int) -> list:
    """The first ``count`` samples (index order) of TASK in the SPLIT of a shard root, read via its manifest."""
    from taskgen.testset import TestSplit

    pairs = TestSplit(shards, split).pairs(task)
    if len(pairs) < count:
        raise ValueError(f"{shards}: task {task!r} has {len(pairs)} samples in its {split} split, the probe needs {count} "
                         f"(one prompt and {count - 1} queries)")
    return pairs[:count]


def probe(generalist, samples: list) -> dict[str, float]:
    """Mean model, identity and pass-through PSNR over the queries samples[1:] with samples[0] as prompt.

    ``generalist`` follows the bench protocol (``bench.builtins.CheckpointGeneralist`` for a checkpoint),
    so the network sees exactly what the leaderboard feeds it (padding, device, quantisation).
    """
    import numpy as np

    from bench.metrics import PSNR_CAP_DB, peak_value, psnr
    from bench.protocol import check_output, images_to_tensor

    def run(query, prompt_input, prompt_target, out_dtype):
        tensors = [images_to_tensor([image]) for image in (query, prompt_input, prompt_target)]
        output = generalist.predict(*tensors)
        # the bench's own check: a NaN or misshapen output is a BadOutput, not a clamped number;
        # quantised to the target's range (uint16 for an HDR target)
        return check_output(output, tuple(tensors[0].shape), who=generalist.name, quantize_to=out_dtype)[0]

    def score(pred, target):
        return float(np.mean(psnr(pred, target)))

    def score_without_offset(pred, target):
        """PSNR (capped like the bench's) after subtracting the mean per-channel error: a uniform colour cast costs nothing."""
        peak = peak_value(target.dtype)
        error = pred.astype(np.float64) - target.astype(np.float64)
        error -= error.mean(axis=(0, 1), keepdims=True)
        mse = float(np.mean(error ** 2))
        return PSNR_CAP_DB if mse == 0 else float(min(PSNR_CAP_DB, 10.0 * np.log10(peak * peak / mse)))

    prompt = samples[0]
    scores = {"model": [], "identity": [], "pass_through": [], "pass_through_no_offset": []}
    for query in samples[1:]:
        dtype = query.target.dtype
        scores["model"].append(score(run(query.input, prompt.input, prompt.target, dtype), query.target))
        if query.input.dtype == dtype:  # identity is undefined across bit depths (SDR -> HDR)
            scores["identity"].append(score(query.input, query.target))
        passed = run(query.target, prompt.target, prompt.target, dtype)
        scores["pass_through"].append(score(passed, query.target))
        scores["pass_through_no_offset"].append(score_without_offset(passed, query.target))
    return {name: float(np.mean(values)) if values else float("nan") for name, values in scores.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="model.safetensors written by llvbench, or the folder holding it")
    parser.add_argument("--shards", required=True, help="shard root (the folder holding manifest.json)")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help=f"comma-separated (default {DEFAULT_TASKS})")
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    if args.queries < 1:
        parser.error("--queries must be >= 1")

    import numpy as np
    import torch

    from bench.builtins import CheckpointGeneralist
    from bench.protocol import BadOutput

    torch.set_num_threads(args.threads)
    try:
        generalist = CheckpointGeneralist(args.checkpoint, device=args.device)
        rows = {task: probe(generalist, task_samples(Path(args.shards), args.split, task, args.queries + 1))
                for task in args.tasks.split(",")}
    except (FileNotFoundError, KeyError, ValueError, BadOutput) as err:  # CheckpointError is a ValueError
        print(f"passthrough_probe: {err}", file=sys.stderr)
        return 2
    columns = ("model", "identity", "pass_through", "pass_through_no_offset")
    print("| task | model | identity | pass-through | pass-through, colour offset removed |\n|---|---|---|---|---|")
    for task, row in rows.items():
        print(f"| {task} | " + " | ".join(f"{row[name]:.2f}" for name in columns) + " |")
    means = {name: np.nanmean([row[name] for row in rows.values()])  # NaN: no identity score (SDR -> HDR)
             for name in columns}
    print("| mean | " + " | ".join(f"{means[name]:.2f}" for name in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
