"""Checkpoint files: the official GenLV ``.pth`` layout, our ``.safetensors`` layout, strict checks.

* Official GenLV files (``util/misc.py: save_model``) are ``{'model': state_dict, 'optimizer',
  'epoch', 'scaler', 'args'}`` with no key prefix; the weights expect **BGR** input.  They are read
  with ``torch.load(weights_only=True)``; ``args`` is an ``argparse.Namespace``, which is allowed
  explicitly (and only it) when the file contains one.
* Our files are safetensors (written and read here without the ``safetensors`` package; the
  format is a little-endian u64 header length, a JSON header, then raw tensor bytes) whose
  ``__metadata__`` records the architecture name, its config and the colour order (RGB).

Every failure is a ``CheckpointError`` naming the file: an unreadable file says why (empty,
truncated, not a zip/pickle, a folder), and weights that do not fit name the architecture. The
file is read, and checked against the architecture built on the meta device, before the real
network is built, so a wrong file costs no full-size build.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from taskgen.atomic import atomic_path

from . import registry

log = logging.getLogger(__name__)

# Keys that hold the weights inside training-state dicts, most specific first.
_WRAPPER_KEYS = ("model", "state_dict", "params_ema", "params")
# Prefixes that wrappers add to every key (DDP, Lightning modules holding `self.net`).
_KEY_PREFIXES = ("module.", "net.")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model."""


# ----------------------------------------------------------------------------- reading files

_ZIP_MAGIC = b"PK\x03\x04"   # torch.save's default format is a zip archive
_PICKLE_PROTO = b"\x80"      # its legacy format starts with a pickle PROTO opcode
_TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def folder_message(path: Path) -> str:
    """What to do instead when a folder is given where a torch checkpoint file is expected."""
    if (path / "config.json").is_file() or (path / "model.safetensors").is_file():
        return (f"{path}: a folder, not a torch checkpoint file; an llvbench checkpoint folder "
                f"(config.json + model.safetensors) is loaded with --model checkpoint --checkpoint {path} "
                "(in Python: model.checkpoints.load_model)")
    inside = sorted(p.name for p in path.iterdir() if p.suffix in _TORCH_SUFFIXES)[:3]
    hint = f"give the file inside it ({', '.join(inside)})" if inside else "give the checkpoint file itself"
    return f"{path}: a folder, not a torch checkpoint file; {hint}"


def torch_file_problem(path: Path) -> str:
    """Why ``path`` cannot be a ``torch.save`` file, judged from its size and first bytes ("" when it may be).

    Checked before ``torch.load``, whose errors for such files are blank (EOFError), cryptic
    (KeyError: 101) or long miniz text that never names the file."""
    if path.is_dir():
        return folder_message(path)
    if not path.is_file():
        return f"{path}: no such checkpoint file"
    try:
        if path.stat().st_size == 0:
            return f"{path}: not a readable torch checkpoint (empty file)"
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        return f"{path}: cannot read ({err.strerror or err})"
    if head == _ZIP_MAGIC:
        # The central directory sits at the end: a cut-off download has none.
        return "" if zipfile.is_zipfile(path) else f"{path}: not a readable torch checkpoint (truncated zip archive)"
    if head[:1] == _PICKLE_PROTO:
        return ""
    return f"{path}: not a readable torch checkpoint (neither a zip archive nor a pickle; starts with {head!r})"


def _first_line(error: BaseException) -> str:
    """The gist of a torch.load error: its first sentence, without miniz's advice paragraph."""
    text = str(error).split(". This is an internal")[0].strip()
    return (text.splitlines() or [""])[0] or type(error).__name__


