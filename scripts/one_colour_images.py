"""Write one-colour training images, like a sky or a studio backdrop, to a folder for a ``folder:`` source.

    python scripts/one_colour_images.py /work/mono --count 3000
    printf 'synth:\\n  sources: {train: "deadleaves:tint=0.25+folder:/work/mono", test: photos, unseen: photos}\\n' > mix.yaml
    llvbench synth --params mix.yaml ...

Each image is the luminance of a dead-leaves image (``--spec``), its contrast scaled by
c ~ U(0.2, 1), times one colour: hue uniform, saturation U(0, 0.8), mean level U(15, 200) of 255.
Dead leaves hold many colours whatever their cast, and a genlv-s trained only on them fails on
dark one-colour prompts (results/genlv-s-shrink-cpu/README.md). Image i is a function of
``--seed`` and i alone, drawn in index order from one generator, so a rerun writes the same pixels.
Files are written atomically (``NNNNN.png``); existing ones are overwritten.
"""
from __future__ import annotations

import argparse
import colorsys
import sys
from pathlib import Path

import numpy as np

DEFAULT_SPEC = "deadleaves:tint=0.25,exposure=0.6,levels=0.1,blur=1,rmin=0.05"


def one_colour(image: np.ndarray, colour: np.ndarray, contrast: float) -> np.ndarray:
    """uint8 RGB H×W×3 -> uint8 RGB: the image's luminance, its contrast scaled, times one RGB colour (0–255)."""
    lum = image.astype(float).mean(2, keepdims=True)
    lum = 1 + contrast * (lum / max(lum.mean(), 1.0) - 1)
    return np.clip(lum * colour, 0, 255).round().astype(np.uint8)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """One RGB colour (floats, mean level in [15, 200]): hue uniform, saturation U(0, 0.8)."""
    chroma = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.8), 1.0))
    return chroma / chroma.mean() * rng.uniform(15, 200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write NNNNN.png into")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--spec", default=DEFAULT_SPEC, help="dead-leaves source whose luminance is used")
    parser.add_argument("--seed", type=int, default=32)
    args = parser.parse_args(argv)
    if args.count < 1 or args.size < 8:
        parser.error(f"--count must be >= 1 and --size >= 8, got {args.count} and {args.size}")

    from tqdm import tqdm

    from taskgen.imageio import write_image_atomic
    from taskgen.sources import SourceError, build_source

    try:
        source = build_source(args.spec)
    except SourceError as err:
        parser.error(f"--spec {args.spec}: {err}")
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in tqdm(range(args.count), desc="one-colour images", unit="image"):
        image = source.sample(i, args.size, rng).image
        contrast = rng.uniform(0.2, 1.0)
        write_image_atomic(args.out / f"{i:05d}.png", one_colour(image, random_colour(rng), contrast))
    print(f"wrote {args.count} images of {args.size} px to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
