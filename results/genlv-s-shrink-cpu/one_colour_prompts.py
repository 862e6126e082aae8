"""Which prompt images break genlv-s like the dark blue sky does? (the check behind README.md here)

Each task's test queries 0-15 (the packaged photos) are answered with prompts made by the task's own
recipe from a dead-leaves image (run 28's training spec), once per prompt kind:
- ``tint S``: dead leaves with a colour cast of strength S (many colours, one cast);
- ``one colour``: the dead leaves' luminance (its contrast scaled) times one colour, like a sky.
Prints each kind's mean margin over identity, its worst query and how many queries lose over 3 dB.

Run from the repository root:
    python results/genlv-s-shrink-cpu/one_colour_prompts.py checkpoints/genlv-s --shards data/shards
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SPEC = "deadleaves:tint={tint},exposure=0.6,levels=0.1,blur=1,rmin=0.05"
SKY_QUERY = 9  # the query whose prompt (the next pair) is the dark blue sky in jpeg and ringing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--shards", default="data/shards")
    parser.add_argument("--tasks", default="jpeg,ringing")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sys.path[:0] = [str(REPO), str(REPO / "scripts")]
    import torch
    from bench.builtins import CheckpointGeneralist
    from bench.metrics import psnr
    from passthrough_probe import predict_checked, task_samples
    from one_colour_images import one_colour
    from taskgen import get_task
    from taskgen.sources import build_source

    torch.set_num_threads(args.threads)
    model = CheckpointGeneralist(args.checkpoint, device="cpu")
    for task in args.tasks.split(","):
        queries = task_samples(Path(args.shards), "test", task, 16)
        sky = queries[SKY_QUERY + 1].input.reshape(-1, 3).mean(0)
        kinds = [(f"tint {t}", t, None, 1.0) for t in (0.25, 0.6, 1.0)]
        kinds += [("one colour: the sky's", 0.25, sky, 1.0), ("one colour: the sky's, contrast 0.3", 0.25, sky, 0.3),
                  ("one colour: grey 52", 0.25, np.full(3, 52.0), 1.0),
                  ("one colour: grey 140", 0.25, np.full(3, 140.0), 1.0)]
        recipe = get_task(task).fn
        for label, tint, colour, contrast in kinds:
            source = build_source(SPEC.format(tint=tint))
            margins = []
            for i, query in enumerate(queries):
                rng = np.random.default_rng(1000 + i)
                image = source.sample(i, 128, rng).image
                if colour is not None:
                    image = one_colour(image, colour, contrast)
                prompt_input, prompt_target = recipe(image, rng)[:2]
                out = predict_checked(model, query.input, prompt_input, prompt_target, query.input.dtype)
                margins.append(float(psnr(out, query.target)) - float(psnr(query.input, query.target)))
            m = np.array(margins)
            print(f"{task:8s} {label:38s} mean margin {m.mean():+.2f} dB, worst {m.min():+.2f} dB, "
                  f"below -3 dB: {(m < -3).sum()}/{len(m)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