def _load(path: Path, weights_only: bool):
    """torch.load on CPU; a damaged file becomes a CheckpointError naming it (pickle refusals pass through)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            raise  # a class outside the allow-list: the caller decides (argparse.Namespace, trust_pickle)
        found = re.search(r"WeightsUnpickler error: ?\s*(.+)", str(err))
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or not a zip/pickle: "
                              f"{found.group(1).strip() if found else _first_line(err)})") from None
    except (EOFError, RuntimeError, KeyError, ValueError, struct.error) as err:
        # EOFError/'unexpected EOF': cut off; RuntimeError: zip without torch data; KeyError: garbage.
        gist = f"KeyError {err}" if isinstance(err, KeyError) else _first_line(err)  # KeyError's text is a bare key
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or not a zip/pickle: {gist})") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    except (ImportError, AttributeError) as err:  # a full unpickle (trust_pickle) of a class not installed here
        raise CheckpointError(f"{path}: its pickle needs code that is not installed here ({err}); install the "
                              "package that saved it, or save the state_dict alone") from None


def _torch_load(path: Path, trust_pickle: bool):
    problem = torch_file_problem(path)
    if problem:
        raise CheckpointError(problem)
    if trust_pickle:
        return _load(path, weights_only=False)
    try:
        return _load(path, weights_only=True)
    except pickle.UnpicklingError as first_error:
        if "argparse.Namespace" not in str(first_error):
            raise CheckpointError(_pickle_message(path, first_error)) from None
    # The official training loop stores its argparse.Namespace under 'args': allow that class only.
    try:
        if hasattr(torch.serialization, "safe_globals"):  # torch >= 2.5: scoped allow-list
            with torch.serialization.safe_globals([argparse.Namespace]):
                return _load(path, weights_only=True)
        torch.serialization.add_safe_globals([argparse.Namespace])
        return _load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(_pickle_message(path, error)) from None


def _pickle_message(path: Path, error: Exception) -> str:
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    what = found.group(1) if found else _first_line(error)
    return (f"{path}: torch.load(weights_only=True) refused the pickled object {what}. The official "
            "GenLV files need only argparse.Namespace, which is allowed automatically; if you trust "
            "this file, load it with weights_only=False: -o trust_pickle=true on the command line, "
            "trust_pickle=True in Python.")


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
    if not isinstance(trust_pickle, bool):  # '-o trust_pickle=False' arrives as the (truthy) string 'False'
        raise CheckpointError(f"{path}: trust_pickle must be true or false, not {trust_pickle!r}")
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    try:
        return unwrap_state_dict(_torch_load(path, trust_pickle))
    except CheckpointError as err:
        message = str(err)
        raise CheckpointError(message if message.startswith(f"{path}") else f"{path}: {message}") from None


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


def _misfit_title(source, arch: str | None) -> str:
    """'FILE: checkpoint does not fit architecture 'NAME'', with whichever of the two is known."""
    target = f"architecture {arch!r}" if arch else "the model"
    return (f"{source}: " if source else "") + f"checkpoint does not fit {target}"


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The keys of ``state`` under ``prefix``, without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def fit_state_dict(expected: Mapping[str, Iterable[int]], state: Mapping[str, torch.Tensor], *,
                   source=None, arch: str | None = None) -> dict[str, torch.Tensor]:
    """The state to load into a model whose ``key -> shape`` map is ``expected``.

    ``state`` itself when it fits exactly. Otherwise its ``net.``/``module.`` keys with the prefix
    stripped, when those fit exactly: a Lightning or DDP file that also saved a loss or EMA tensor
    outside the wrapped network (the other keys are dropped, and logged). Otherwise a CheckpointError
    with the key-by-key difference, naming the file and the architecture."""
    diff = state_dict_diff(expected, shapes(state))
    if not diff:
        return dict(state)
    notes = []
    for prefix in _KEY_PREFIXES:
        subset = _strip_prefix(state, prefix)
        if not subset:
            continue
        subset_diff = state_dict_diff(expected, shapes(subset))
        if not subset_diff:
            dropped = [k for k in state if not k.startswith(prefix)]
            log.info("%s: loading the %d key(s) under %r without the prefix; dropped %d key(s) outside it: %s",
                     source or "checkpoint", len(subset), prefix, len(dropped),
                     ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else ""))
            return subset
        notes.append(f"the {len(subset)} key(s) under {prefix!r} with the prefix stripped do not fit either: "
                     + "; ".join(subset_diff))
    raise CheckpointError(_misfit_title(source, arch) + ":\n  " + "\n  ".join(diff + notes))


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], *, source=None,
                 arch: str | None = None) -> nn.Module:
    """Strictly load ``state`` into ``model`` (see ``fit_state_dict``); a mismatch raises CheckpointError
    with a readable diff naming ``source`` (the file) and ``arch`` when given."""
    model.load_state_dict(fit_state_dict(shapes(model.state_dict()), state, source=source, arch=arch), strict=True)
    return model


def build_and_load(build: Callable[[], nn.Module], state: Mapping[str, torch.Tensor], *, source=None,
                   arch: str | None = None) -> nn.Module:
    """``build()`` with ``state`` loaded strictly, ``state`` checked first against ``build()`` on the meta
    device, so weights that do not fit cost no real (possibly 400 M-parameter) build."""
    try:
        with torch.device("meta"):
            expected = shapes(build().state_dict())
    except Exception:  # noqa: BLE001 - a third-party factory that cannot build on meta: check after the build
        expected = None
    if expected is not None:
        state = fit_state_dict(expected, state, source=source, arch=arch)
    return load_weights(build(), state, source=source, arch=arch)


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
    state = read_state_dict(path, trust_pickle=trust_pickle)  # an unreadable file fails before any build
    net = build_and_load(lambda: registry.build(name), state, source=path, arch=name).eval()
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
    """Write ``state`` in the safetensors format (atomically and durably: temp file, fsync, rename)."""
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
    # A unique temporary file, removed if the write is interrupted (Ctrl-C, SIGTERM in training).
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for blob in blobs:
                f.write(blob)
            # On disk before the rename: a training checkpoint's trainer.json, written after, must
            # never sit beside weights an OS crash left empty.
            f.flush()
            os.fsync(f.fileno())


def tensor_entry_problem(info, data_bytes: int) -> str:
    """Why a safetensors header entry cannot be read from ``data_bytes`` of data ("" when it can)."""
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        return "has no dtype, shape and data_offsets"
    offsets, shape = info["data_offsets"], info["shape"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        return f"has data_offsets {offsets!r}"
    if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
        return f"has shape {shape!r}"
    if info["dtype"] not in _ST_NAMES:
        return f"has dtype {info['dtype']!r}"
    if offsets[1] > data_bytes:
        return f"ends at byte {offsets[1]} of {data_bytes}"
    needed = math.prod(shape) * _ST_NAMES[info["dtype"]].itemsize
    if offsets[1] - offsets[0] != needed:
        return f"of shape {shape} and dtype {info['dtype']} needs {needed} bytes, but holds {offsets[1] - offsets[0]}"
    return ""


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
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (its header is a JSON {type(header).__name__}, "
                              "not an object)")
    metadata = header.pop("__metadata__", {}) or {}
    buffer = bytearray(data[8 + head_len:])  # writable, so torch.frombuffer does not warn
    state = {}
    for key, info in header.items():
        problem = tensor_entry_problem(info, len(buffer))
        if problem:
            raise CheckpointError(f"{path}: tensor {key!r} {problem}: truncated or unsupported safetensors file")
        begin, end = info["data_offsets"]
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
    config, arch = json.loads(metadata.get("llvbench_config", "{}")), metadata["llvbench_arch"]
    return build_and_load(lambda: registry.build(arch, **config), state, source=path, arch=arch)
