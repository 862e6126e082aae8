"""`llvbench models [--json]`: every generalist the bench can load, with parameter counts, where
released weights download from, and the --model/--checkpoint/-o to pass (``usage``)."""
from __future__ import annotations

import json
from pathlib import Path

DEFAULT_CHECKPOINTS = "checkpoints"


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    p.add_argument("--no-params", action="store_true", help="skip the parameter counts (no torch import)")
    p.add_argument("--checkpoints", help=f"folder scanned for local checkpoints (default: {DEFAULT_CHECKPOINTS} "
                                         "if it exists); a folder with config.json whose config or weights "
                                         "cannot be read is listed as UNREADABLE with the reason")


def run(args) -> int:
    from bench.catalog import catalog, catalog_rows, format_catalog

    checkpoints = args.checkpoints
    if checkpoints is None:
        checkpoints = DEFAULT_CHECKPOINTS  # may be absent: then no local checkpoints are listed
    elif not Path(checkpoints).is_dir():
        what = "a file, not a folder" if Path(checkpoints).exists() else "no such folder"
        raise ValueError(f"--checkpoints {checkpoints}: {what}")
    entries = catalog(with_params=not args.no_params, checkpoints=checkpoints)
    if args.json:
        print(json.dumps(catalog_rows(entries), indent=2))
    else:
        print(format_catalog(entries), end="")
    return 0
