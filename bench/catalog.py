"""What ``llvbench models`` lists: every generalist the bench can load and where weights come from.

Four kinds of rows: built-in generalists, installed entry points (group ``llvbench.generalists``),
the architectures of ``model.registry`` (usable with ``--checkpoint``; parameter counts are
computed on torch's meta device, so no memory is allocated and no weights are read; official
releases are named with their Hugging Face download link), and checkpoint folders found locally.
Each row's ``usage`` is the ``--model``/``--checkpoint``/``-o`` part of a working ``llvbench eval``
or ``apply`` command; ``usage_authors`` is the route for a file written by the authors' code at a
config without an official release (PromptGIP, Painter and PromptIR families: their adapter).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

# /resolve/ is the file itself (a download); /blob/ would be its web page.
HF_URL = "https://huggingface.co/{repo}/resolve/main/{path}"
# Placeholders in usage lines: an llvbench checkpoint (training output or save_model file), a torch file.
LLVBENCH_CHECKPOINT = "FOLDER|FILE.safetensors"
TORCH_FILE = "FILE.pth"


@dataclass(frozen=True)
class CatalogEntry:
    kind: str          # builtin | entry-point | architecture | checkpoint
    name: str
    description: str
    params: int | None = None
    weights: str = ""  # where usable weights come from
    usage: str = ""    # the --model/--checkpoint/-o to pass
    usage_authors: str = ""  # for a file written by the authors' code, when that differs from usage


def count_parameters(arch: str, **overrides) -> int:
    """Parameter count of ``model.build(arch, **overrides)``, built on the meta device (no memory, no weights)."""
    import torch

    from model import build

    with torch.device("meta"):
        network = build(arch, **overrides)
    return int(sum(p.numel() for p in network.parameters()))


def official_weights_text(official, name: str = "NAME") -> str:
    """Where an architecture's released weights are, or why there are none."""
    if official is None:
        return f"none released (train it: llvbench train --arch {name})"
    if not official.checkpoint:
        return f"none released by the authors ({official.hf_repo or 'their release'} has no checkpoint for this size)"
    colour = f" ({official.colour_order.upper()}-trained)"
    if not official.hf_repo:  # e.g. a release on a file-sharing service: name the file, not a made-up URL
        return f"authors' release outside Hugging Face, file {official.checkpoint}{colour}"
    return HF_URL.format(repo=official.hf_repo, path=official.checkpoint) + colour


def safe_parameter_count(arch: str, **overrides) -> int | None:
    """``count_parameters``, or None (logged) when the architecture cannot be built: one broken
    plug-in architecture must not hide the rest of the listing."""
    try:
        return count_parameters(arch, **overrides)
    except Exception as err:  # noqa: BLE001 - third-party factories raise anything
        log.warning("cannot count the parameters of %s: %s: %s", arch, type(err).__name__, err)
        return None


# Built-ins without a network of their own; the others (checkpoint, official-weight adapters)
# have the parameters of whatever they load, listed under the architectures.
PARAMETER_FREE = ("identity", "prompt-target")


def architecture_usage(name: str) -> tuple[str, str]:
    """(usage, usage_authors) for architecture ``name``: what to pass to ``llvbench eval``/``apply``.

    An architecture with an official release reads the authors' file (named when known) with
    ``--model NAME`` (for PromptGIP, Painter and PromptIR that is their adapter). Any other reads
    only llvbench checkpoints; a config of an adapter's family also reads a file written by the
    authors' code through that adapter with ``-o arch=NAME`` (e.g. the fixtures' configs)."""
    from model import get_architecture

    from .official import adapter_for

    official = get_architecture(name).official
    if official is not None:
        file = Path(official.checkpoint).name if official.checkpoint else TORCH_FILE
        return f"--model {name} --checkpoint {file}", ""
    adapter = adapter_for(name)
    authors = f"--model {adapter} -o arch={name} --checkpoint {TORCH_FILE}" if adapter else ""
    return f"--model {name} --checkpoint {LLVBENCH_CHECKPOINT}", authors


def builtin_usage(name: str) -> str:
    """What to pass for built-in ``name``: nothing, an llvbench checkpoint, or its architecture's file."""
    from model import list_architectures

    if name in PARAMETER_FREE:
        return f"--model {name}"
    if name in list_architectures():  # the official-weight adapters carry their architecture's name
        return architecture_usage(name)[0]
    return f"--model {name} --checkpoint {LLVBENCH_CHECKPOINT}"


def builtin_entries() -> list[CatalogEntry]:
    from .registry import _builtins

    entries = []
    for b in _builtins().values():
        needs_weights = b.name not in PARAMETER_FREE
        entries.append(CatalogEntry("builtin", b.name, b.description, params=None if needs_weights else 0,
                                    usage=builtin_usage(b.name)))
    return entries


