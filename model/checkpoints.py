"""Checkpoint files: the official GenLV ``.pth`` layout, our ``.safetensors`` layout, strict checks.

* Official GenLV files (``util/misc.py: save_model``) are ``{'model': state_dict, 'optimizer',
  'epoch', 'scaler', 'args'}`` with no key prefix; the weights expect **BGR** input.  They are read
  with ``torch.load(weights_only=True)``; ``args`` is an ``argparse.Namespace``, which is allowed
  explicitly (and only it) when the file contains one.
* Our files are safetensors (written and read here without the ``safetensors`` package; the
  format is a little-endian u64 header length, a JSON header, then raw tensor bytes) whose
  ``__metadata__`` records the architecture name, its config and the colour order (RGB).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import struct
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from . import registry

# Keys that hold the weights inside training-state dicts, most specific first.
_WRAPPER_KEYS = ("model", "state_dict", "params_ema", "params")
# Prefixes that wrappers add to every key (DDP, Lightning modules holding `self.net`).
_KEY_PREFIXES = ("module.", "net.")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model."""


# ----------------------------------------------------------------------------- reading files

def _torch_load(path: Path, trust_pickle: bool):
    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first_error:
        if "argparse.Namespace" not in str(first_error):
            raise CheckpointError(_pickle_message(path, first_error)) from first_error
    # The official training loop stores its argparse.Namespace under 'args': allow that class only.
    try:
        if hasattr(torch.serialization, "safe_globals"):  # torch >= 2.5: scoped allow-list
            with torch.serialization.safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        torch.serialization.add_safe_globals([argparse.Namespace])
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(_pickle_message(path, error)) from error


def _pickle_message(path: Path, error: Exception) -> str:
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    what = found.group(1) if found else str(error).splitlines()[0]
    return (f"{path}: torch.load(weights_only=True) refused the pickled object {what}. The official "
            "GenLV files need only argparse.Namespace, which is allowed automatically; if you trust "
            "this file, pass trust_pickle=True (loads with weights_only=False).")


def unwrap_state_dict(obj) -> dict[str, torch.Tensor]:
    """The flat name -> tensor dict inside a checkpoint object (official, DDP or Lightning layouts)."""
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"no state dict found (looked under {_WRAPPER_KEYS}); top level: {found}")
    state = dict(obj)
    for prefix in _KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | os.PathLike, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Weights of a ``.safetensors`` file or an (official) torch checkpoint, on CPU."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    return unwrap_state_dict(_torch_load(path, trust_pickle))


# ----------------------------------------------------------------------------- strict checking

