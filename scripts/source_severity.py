"""How hard each task's degradation is on each image source: identity PSNR (input against target).

    python scripts/source_severity.py                                   # photos against plain dead leaves
    python scripts/source_severity.py --sources photos,deadleaves:tint=0.25,deadleaves:tint=0.25,blur=0.8,rmin=0.04
    python scripts/source_severity.py --tasks jpeg,gaussian_blur --images 96 --json out/severity.json

A restoration model learns the corrections its training pairs need. If the same degradation
costs the training images much more than the test photos (sharp procedural edges against
band-limited photographs), it learns corrections far stronger than a photo needs, and on a mild
photo degradation it loses to leaving the image alone. This prints, per source and task, the mean
identity PSNR over ``--images`` images of that source (image i drawn with rng [seed, i], the task
with rng [seed, i, 1], so every source sees the same task draws), the gap to the first source
(photos by default), and the mean absolute luma gradient of the clean images. Sources are
separated by spaces or by a comma followed by a source kind; see README "Image sources".
"""
from __future__ import annotations

import argparse
import re
import sys

import numpy as np

DEFAULT_SOURCES = "photos deadleaves"
DEFAULT_TASKS = "jpeg,ringing,rl,gaussian_blur,motion_deblur,local_laplacian,gaussian_noise,poisson_noise"


def split_sources(text: str) -> list[str]:
    """Source specs from one argument: split at spaces, and at a comma that starts a new source kind
    (``photos,deadleaves:tint=0.25,blur=0.8`` is two specs: the second's options keep their commas)."""
    from taskgen.sources import source_kinds

    kinds = "|".join(re.escape(kind) for kind in sorted(source_kinds(), key=len, reverse=True))
    specs = []
    for word in text.split():
        specs += [part for part in re.split(rf",(?=(?:{kinds})(?::|,|$))", word) if part]
    return specs


def mean_gradient(image: np.ndarray) -> float:
    """Mean absolute horizontal plus vertical luma step of a uint8 RGB image, in 8-bit levels."""
    luma = image.astype(np.float64).mean(axis=2)
    return float(np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean())


def severity(source_spec: str, task_names: list[str], images: int, size: int, seed: int) -> dict:
    """``{"identity_psnr": {task: mean dB}, "gradient": mean}`` of one source over ``images`` images."""
    import taskgen
    from bench.metrics import psnr
    from taskgen.sources import build_source

    source = build_source(source_spec)
    specs = [taskgen.get_task(name) for name in task_names]
    scores = {spec.name: [] for spec in specs}
    gradients = []
    for index in range(images):
        image = source.sample(index, size, np.random.default_rng([seed, index])).image
        gradients.append(mean_gradient(image))
        for spec in specs:
            degraded, target, _ = spec.fn(image, np.random.default_rng([seed, index, 1]))
            scores[spec.name].append(float(psnr(degraded, target)))
    return {"identity_psnr": {name: float(np.mean(values)) for name, values in scores.items()},
            "gradient": float(np.mean(gradients))}


def check_tasks(task_names: list[str]) -> None:
    """Refuse, by name, a task this table cannot score: unknown, an HDR side, or a non-PSNR metric."""
    import taskgen

    for name in task_names:
        try:
            spec = taskgen.get_task(name)
        except taskgen.UnknownTaskError as err:  # its message lists the known tasks
            raise SystemExit(f"source_severity: {err}") from None
        if spec.hdr or spec.metric != "psnr":
            raise SystemExit(f"source_severity: task {name!r} is not an 8-bit PSNR task (metric {spec.metric}, "
                             f"hdr {spec.hdr or 'no'}); pick restoration or enhancement tasks")


def format_table(results: dict[str, dict], task_names: list[str]) -> str:
    """Markdown: one row per source, identity PSNR per task with its gap to the first source."""
    reference = next(iter(results.values()))
    lines = ["| source | " + " | ".join(task_names) + " | mean gap | mean \\|gradient\\| |",
             "|---|" + "---|" * (len(task_names) + 2)]
    for spec, result in results.items():
        cells, gaps = [], []
        for task in task_names:
            value = result["identity_psnr"][task]
            gap = value - reference["identity_psnr"][task]
            gaps.append(gap)
            cells.append(f"{value:.2f}" if result is reference else f"{value:.2f} ({gap:+.2f})")
        mean_gap = "" if result is reference else f"{np.mean(gaps):+.2f}"
        lines.append(f"| `{spec}` | " + " | ".join(cells) + f" | {mean_gap} | {result['gradient']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default=DEFAULT_SOURCES, help=f"source specs (default: {DEFAULT_SOURCES!r}); "
                        "the first is the reference the gaps are measured from")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help="comma list of 8-bit PSNR tasks")
    parser.add_argument("--images", type=int, default=48, help="images per source (default 48)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128, the profiles' size)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the figures here (atomically)")
    args = parser.parse_args(argv)
    if args.images < 1 or args.size < 16:
        parser.error("--images must be at least 1 and --size at least 16")
    task_names = [name for name in args.tasks.split(",") if name]
    check_tasks(task_names)
    sources = split_sources(args.sources)
    if not sources:
        parser.error("--sources is empty")

    from tqdm import tqdm

    from taskgen.sources import SourceError

    results = {}
    for spec in tqdm(sources, desc="sources", unit="source", file=sys.stderr):
        try:
            results[spec] = severity(spec, task_names, args.images, args.size, args.seed)
        except SourceError as err:
            raise SystemExit(f"source_severity: {err}") from None
    print(f"Identity PSNR (dB) per task, {args.images} images of {args.size} px per source, seed {args.seed}; "
          f"in brackets the gap to `{sources[0]}` (negative: the degradation costs this source more).\n")
    print(format_table(results, task_names))
    figures = {"images": args.images, "size": args.size, "seed": args.seed, "tasks": task_names, "sources": results}
    if args.json:
        from taskgen.atomic import atomic_write_json

        atomic_write_json(args.json, figures, indent=1)
        print(f"\nwrote {args.json}")
    return figures


if __name__ == "__main__":
    main()