def entry_point_entries() -> list[CatalogEntry]:
    """Installed ``llvbench.generalists`` entry points; one named like a built-in is marked
    SHADOWED, with the import path that reaches it (``--model NAME`` loads the built-in)."""
    from .registry import ENTRY_POINT_GROUP, shadowed_entry_points

    shadowed = shadowed_entry_points()
    entries = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        where = f"{ep.value} (package {ep.dist.name if ep.dist else '?'})"
        if ep.name in shadowed:
            entries.append(CatalogEntry("entry-point", ep.name, f"SHADOWED by the built-in {ep.name!r}: {where}",
                                        usage=f"--model {ep.value}"))
        else:
            entries.append(CatalogEntry("entry-point", ep.name, where, usage=f"--model {ep.name}"))
    return entries


def architecture_entries(with_params: bool = True) -> list[CatalogEntry]:
    from model import get_architecture, list_architectures

    entries = []
    for name in list_architectures():
        spec = get_architecture(name)
        usage, usage_authors = architecture_usage(name)
        entries.append(CatalogEntry("architecture", name, spec.description,
                                    params=safe_parameter_count(name) if with_params else None,
                                    weights=official_weights_text(spec.official, name),
                                    usage=usage, usage_authors=usage_authors))
    return entries


def checkpoint_folder_problem(folder: Path) -> tuple[dict | None, str]:
    """(config, "") for a usable checkpoint folder, else (None, why). The folder holds a sound
    model.safetensors and either a config.json naming its architecture or, without one, the
    architecture in the safetensors metadata (what ``save_model`` writes); the config of the
    latter is ``{"arch", "overrides", "weights_only": True}``."""
    from .checkpoint import (CONFIG_NAME, WEIGHTS_NAME, CheckpointError, read_checkpoint_config,
                             resolve_checkpoint)

    has_config = (folder / CONFIG_NAME).is_file()
    if has_config and not (folder / WEIGHTS_NAME).is_file():
        return None, f"{folder}: {CONFIG_NAME} but no {WEIGHTS_NAME} (training did not finish, or the weights were moved)"
    try:
        source = resolve_checkpoint(folder)  # checks the config, the header and where the arch comes from
        config = read_checkpoint_config(folder / CONFIG_NAME) if has_config else \
            {"arch": source.arch, "overrides": source.overrides, "weights_only": True}
    except CheckpointError as err:  # each names the file and says why
        return None, str(err)
    return config, ""


def checkpoint_entries(root: str | Path = "checkpoints", with_params: bool = True) -> list[CatalogEntry]:
    """Checkpoint folders directly under ``root`` (those with a config.json or a model.safetensors);
    one whose config or weights are missing or cannot be read is listed as ``UNREADABLE: why``
    rather than as usable."""
    from model import list_architectures

    from .checkpoint import CONFIG_NAME, WEIGHTS_NAME

    root = Path(root)
    if not root.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in root.iterdir()
                         if (p / CONFIG_NAME).is_file() or (p / WEIGHTS_NAME).is_file()):
        config, why = checkpoint_folder_problem(folder)
        if config is None:
            entries.append(CatalogEntry("checkpoint", folder.name, f"UNREADABLE: {why}", params=None,
                                        weights=str(folder), usage=""))
            continue
        step = config.get("step")
        description = f"architecture {config['arch']}" + (f", step {step}" if step is not None else "") + \
            (f" (no {CONFIG_NAME}: architecture from the weights' metadata)" if config.get("weights_only") else "")
        arch, overrides = config["arch"], config.get("overrides") or {}
        params = (safe_parameter_count(arch, **overrides) if with_params and arch in list_architectures() else None)
        entries.append(CatalogEntry("checkpoint", config.get("name") or folder.name, description, params=params,
                                    weights=str(folder), usage=f"--model checkpoint --checkpoint {folder}"))
    return entries


def catalog(with_params: bool = True, checkpoints: str | Path = "checkpoints") -> list[CatalogEntry]:
    """Every loadable generalist: built-ins, entry points, architectures, local checkpoints."""
    return (builtin_entries() + entry_point_entries() + architecture_entries(with_params)
            + checkpoint_entries(checkpoints, with_params))


def catalog_rows(entries: list[CatalogEntry]) -> list[dict]:
    return [asdict(e) for e in entries]


def format_params(count: int | None) -> str:
    """1234567 -> '1.23 M'; None -> '-'."""
    if count is None:
        return "-"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f} M"
    if count >= 1_000:
        return f"{count / 1e3:.1f} k"
    return str(count)


def format_catalog(entries: list[CatalogEntry]) -> str:
    """A plain-text listing grouped by kind."""
    titles = {"builtin": "built-in generalists", "entry-point": "entry points (llvbench.generalists)",
              "architecture": "architectures (need --checkpoint)", "checkpoint": "local checkpoints"}
    lines = []
    for kind, title in titles.items():
        group = [e for e in entries if e.kind == kind]
        lines.append(f"{title}:")
        if not group:
            lines.append("  (none)")
        for e in group:
            lines.append(f"  {e.name:<16} {format_params(e.params):>9}  {e.description}")
            if e.weights:
                lines.append(f"  {'':<16} {'':>9}  weights: {e.weights}")
            if e.usage:
                lines.append(f"  {'':<16} {'':>9}  usage: {e.usage}")
            if e.usage_authors:
                lines.append(f"  {'':<16} {'':>9}  a file from the authors' code: {e.usage_authors}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
