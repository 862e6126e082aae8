"""`llvbench tasks [--json] [--category C]`.

Tasks from outside taskgen (installed plug-ins, ``register_task`` elsewhere) are listed with the
built-ins, as ``tasks: all`` includes them; the table's last line names them and their packages, and
each JSON row has ``package``."""
from __future__ import annotations

import json
import textwrap

import taskgen


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (as in the README)")
    p.add_argument("--category", choices=["restoration", "enhancement", "edge", "stylization"])


def run(args) -> int:
    specs = taskgen.list_tasks(args.category)
    if args.json:
        print(json.dumps([{**s.as_row(), "package": taskgen.task_package(s)} for s in specs], indent=2))
        return 0
    if args.markdown:
        print("| task | category | metric | splits | target domain | recipe | departs from the paper |")
        print("|---|---|---|---|---|---|---|")
        for s in specs:
            cells = [s.name, s.category, s.metric, "+".join(s.splits), s.target_domain, s.description,
                     s.departs_from_paper or "—"]
            print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        return 0
    header = f"{'task':<20} {'category':<12} {'metric':<6} {'splits':<11} {'target domain':<26} recipe"
    print(header)
    print("-" * len(header))
    for s in specs:
        recipe = textwrap.shorten(s.description, width=90, placeholder="...")
        splits = "+".join(s.splits)
        print(f"{s.name:<20} {s.category:<12} {s.metric:<6} {splits:<11} {s.target_domain:<26} {recipe}")
    print(f"\n{len(specs)} tasks")
    third_party = taskgen.describe_third_party(specs)
    if third_party:
        print(f"third-party tasks included: {third_party}")
    return 0
