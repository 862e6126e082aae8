"""`llvbench models [--json]`: every generalist the bench can load, with parameter counts."""
from __future__ import annotations

import json


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    p.add_argument("--no-params", action="store_true", help="skip the parameter counts (no torch import)")
    p.add_argument("--checkpoints", default="checkpoints", help="folder scanned for local checkpoints")


def run(args) -> int:
    from bench.catalog import catalog, catalog_rows, format_catalog

    entries = catalog(with_params=not args.no_params, checkpoints=args.checkpoints)
    if args.json:
        print(json.dumps(catalog_rows(entries), indent=2))
    else:
        print(format_catalog(entries), end="")
    return 0
