"""Fidelity probe of a trained GenLV on its own shards: task PSNR, identity PSNR and pass-through PSNR.

    python scripts/passthrough_probe.py checkpoints/genlv-s --shards /work/genlvs/shards
    python scripts/passthrough_probe.py RUN_DIR --shards DIR --tasks jpeg,ringing --queries 8 --split test
    python scripts/passthrough_probe.py checkpoints/genlv-s --shards DIR --tasks gaussian_blur --per-query
    python scripts/passthrough_probe.py checkpoints/genlv-s --shards DIR --tasks jpeg,rl --flat-levels 0,2,8,255
    python scripts/passthrough_probe.py checkpoints/genlv-s --shards DIR --error-map passthrough-errors
    python scripts/passthrough_probe.py checkpoints/genlv-s --shards DIR --flat-prompts 16,50,128,200

For each task, the first sample of the split is the prompt and the next ``--queries`` are queries.
Three mean PSNRs (dB, on the target's integer range): the model's output against the target, the
input against the target (identity), and pass-through: the prompt pair (t, t) made of the prompt's
own target with a query's target as the query, the output scored against that query target. A
model that cannot reproduce an image it is told to leave alone scores below identity on every mild
degradation, which is what the pass-through column measures. The last column scores the same
pass-through outputs with each image's mean colour offset (per channel) taken out of the error:
the gap between the two is what a global colour cast costs. "Floor cost" is what an output error as
large as the pass-through error costs on top of identity's if the two are independent,
10·log10(1 + 10^((identity − pass-through)/10)) dB per query: a model scoring identity − floor cost
restores nothing beyond its own reproduction error, so a mild task (identity near the pass-through
PSNR) is lost unless the model gains more than that. ``--per-query`` adds each query's scores
with the mean brightness of its target and of the pass-through output: a model that brightens a dark
photo it was told to leave alone (dark images seen only as low-light inputs) shows there.
``--flat-levels`` adds the pass-through error inside a flat block at each given level
(``flat_block_errors``): exactly black is where GenLV's LayerNorm is singular. ``--error-map STEM``
draws STEM.png: per task, its first query's target, the pass-through output and their difference
amplified around mid-grey (``error_image``), to see where the error lives (edges, flat areas,
the network's 8-px bottleneck grid) rather than only how large it is. ``--flat-prompts`` adds the
pass-through PSNR under a uniform grey prompt pair (v, v) at each given level
(``flat_prompt_passthrough``): the prompt says "change nothing", yet genlv-s run 28 pulls its output
towards a dark uniform prompt's brightness (a photo's sky is nearly one colour).

The test split of a shard root made with the default sources is the packaged photos (not the
dead-leaves images of the train split), with the first pair as the one prompt of every query.
"""
from __future__ import annotations

import argparse
import math
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


def predict_checked(generalist, query, prompt_input, prompt_target, out_dtype):
    """The generalist's output for one H×W×3 query and prompt pair, through the bench's own check (a NaN or
    misshapen output is a BadOutput, not a clamped number), quantised to ``out_dtype`` (uint16 for an HDR target)."""
    from bench.protocol import check_output, images_to_tensor

    tensors = [images_to_tensor([image]) for image in (query, prompt_input, prompt_target)]
    output = generalist.predict(*tensors)
    return check_output(output, tuple(tensors[0].shape), who=generalist.name, quantize_to=out_dtype)[0]


