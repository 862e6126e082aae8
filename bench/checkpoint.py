"""Where a checkpoint's weights are and which architecture they belong to.

Three layouts are accepted (reading and strict loading are ``model.checkpoints``'s job):

- a folder with ``config.json`` (``{"arch": NAME, "overrides": {...}}``, optionally ``"name"`` and
  ``"size_multiple"``) and ``model.safetensors``: what a training run leaves behind;
- a ``.safetensors`` file written by ``model.checkpoints.save_model`` (architecture and config in
  its metadata), or a folder holding only such a ``model.safetensors``;
- an official GenLV ``.pth`` release together with the architecture name (``--model genlv-huge
  --checkpoint checkpoint-22.pth``): loaded by ``model.checkpoints.load_official``, which wraps the
  BGR-trained network so that it takes and returns RGB.
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


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or not isinstance(config.get("arch"), str):
        raise CheckpointError(f"{path}: must be a JSON object with a string 'arch'")
    return config


def _safetensors_metadata(path: Path) -> dict:
    """The ``__metadata__`` of a safetensors file, reading only its header."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: too short to be a safetensors file")
        size = int.from_bytes(head, "little")
        try:
            header = json.loads(fh.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path}: unreadable safetensors header ({err})") from None
    return header.get("__metadata__") or {}


def resolve_checkpoint(path: str | Path, arch: str | None = None) -> CheckpointSource:
    """A checkpoint path (+ the architecture the user named, if any) -> what to build and load."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_file() and path.suffix in OFFICIAL_SUFFIXES:
        if not arch:
            raise CheckpointError(f"{path}: an official checkpoint needs the architecture name "
                                  "(e.g. --model genlv-huge --checkpoint FILE)")
        return CheckpointSource(weights=path, arch=arch, official=True)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"{path}: no {WEIGHTS_NAME} (a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    config_path = path / CONFIG_NAME if path.is_dir() else None
    if config_path is not None and config_path.is_file():
        config = _read_config(config_path)
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
