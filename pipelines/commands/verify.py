"""`llvbench verify DIR`: check every shard against the manifest; exit 1 on any problem."""
from __future__ import annotations

import json


def add_arguments(p) -> None:
    p.add_argument("dir", help="shards directory holding manifest.json")
    p.add_argument("--json", action="store_true", help="machine-readable report")


def run(args) -> int:
    from taskgen.shards import verify

    report = verify(args.dir)
    if args.json:
        print(json.dumps({"root": report.root, "ok": len(report.ok), "corrupt": dict(report.corrupt),
                          "missing": report.missing, "extra": report.extra, "software": report.software,
                          "passed": report.passed}, indent=2))
        return 0 if report.passed else 1
    for path, reason in report.corrupt:
        print(f"CORRUPT  {path}: {reason}")
    for path in report.missing:
        print(f"MISSING  {path}")
    for path in report.extra:
        print(f"EXTRA    {path}: not listed in the manifest")
    # What made the bytes (docs/shards.md): a fresh synthesis gives the same ones only with the same.
    for line, count in sorted(report.software.items(), key=lambda item: -item[1]):
        print(f"made with {line}: {count} shard(s)")
    if len(report.software) > 1:
        print(f"note: the shards were made with {len(report.software)} different library versions or CPU "
              f"kernels; a fresh `llvbench synth` gives the bytes of one of them at most")
    print(f"{report.root}: {len(report.ok)} shard(s) ok, {len(report.corrupt)} corrupt, "
          f"{len(report.missing)} missing, {len(report.extra)} extra")
    return 0 if report.passed else 1