def state_dict_diff(expected: Mapping[str, Iterable[int]], actual: Mapping[str, Iterable[int]]) -> list[str]:
    """Human-readable differences between two ``key -> shape`` maps; empty when they agree."""
    lines = []
    missing = [k for k in expected if k not in actual]
    unexpected = [k for k in actual if k not in expected]
    wrong = [(k, tuple(expected[k]), tuple(actual[k])) for k in expected
             if k in actual and tuple(expected[k]) != tuple(actual[k])]
    for title, items in (("missing", missing), ("unexpected", unexpected)):
        if items:
            lines.append(f"{len(items)} {title} key(s): " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
    if wrong:
        lines.append(f"{len(wrong)} shape mismatch(es): " + ", ".join(
            f"{k} model {e} vs file {a}" for k, e, a in wrong[:10]) + (" ..." if len(wrong) > 10 else ""))
    return lines


def shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Strictly load ``state`` into ``model``; a mismatch raises CheckpointError with a readable diff."""
    diff = state_dict_diff(shapes(model.state_dict()), shapes(state))
    if diff:
        raise CheckpointError("checkpoint does not fit the model:\n  " + "\n  ".join(diff))
    model.load_state_dict(state, strict=True)
    return model


# ----------------------------------------------------------------------------- official weights

class BGRWeights(nn.Module):
    """Wraps a GenLV trained on BGR images (the official weights) so callers pass and get RGB."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, query: torch.Tensor, prompt_input: torch.Tensor, prompt_target: torch.Tensor) -> torch.Tensor:
        flip = lambda t: t.flip(1)  # noqa: E731 - RGB <-> BGR is its own inverse
        return flip(self.net(flip(query), flip(prompt_input), flip(prompt_target)))


def load_official(name: str, path: str | os.PathLike, *, rgb: bool = True, trust_pickle: bool = False) -> nn.Module:
    """Build official-size architecture ``name`` and load a released ``.pth`` into it (strict).

    With ``rgb=True`` (default) the result takes and returns RGB like every llvbench model; with
    ``rgb=False`` it is the bare network, which expects BGR as the official code feeds it.
    """
    spec = registry.get_architecture(name)
    if spec.official is None:
        raise CheckpointError(f"{name!r} has no official weights; official sizes: "
                              f"{[n for n in registry.list_architectures() if registry.get_architecture(n).official]}")
    net = load_weights(registry.build(name), read_state_dict(path, trust_pickle=trust_pickle)).eval()
    return BGRWeights(net) if rgb and spec.official.colour_order == "bgr" else net


def read_manifest(path: str | os.PathLike) -> list[tuple[str, tuple[int, ...]]]:
    """``[(key, shape), ...]`` in order from a reference manifest JSON (shared/reference/checkpoints)."""
    entries = json.loads(Path(path).read_text())["state_dict"]
    return [(key, tuple(shape)) for key, shape, *_ in entries]


# ----------------------------------------------------------------------------- safetensors

_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


def write_safetensors(path: str | os.PathLike, state: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write ``state`` in the safetensors format (atomically: temp file + rename)."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    blobs, offset = [], 0
    for key, tensor in state.items():
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.dtype not in _ST_DTYPES:
            raise CheckpointError(f"{key}: dtype {tensor.dtype} cannot be stored in safetensors")
        blob = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[key] = {"dtype": _ST_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                       "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header to 8-byte alignment with spaces
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(state, metadata)`` of a safetensors file (or a checkpoint folder's model.safetensors), tensors on CPU."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise CheckpointError(f"{path}: a folder without model.safetensors")
        path = path / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    data = path.read_bytes()
    head_len = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else -1
    try:
        if not 0 < head_len <= len(data) - 8:
            raise ValueError(f"header length {head_len} in a {len(data)}-byte file")
        header = json.loads(data[8:8 + head_len])
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{path}: not a safetensors file (truncated or another format): {err}") from None
    metadata = header.pop("__metadata__", {}) or {}
    buffer = bytearray(data[8 + head_len:])  # writable, so torch.frombuffer does not warn
    state = {}
    for key, info in header.items():
        begin, end = info["data_offsets"]
        if info["dtype"] not in _ST_NAMES or end > len(buffer):
            raise CheckpointError(f"{path}: tensor {key!r} has dtype {info['dtype']} or ends at byte {end} "
                                  f"of {len(buffer)}: truncated or unsupported safetensors file")
        dtype = _ST_NAMES[info["dtype"]]
        flat = torch.frombuffer(buffer, dtype=torch.uint8, count=end - begin, offset=begin) if end > begin \
            else torch.empty(0, dtype=torch.uint8)
        state[key] = flat.view(dtype).reshape(info["shape"]).clone()
    return state, metadata


def save_model(model: nn.Module, path: str | os.PathLike, arch: str, **extra_metadata: str) -> None:
    """Save our model as safetensors with what ``load_model`` needs to rebuild it."""
    config = model.config.as_dict() if hasattr(getattr(model, "config", None), "as_dict") else {}
    metadata = {"llvbench_arch": arch, "llvbench_config": json.dumps(config), "colour_order": "rgb", **extra_metadata}
    write_safetensors(path, model.state_dict(), metadata)


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild and strictly load a model written by ``save_model`` (its file, or the folder holding it)."""
    state, metadata = read_safetensors(path)
    if "llvbench_arch" not in metadata:
        raise CheckpointError(f"{path}: no llvbench_arch in the safetensors metadata; "
                              "build the model yourself and use load_weights(model, read_state_dict(path))")
    config = json.loads(metadata.get("llvbench_config", "{}"))
    return load_weights(registry.build(metadata["llvbench_arch"], **config), state)
