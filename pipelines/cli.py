"""The `llvbench` command line. Each subcommand lives in ``pipelines/commands/<name>.py`` with
``add_parser(subparsers)`` and ``run(args) -> int``; modules are imported only when needed."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from pipelines.cpu_paths import use_portable_cpu_paths
from pipelines.memory import reuse_freed_memory

# Order shown in --help. Adding a command = adding its module and its name here.
COMMANDS = {
    "tasks": "list the registered tasks (name, category, target domain, metric, recipe)",
    "preview": "write a labelled contact sheet: source | input | target per task",
    "synth": "synthesise the task datasets into deterministic WebDataset shards (Dask)",
    "verify": "check every shard against the manifest (corrupt, missing, extra)",
    "eval": "evaluate generalists on the test split (tracks: main, robustness, mismatch, efficiency)",
    "leaderboard": "aggregate eval results into leaderboards (parquet, Markdown, LaTeX, metrics.json)",
    "report": "write the HTML + Markdown report (paper tables, charts, visual comparisons) from eval results",
    "train": "train a model (GenLV) on the train shards; CPU or GPU, torchrun for several GPUs",
    "apply": "apply a generalist to your own images with a prompt pair (full-resolution tiles or --resize)",
    "models": "list every generalist the bench can load (built-ins, entry points, architectures) with sizes",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llvbench", description=(
        "Benchmark suite for visual-prompt low-level vision generalists (GenLV / VPIP)."))
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"pipelines.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


# Commands that make pixels: their bytes must not depend on the host's SIMD kernels (pipelines.cpu_paths).
PORTABLE_KERNEL_COMMANDS = ("synth", "preview")


def command_name(argv: list[str]) -> str | None:
    """The subcommand of an ``llvbench`` argument list (the first word that is not an option)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if command_name(argv) in PORTABLE_KERNEL_COMMANDS:
        use_portable_cpu_paths()  # before build_parser imports numpy: its kernels are chosen at import
    from pipelines.params import STAGE_ERRORS  # not above: it imports numpy (through bench)

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    reuse_freed_memory()  # big CPU tensors without page faults on every allocation (pipelines.memory)
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that left (`| head`) surfaces here, not at exit
        return code
    except BrokenPipeError:
        # The reader of our output closed the pipe: stop quietly, as a SIGPIPE'd command would, and
        # point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM where a command turns it into one
        print(f"llvbench {args.command}: interrupted" + (f": {err}" if str(err) else ""), file=sys.stderr)
        return getattr(err, "exit_code", 130)
    except STAGE_ERRORS as err:
        # Library errors already name the task/file/model, and an OSError its path (an --out under a
        # file, a full disk): show them without a traceback.
        if args.verbose:
            raise
        print(f"llvbench {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
