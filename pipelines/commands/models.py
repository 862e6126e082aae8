"""`llvbench models [--json]`: every generalist the bench can load, with parameter counts."""
from __future__ import annotations

import json
from pathlib import Path

DEFAULT_CHECKPOINTS = "checkpoints"


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    p.add_argument("--no-params", action="store_true", help="skip the parameter counts (no torch import)")
    p.add_argument("--checkpoints", help=f"folder scanned for local checkpoints (default: {DEFAULT_CHECKPOINTS} "
                                         "if it exists)")


def checked_checkpoints(entries: list) -> list:
    """Checkpoint rows whose model.safetensors is unreadable (zero bytes, truncated, another format)
    are kept, but say so instead of looking usable."""
    from dataclasses import replace

    from bench.checkpoint import WEIGHTS_NAME, CheckpointError, read_safetensors_header

    out = []
    for e in entries:
        if e.kind == "checkpoint":
            try:
                read_safetensors_header(Path(e.weights) / WEIGHTS_NAME)
            except CheckpointError as err:
                e = replace(e, description=f"UNREADABLE: {err}", params=None, usage="")
        out.append(e)
    return out


def run(args) -> int:
    from bench.catalog import catalog, catalog_rows, format_catalog

    checkpoints = args.checkpoints
    if checkpoints is None:
        checkpoints = DEFAULT_CHECKPOINTS  # may be absent: then no local checkpoints are listed
    elif not Path(checkpoints).is_dir():
        what = "a file, not a folder" if Path(checkpoints).exists() else "no such folder"
        raise ValueError(f"--checkpoints {checkpoints}: {what}")
    entries = checked_checkpoints(catalog(with_params=not args.no_params, checkpoints=checkpoints))
    if args.json:
        print(json.dumps(catalog_rows(entries), indent=2))
    else:
        print(format_catalog(entries), end="")
    return 0
