"""`llvbench apply --model SPEC [--checkpoint PATH] --prompt-input A --prompt-target B INPUT... --out DIR`."""
from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(p) -> None:
    from bench.apply import DEFAULT_OVERLAP, DEFAULT_TILE

    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="built-in name, entry point, 'package.module:attr', checkpoint folder, or an architecture "
                        "with --checkpoint (see llvbench models)")
    p.add_argument("--checkpoint", help="checkpoint folder or file (passed as checkpoint=PATH)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="option passed to the generalist's factory (JSON values)")
    p.add_argument("--prompt-input", action="append", required=True, metavar="A.png",
                   help="prompt input image; repeat with --prompt-target for several pairs")
    p.add_argument("--prompt-target", action="append", required=True, metavar="B.png",
                   help="prompt target image (the i-th pairs with the i-th --prompt-input)")
    p.add_argument("--out", required=True,
                   help="output folder (RGB PNG, input's relative name, size and bit depth; alpha is not kept)")
    p.add_argument("--device", help="cpu, cuda or auto (default: the model's own default)")
    p.add_argument("--batch", type=int, default=4, help="tiles (or resized images) per forward pass (default 4)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"model size: tile side, prompt side and the --resize target (default {DEFAULT_TILE})")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP,
                   help=f"minimum tile overlap in pixels, blended with raised-cosine weights (default {DEFAULT_OVERLAP})")
    p.add_argument("--resize", action="store_true",
                   help="official behaviour: resize everything to TILE² and the output back (for comparisons)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from tqdm import tqdm

    from bench import load_generalist
    from bench.apply import (Applier, ApplyConfig, apply_to_files, check_outputs, collect_jobs, colour_note,
                             read_prompt_pairs)
    from pipelines.commands import check_output_folder
    from pipelines.commands.eval import model_options

    # Everything the command line alone decides is checked before the model is loaded.
    config = ApplyConfig(tile=args.tile, overlap=args.overlap, batch=args.batch, resize=args.resize)
    check_output_folder(args.out, "--out")
    jobs = collect_jobs(args.inputs)
    check_outputs(jobs, args.out, [*args.prompt_input, *args.prompt_target])
    generalist = load_generalist(args.model, **model_options(args))
    prompts = read_prompt_pairs(args.prompt_input, args.prompt_target, args.tile)
    for note in prompts.notes:
        print(f"note: {note}", file=sys.stderr)
    applier = Applier(generalist, prompts, config)
    total = len(jobs)
    with tqdm(total=total, unit="image", desc="apply", file=sys.stderr, disable=args.no_progress,
              dynamic_ncols=True) as bar:
        summary = apply_to_files(applier, args.inputs, args.out, on_image=lambda job: bar.update(1))
    # One note per run for what the RGB model cannot keep (counted on the inputs actually written).
    written = set(summary.written)
    note = colour_note(job.source for job in jobs if Path(args.out) / job.output in written)
    if note:
        summary.notes.append(note)
        print(f"note: {note}", file=sys.stderr)
    mode = f"resized to {args.tile}²" if args.resize else f"tiles {args.tile}² overlapping >= {args.overlap} px"
    print(f"{generalist.name}: {len(summary.written)} written to {args.out} ({mode}; {prompts.combine})")
    if summary.skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in summary.skipped.most_common())
        print(f"skipped {sum(summary.skipped.values())} unreadable: {reasons}", file=sys.stderr)
    return 0 if summary.written or not total else 1