def probe_queries(generalist, samples: list) -> list[dict]:
    """Per query of samples[1:] (samples[0] is the prompt): its key, the model, identity and pass-through PSNRs,
    and the mean brightness (in [0, 1]) of the query target and of the pass-through output.

    ``generalist`` follows the bench protocol (``bench.builtins.CheckpointGeneralist`` for a checkpoint),
    so the network sees exactly what the leaderboard feeds it (padding, device, quantisation).
    """
    import numpy as np

    from bench.metrics import PSNR_CAP_DB, peak_value, psnr

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
    rows = []
    for query in samples[1:]:
        dtype = query.target.dtype
        peak = peak_value(dtype)
        passed = predict_checked(generalist, query.target, prompt.target, prompt.target, dtype)
        # identity is undefined across bit depths (SDR -> HDR)
        identity = score(query.input, query.target) if query.input.dtype == dtype else float("nan")
        pass_through = score(passed, query.target)
        rows.append({
            "key": query.key,
            "model": score(predict_checked(generalist, query.input, prompt.input, prompt.target, dtype), query.target),
            "identity": identity,
            "pass_through": pass_through,
            "pass_through_no_offset": score_without_offset(passed, query.target),
            "floor_cost": floor_cost_db(identity, pass_through),
            "brightness": float(query.target.mean()) / peak,
            "pass_through_brightness": float(passed.mean()) / peak,
        })
    return rows


def floor_cost_db(identity_psnr: float, pass_through_psnr: float) -> float:
    """dB lost against identity by adding an independent error of the pass-through's size: identity's MSE
    plus the pass-through MSE, as PSNR, below identity's PSNR (NaN without an identity score)."""
    return 10.0 * math.log10(1.0 + 10.0 ** ((identity_psnr - pass_through_psnr) / 10.0))


