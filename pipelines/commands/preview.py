"""`llvbench preview [--tasks A,B] [--size 256] [--seed 0] [--photo NAME] --out sheet.png`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import taskgen
from taskgen.imageio import write_image_atomic
from taskgen.preview import contact_sheet, preview_triples
from taskgen.sources import PHOTO_LOADERS, DeadLeavesSource, PhotoSource

from pipelines.cpu_paths import apply_portable_opencv


def add_arguments(p) -> None:
    p.add_argument("--tasks", default="all", help="comma list of task names or categories (default: all)")
    p.add_argument("--size", type=int, default=256, help="crop size in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photo", default="astronaut", help=f"packaged photo ({', '.join(PHOTO_LOADERS)}) or 'deadleaves'")
    p.add_argument("--per-row", type=int, default=2, help="tasks per row of the sheet")
    p.add_argument("--out", required=True, help="PNG file to write")


MIN_SIZE = 8  # the image contract's smallest side (taskgen.images)


def check_arguments(args) -> None:
    """Refuse bad options up front, each error naming its option."""
    for option, value, least in (("--size", args.size, MIN_SIZE), ("--per-row", args.per_row, 1),
                                 ("--seed", args.seed, 0)):
        if value < least:
            raise ValueError(f"{option} must be >= {least}, got {value}")
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give the PNG file to write")
    if Path(args.out).suffix.lower() != ".png":
        raise ValueError(f"--out {args.out}: the sheet is a PNG; give a name ending in .png")
    if args.photo != "deadleaves" and args.photo not in PHOTO_LOADERS:
        raise ValueError(f"--photo {args.photo!r} is neither a packaged photo ({', '.join(PHOTO_LOADERS)}) "
                         "nor 'deadleaves'")


def run(args) -> int:
    check_arguments(args)
    apply_portable_opencv()  # the pairs as synthesis writes them (pipelines.cpu_paths)
    specs = taskgen.resolve_tasks(args.tasks)
    if not specs:
        raise ValueError(f"--tasks {args.tasks!r} names no task; give task names or categories, or 'all'")
    if args.photo == "deadleaves":
        source = DeadLeavesSource().sample(0, args.size, np.random.default_rng(args.seed))
    else:
        source = PhotoSource((args.photo,)).sample(0, args.size, np.random.default_rng(args.seed))
    triples = preview_triples(specs, source, args.seed)
    tasks = f"{len(specs)} task" + ("" if len(specs) == 1 else "s")
    sheet = contact_sheet(triples, args.size, args.per_row,
                          title=f"llvbench preview: {tasks} on {source.source_id}, seed {args.seed}")
    write_image_atomic(args.out, sheet)
    print(f"wrote {args.out} ({tasks}, {sheet.shape[1]}x{sheet.shape[0]})")
    return 0
