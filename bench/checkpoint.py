"""Where a checkpoint's weights are and which architecture they belong to.

Three layouts are accepted (reading and strict loading are ``model.checkpoints``'s job):

- a folder with ``config.json`` (``{"arch": NAME, "overrides": {...}}``, optionally ``"name"`` and
  ``"size_multiple"``) and ``model.safetensors``: what a training run leaves behind;
- a ``.safetensors`` file written by ``model.checkpoints.save_model`` (architecture and config in
  its metadata), or a folder holding only such a ``model.safetensors``;
- an official GenLV ``.pth`` release together with the architecture name (``--model genlv-huge
  --checkpoint checkpoint-22.pth``): loaded by ``model.checkpoints.load_official``, which wraps the
  BGR-trained network so that it takes and returns RGB. An architecture without an official
  release is refused here, with the command that reads the file (``official_file_refusal``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
OFFICIAL_SUFFIXES = (".pth", ".pt", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not name its architecture."""


@dataclass(frozen=True)
class CheckpointSource:
    weights: Path                  # the file holding the tensors
    arch: str                      # model.build name
    overrides: dict = field(default_factory=dict)
    official: bool = False         # an authors' .pth: load with model.checkpoints.load_official
    name: str = ""                 # label from config.json, if any
    size_multiple: int | None = None


def read_checkpoint_config(path: Path) -> dict:
    """A checkpoint folder's config.json: a JSON object with a string ``arch`` (CheckpointError naming it)."""
    try:
        config = json.loads(path.read_text())
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or not isinstance(config.get("arch"), str):
        raise CheckpointError(f"{path}: must be a JSON object with a string 'arch'")
    if not isinstance(config.get("overrides") or {}, dict):
        raise CheckpointError(f"{path}: 'overrides' must be a JSON object (network options by name), "
                              f"not {config['overrides']!r}")
    multiple = config.get("size_multiple")
    # The adapter pads each query to this multiple; bool is an int in Python, so refuse it by name.
    if multiple is not None and (isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1):
        raise CheckpointError(f"{path}: 'size_multiple' must be a positive integer or null, not {multiple!r}")
    return config


def read_safetensors_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file, checked against the file's size without reading the
    tensors: the 8-byte header length must fit the file, the header must be a JSON object, and every
    tensor entry must be readable (``model.checkpoints.tensor_entry_problem``: offsets inside the file,
    a known dtype, as many bytes as its shape needs). Anything else (another format, a zero-byte or truncated
    file) is a ``CheckpointError`` naming the file."""
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a safetensors file ({file_size} bytes, too short for a header)")
            size = int.from_bytes(head, "little")
            if not 0 < size <= file_size - 8:
                raise CheckpointError(f"{path}: not a safetensors file (header length {size} in a "
                                      f"{file_size}-byte file; truncated or another format)")
            raw = fh.read(size)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        header = json.loads(raw)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{path}: not a safetensors file (unreadable header: {err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (the header is not a JSON object)")
    from model.checkpoints import tensor_entry_problem

    data_size = file_size - 8 - size
    for key, info in header.items():
        problem = tensor_entry_problem(info, data_size) if key != "__metadata__" else ""
        if problem:
            raise CheckpointError(f"{path}: truncated safetensors file, or not one (tensor {key!r} {problem})")
    return header


def _safetensors_metadata(path: Path) -> dict:
    """The ``__metadata__`` of a safetensors file, reading only its header."""
    metadata = read_safetensors_header(path).get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: the safetensors __metadata__ is not a JSON object")
    return metadata


def official_file_refusal(path: Path, arch: str) -> str:
    """Why an authors' ``.pth`` cannot be loaded as ``--model ARCH`` ("" when it can). Any file of the
    PromptGIP, Painter or PromptIR family runs through that family's adapter, the authors' inference
    (``--model promptgip -o arch=promptgip-fixture``); another architecture without an official
    release reads only llvbench checkpoints, which training writes."""
    try:
        from model import get_architecture

        spec = get_architecture(arch)
    except (ImportError, KeyError):  # registered elsewhere (a builder=): nothing to check here
        return ""
    from .official import adapter_for

    adapter = adapter_for(arch)
    if spec.official is not None:
        if not adapter:
            return ""
        # The adapter is the authors' inference (resizes, colour order); a plain forward is not.
        option = "" if arch == adapter else f" -o arch={arch}"
        return (f"{path}: the authors' {arch} files run through their inference adapter, not as a plain "
                f"checkpoint: use --model {adapter}{option} --checkpoint {path}")
    if adapter:
        return (f"{path}: {arch!r} has no official weights, so --model {arch} reads only llvbench checkpoints "
                f"(a folder or .safetensors); for a file written by the authors' code at this config use "
                f"--model {adapter} -o arch={arch} --checkpoint {path}")
    return (f"{path}: {arch!r} has no official weights, so --model {arch} reads only llvbench checkpoints "
            f"(a folder with {CONFIG_NAME} + {WEIGHTS_NAME}, or a .safetensors file written by llvbench)")


def resolve_checkpoint(path: str | Path, arch: str | None = None) -> CheckpointSource:
    """A checkpoint path (+ the architecture the user named, if any) -> what to build and load."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_file() and path.suffix in OFFICIAL_SUFFIXES:
        if not arch:
            raise CheckpointError(f"{path}: an official checkpoint needs the architecture name "
                                  "(e.g. --model genlv-huge --checkpoint FILE)")
        refusal = official_file_refusal(path, arch)
        if refusal:
            raise CheckpointError(refusal)
        return CheckpointSource(weights=path, arch=arch, official=True)
    if path.is_file() and path.name == CONFIG_NAME:
        raise CheckpointError(f"{path}: give the checkpoint folder ({path.parent}), not its {CONFIG_NAME}")
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"{path}: no {WEIGHTS_NAME} (a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    config_path = path / CONFIG_NAME if path.is_dir() else None
    if config_path is not None and config_path.is_file():
        config = read_checkpoint_config(config_path)
        read_safetensors_header(weights)  # a zero-byte, truncated or foreign file fails here, by name
        found = CheckpointSource(weights=weights, arch=config["arch"], overrides=dict(config.get("overrides") or {}),
                                 name=str(config.get("name") or ""), size_multiple=config.get("size_multiple"))
    else:
        meta = _safetensors_metadata(weights)
        if "llvbench_arch" not in meta:
            raise CheckpointError(f"{path}: no {CONFIG_NAME} and no llvbench_arch in the safetensors metadata, "
                                  "so the architecture is unknown")
        found = CheckpointSource(weights=weights, arch=meta["llvbench_arch"],
                                 overrides=json.loads(meta.get("llvbench_config") or "{}"))
    if arch is not None and arch != found.arch:
        raise CheckpointError(f"{path}: the checkpoint is architecture {found.arch!r}, not {arch!r}")
    return found