def flat_block_errors(generalist, samples: list, levels: list[int], margin: int = 8) -> dict[int, float]:
    """Per flat level v (0-255 scale): the mean absolute pass-through error, on the 0-255 scale, inside a
    flat block at v covering the left half of each query target of samples[1:] (prompt: samples[0]'s
    target twice), ``margin`` pixels in from the block's edges (a quarter of its smaller side if that is less).

    An exactly black pixel is a singular input for a network whose bias-free patch embedding feeds a
    LayerNorm (GenLV, X-Restormer): the embedding of 0 is 0, which the norm maps to its bias, while any
    other flat grey normalises to nearly the same vector whatever its level (the norm's eps blends the two
    below level ~4). Levels 0 and 2 side by side show it.
    """
    import numpy as np

    from bench.metrics import peak_value

    if len(samples) < 2:
        raise ValueError(f"flat_block_errors needs a prompt and at least one query, got {len(samples)} sample(s)")
    prompt = samples[0].target
    errors: dict[int, list[float]] = {level: [] for level in levels}
    for query in samples[1:]:
        target = query.target
        height, width = target.shape[:2]
        half = width // 2
        inset = min(margin, min(height, half) // 4)  # a quarter of the block's smaller side on small images
        if inset < 1:
            raise ValueError(f"{query.key}: {height}x{width} is too small for a flat half block")
        scale = peak_value(target.dtype) / 255.0
        for level in levels:
            flat = target.copy()
            flat[:, :half] = round(level * scale)
            out = predict_checked(generalist, flat, prompt, prompt, target.dtype)
            inside = out[inset:height - inset, inset:half - inset].astype(np.float64) / scale
            errors[level].append(float(np.abs(inside - level).mean()))
    return {level: sum(values) / len(values) for level, values in errors.items()}


def flat_prompt_passthrough(generalist, samples: list, levels: list[int]) -> dict[int, float]:
    """Per grey level v (0-255 scale): the mean pass-through PSNR (dB) of the query targets of samples[1:]
    when the prompt pair is one uniform image at v twice, of the prompt's shape: (v, v) asks for no change,
    so a model that follows its prompt scores its ordinary pass-through at every level, and one that copies
    the prompt's brightness into its output scores far lower at dark or bright levels."""
    import numpy as np

    from bench.metrics import peak_value, psnr

    if len(samples) < 2:
        raise ValueError(f"flat_prompt_passthrough needs a prompt and at least one query, got {len(samples)} sample(s)")
    shape, dtype = samples[0].target.shape, samples[0].target.dtype
    scores: dict[int, list[float]] = {level: [] for level in levels}
    for level in levels:
        flat = np.full(shape, round(level * peak_value(dtype) / 255.0), dtype)
        for query in samples[1:]:
            out = predict_checked(generalist, query.target, flat, flat, query.target.dtype)
            scores[level].append(float(np.mean(psnr(out, query.target))))
    return {level: sum(values) / len(values) for level, values in scores.items()}


def error_image(output, target, gain: float = 8.0):
    """uint8 RGB picture of output − target (same shape and integer dtype): mid-grey 128 where they agree,
    each error (on the 0-255 scale, so a uint16 HDR pair is rescaled) times ``gain`` added, clipped."""
    import numpy as np

    from bench.metrics import peak_value

    if output.shape != target.shape or output.dtype != target.dtype:
        raise ValueError(f"error_image: output {output.shape} {output.dtype} and target {target.shape} "
                         f"{target.dtype} differ")
    scale = 255.0 / peak_value(target.dtype)
    error = (output.astype(np.float64) - target.astype(np.float64)) * scale
    return np.clip(np.rint(128.0 + gain * error), 0, 255).astype(np.uint8)


def error_map(generalist, samples_by_task: dict[str, list], stem, gain: float = 8.0) -> Path:
    """STEM.png: one row per task, its first query's target (samples[1]) with the prompt (t, t) made of
    samples[0]'s target, the pass-through output (PSNR under it) and ``error_image`` of the two."""
    from bench.figures import comparison_grid
    from bench.metrics import psnr
    from taskgen.preview import display_uint8

    rows = []
    for task, samples in samples_by_task.items():
        prompt, query = samples[0].target, samples[1].target
        passed = predict_checked(generalist, query, prompt, prompt, query.dtype)
        rows.append((task, [(display_uint8(query), samples[1].key),
                            (display_uint8(passed), f"{float(psnr(passed, query)):.2f} dB"),
                            (error_image(passed, query, gain), f"x{gain:g}")]))
    columns = ["query = target", "pass-through output", f"error x{gain:g} (grey = 0)"]
    return comparison_grid(rows, columns, stem, title=f"{generalist.name}: pass-through, prompt (t, t)")["png"]


COLUMNS = ("model", "identity", "pass_through", "pass_through_no_offset", "floor_cost")


def nan_mean(values: list[float]) -> float:
    """Mean of the values that are not NaN; NaN when none is (a task without an identity score)."""
    kept = [value for value in values if not math.isnan(value)]
    return sum(kept) / len(kept) if kept else float("nan")


def column_means(rows: list[dict]) -> dict[str, float]:
    """Each score column's mean over rows (queries of a task, or tasks), NaNs left out."""
    return {name: nan_mean([row[name] for row in rows]) for name in COLUMNS}


def probe(generalist, samples: list) -> dict[str, float]:
    """Mean model, identity and pass-through PSNR over the queries samples[1:] with samples[0] as prompt."""
    return column_means(probe_queries(generalist, samples))


def parse_levels(parser, option: str, text: str) -> list[int]:
    """Comma-separated 0-255 levels of ``option`` (empty: none); anything else is a usage error."""
    try:
        levels = [int(word) for word in text.split(",")] if text else []
    except ValueError:
        parser.error(f"{option} {text!r}: expected comma-separated integers in 0..255")
    if any(not 0 <= level <= 255 for level in levels):
        parser.error(f"{option} {text!r}: levels must be in 0..255")
    return levels


def print_level_table(by_task: dict[str, dict[int, float]], levels: list[int], heading: str, number: str) -> None:
    """Print a Markdown table of per-level figures: a row per task and a mean row, one column per level
    titled ``heading.format(level)``, each figure formatted with ``number``."""
    print("\n| task | " + " | ".join(heading.format(level) for level in levels) + " |\n|---|" + "---|" * len(levels))
    for task, values in by_task.items():
        print(f"| {task} | " + " | ".join(f"{values[level]:{number}}" for level in levels) + " |")
    print("| mean | " + " | ".join(f"{nan_mean([values[level] for values in by_task.values()]):{number}}"
                                   for level in levels) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="model.safetensors written by llvbench, or the folder holding it")
    parser.add_argument("--shards", required=True, help="shard root (the folder holding manifest.json)")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help=f"comma-separated (default {DEFAULT_TASKS})")
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--per-query", action="store_true",
                        help="also print each query's scores and brightness (a dark photo brightened shows here)")
    parser.add_argument("--flat-levels", default="",
                        help="comma-separated 0-255 levels, e.g. 0,2,8,255: also print the pass-through error inside "
                             "a flat block at each level (the left half of each query; exact black is singular "
                             "for GenLV's LayerNorm)")
    parser.add_argument("--flat-prompts", default="",
                        help="comma-separated 0-255 levels, e.g. 16,50,128,200: also print the pass-through PSNR "
                             "under a uniform grey prompt pair (v, v) at each level")
    parser.add_argument("--error-map", default="", metavar="STEM",
                        help="also draw STEM.png: each task's first query, its pass-through output and the "
                             "error amplified 8x around mid-grey")
    args = parser.parse_args(argv)
    if args.queries < 1:
        parser.error("--queries must be >= 1")
    levels = parse_levels(parser, "--flat-levels", args.flat_levels)
    prompt_levels = parse_levels(parser, "--flat-prompts", args.flat_prompts)

    import torch

    from bench.builtins import CheckpointGeneralist
    from bench.protocol import BadOutput

    torch.set_num_threads(args.threads)
    try:
        generalist = CheckpointGeneralist(args.checkpoint, device=args.device)
        samples = {task: task_samples(Path(args.shards), args.split, task, args.queries + 1)
                   for task in args.tasks.split(",")}
        per_query = {task: probe_queries(generalist, pairs) for task, pairs in samples.items()}
        flat = {task: flat_block_errors(generalist, pairs, levels) for task, pairs in samples.items()} \
            if levels else {}
        flat_prompts = {task: flat_prompt_passthrough(generalist, pairs, prompt_levels)
                        for task, pairs in samples.items()} if prompt_levels else {}
        drawn = error_map(generalist, samples, args.error_map) if args.error_map else None
    except (FileNotFoundError, KeyError, ValueError, BadOutput) as err:  # CheckpointError is a ValueError
        # a KeyError's str() is its message in quotes (an unknown task): print the message itself
        message = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else err
        print(f"passthrough_probe: {message}", file=sys.stderr)
        return 2
    rows = {task: column_means(queries) for task, queries in per_query.items()}
    print("| task | model | identity | pass-through | pass-through, colour offset removed | floor cost |\n"
          "|---|---|---|---|---|---|")
    for task, row in rows.items():
        print(f"| {task} | " + " | ".join(f"{row[name]:.2f}" for name in COLUMNS) + " |")
    means = column_means(list(rows.values()))  # a task without identity (SDR -> HDR) is left out of its mean
    print("| mean | " + " | ".join(f"{means[name]:.2f}" for name in COLUMNS) + " |")
    if args.per_query:
        print("\n| query | brightness | model | identity | pass-through | pass-through brightness |\n"
              "|---|---|---|---|---|---|")
        for queries in per_query.values():
            for row in queries:
                print(f"| {row['key']} | {row['brightness']:.2f} | {row['model']:.2f} | {row['identity']:.2f} | "
                      f"{row['pass_through']:.2f} | {row['pass_through_brightness']:.2f} |")
    if flat:
        print_level_table(flat, levels, "error in a flat {} block", ".1f")
    if flat_prompts:
        print_level_table(flat_prompts, prompt_levels, "pass-through, flat {} prompt", ".2f")
    if drawn is not None:
        print(f"\nerror map: {drawn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
