"""Built-in generalists: two reference floors and every trained llvbench model by checkpoint.

- ``identity`` returns the query: what doing nothing scores (high on mild degradations, the
  "keeps the query" ideal of the mismatch track).
- ``prompt-target`` returns the prompt's target resized to the query: what copying the prompt
  scores (the failure mode of prompt-sensitive models).
- ``checkpoint`` builds ``model.build(arch, **overrides)`` for a checkpoint (layouts in
  ``bench.checkpoint``) and loads its weights on first use. The network is fed as it was trained
  (``model.objectives.predict``: PromptGIP's masked answer, Painter's normalised canvas).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from taskgen.shards import file_sha256

from .adapters import (OFFICIAL_GENLV_SIDE, official_genlv_resize, pad_to_multiple, resize_back, resize_to,
                       resolve_device)
from .checkpoint import CheckpointSource, resolve_checkpoint
from .registry import register_generalist


@register_generalist("identity", "returns the query unchanged (floor: the score of doing nothing)")
class IdentityGeneralist:
    name = "identity"

    def __init__(self, device: str = "cpu"):
        self.device = resolve_device(device)  # where the bench places inputs (--device for every model)

    def predict(self, query, prompt_input, prompt_target):
        return query

    def info(self) -> dict:
        return {"params": 0, "size": "any size", "device": self.device}


@register_generalist("prompt-target", "returns the prompt target resized to the query (floor: copying the prompt)")
class PromptTargetGeneralist(IdentityGeneralist):
    name = "prompt-target"

    def predict(self, query, prompt_input, prompt_target):
        return resize_to(prompt_target, tuple(query.shape[-2:]))

    def info(self) -> dict:
        return {**super().info(), "size": "prompt target resized bilinearly (antialiased) to the query size"}


def _build_network(source: CheckpointSource, builder, trust_pickle: bool = False):
    """The network for a resolved checkpoint, weights loaded strictly, on the CPU. The file is read
    first, and checked on the meta device, so a damaged or foreign file costs no real build."""
    from model import build
    from model.checkpoints import build_and_load, load_official, read_state_dict

    if source.official:  # RGB in and out (BGR weights wrapped)
        return load_official(source.arch, source.weights, trust_pickle=trust_pickle)
    state = read_state_dict(source.weights)
    return build_and_load(lambda: (builder or build)(source.arch, **source.overrides), state,
                          source=source.weights, arch=source.arch)


@register_generalist("checkpoint", "a trained llvbench model: --checkpoint FOLDER|FILE.safetensors "
                                   "(or an official .pth with --model ARCH)")
class CheckpointGeneralist:
    """A network from ``model`` with checkpoint weights, built lazily on first use.

    The network is called through ``model.objectives.predict``: ``network(query, prompt_input,
    prompt_target)`` for GenLV, PromptIR and PromptGIP, Painter's canvas for Painter. A network with
    a fixed input size (``network.image_size``: PromptGIP's ``img_size``, Painter's half canvas, as
    trained at ``--size``) gets every image resized to it (bilinear, antialiased) and its output
    resized back to the query. Any other network gets every input reflect-padded on the
    bottom/right to a multiple of ``size_multiple`` (option, config.json, the network's
    ``config.query_multiple``, else 32 as GenLV's windowed attention needs) and the output cropped
    back to the query's size. An official GenLV ``.pth`` is fed as its authors' ``inference.py``
    feeds it: every image resized to 256×256 by the release's rule (``bench.adapters.
    official_genlv_resize``), the output clamped and resized back to the query (bilinear,
    antialiased; the authors keep 256×256); ``official_resize=False`` (``-o official_resize=false``)
    pads it like our own models instead. ``builder(arch, **overrides)`` replaces ``model.build`` (for
    architectures registered elsewhere). ``trust_pickle=True`` (``-o trust_pickle=true``) reads an
    official ``.pth`` with ``weights_only=False``; safetensors files hold no pickle, so it does not
    apply to them.
    """

    def __init__(self, checkpoint: str | Path, arch: str | None = None, device: str = "auto",
                 name: str | None = None, size_multiple: int | None = None,
                 builder: Callable | None = None, trust_pickle: bool = False, official_resize: bool = True):
        self.source = resolve_checkpoint(checkpoint, arch)
        if not isinstance(official_resize, bool):
            raise ValueError(f"checkpoint option official_resize must be true or false, got {official_resize!r}")
        # The authors' resize rule for an official GenLV release ("" for everything else); public
        # because llvbench apply's prompt-embedding averaging feeds the network itself.
        self.official_resize_rule = _official_resize_rule(self.source) if official_resize else ""
        self._trust_pickle = trust_pickle  # checked (a bool) by model.checkpoints.read_state_dict
        self.name = name or self.source.name or f"{self.source.arch}@{Path(checkpoint).stem}"
        self.device = device
        self._size_multiple = size_multiple or self.source.size_multiple
        self._builder = builder
        self._network = None
        self._sha256 = None

    @property
    def network(self):
        """The network with its weights loaded, on its device (built on first access)."""
        if self._network is None:
            network = _build_network(self.source, self._builder, self._trust_pickle)
            self.device = resolve_device(self.device)
            if self._size_multiple is None:
                config = getattr(network, "config", None) or getattr(getattr(network, "net", None), "config", None)
                self._size_multiple = int(getattr(config, "query_multiple", 32))
            self._network = network.to(self.device).eval()
        return self._network

    def checkpoint_sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.source.weights)
        return self._sha256

    def predict(self, query, prompt_input, prompt_target):
        import torch

        from model.objectives import predict

        network = self.network
        images = [t.to(self.device) for t in (query, prompt_input, prompt_target)]
        fixed = _fixed_size(network)
        with torch.inference_mode():
            if self.official_resize_rule:
                answer = predict(network, *(official_genlv_resize(t, self.official_resize_rule) for t in images))
                # Clamped at 256² as the authors' output is, then brought back to the query's size.
                return resize_back(answer.clamp(0, 1), tuple(query.shape[-2:]))
            if fixed is not None:
                answer = predict(network, *(resize_to(t, fixed) for t in images))
                return resize_to(answer, tuple(query.shape[-2:]))
            q, (h, w) = pad_to_multiple(images[0], self._size_multiple)
            p_in, _ = pad_to_multiple(images[1], self._size_multiple)
            p_out, _ = pad_to_multiple(images[2], self._size_multiple)
            return predict_sharing_prompts(network, q, p_in, p_out)[..., :h, :w]

    def info(self) -> dict:
        from model.objectives import objective_for

        network = self.network
        fixed = _fixed_size(network)
        if self.official_resize_rule:
            side = OFFICIAL_GENLV_SIDE
            how = {"linear": "bilinear as cv2.INTER_LINEAR (conference inference.py)",
                   "cubic-area": "cv2.INTER_CUBIC if a side is under 256, else INTER_AREA (extended inference.py)"}
            size = (f"prompt pair and query resized to {side}×{side}, {how[self.official_resize_rule]}; "
                    "output clamped and resized back to the query (bilinear, antialiased)")
        elif fixed is not None:
            size = (f"prompt pair and query resized to {fixed[0]}×{fixed[1]} (bilinear, antialiased), "
                    "output resized back to the query (bilinear, antialiased)")
        else:
            size = f"reflect-pad bottom/right to a multiple of {self._size_multiple}, crop the output back"
        # Official weights were padded at the query's size before they were resized to 256²: a
        # fingerprint setting of their own keeps units scored that way from being reused. So do the
        # network overrides of a checkpoint's config.json (e.g. input_offset): the same weights then
        # compute another function. Neither is recorded when absent. The model code's hash always
        # is, and so is this adapter's (its resizing and padding): units scored before an edit
        # changed what these weights compute, or how their inputs are made, are not reused.
        settings = {"network_code": network_code_sha256(network), "adapter_code": adapter_code_sha256(self)}
        if self.official_resize_rule:
            settings["official_resize"] = self.official_resize_rule
        changed = config_changes(network, self.source.arch)
        if changed:
            settings["network_overrides"] = changed
        return {
            "results_settings": settings,
            "params": int(sum(p.numel() for p in network.parameters())),
            "device": str(self.device),
            "size": size,
            "interface": objective_for(network).inference,
            "arch": self.source.arch,
            "checkpoint": str(self.source.weights),
            "checkpoint_sha256": self.checkpoint_sha256(),
        }


def encodes_prompts_apart(network) -> bool:
    """Whether ``network`` uses its prompt and encodes it on its own: GenLV's ``encode_prompt`` and
    ``forward_with_prompt`` (with ``check_sizes``), which prompt sharing and averaging call."""
    return bool(getattr(getattr(network, "config", None), "use_prompt", False)) and all(
        callable(getattr(network, name, None)) for name in ("check_sizes", "encode_prompt", "forward_with_prompt"))


def distinct_prompt_rows(prompt_input, prompt_target) -> tuple[list[int], list[int]] | None:
    """(the first row of each distinct prompt pair, each row's index into those), or None when every
    row of the batch has a prompt pair of its own (B×3×H×W tensors, compared exactly)."""
    import torch

    firsts: list[int] = []
    owners: list[int] = []
    for row in range(prompt_input.shape[0]):
        owner = next((n for n, first in enumerate(firsts) if torch.equal(prompt_input[row], prompt_input[first])
                      and torch.equal(prompt_target[row], prompt_target[first])), len(firsts))
        if owner == len(firsts):
            firsts.append(row)
        owners.append(owner)
    return (firsts, owners) if len(firsts) < len(owners) else None


def predict_sharing_prompts(network, query, prompt_input, prompt_target):
    """``model.objectives.predict``, except that a network fed ``net(query, prompt_input,
    prompt_target)`` which encodes prompts on their own (GenLV's ``encode_prompt`` and
    ``forward_with_prompt``) encodes each distinct prompt pair of the batch once. The robustness and
    mismatch tracks give one prompt to many queries, and the prompt encoder is 5–20 % of a GenLV
    forward. On the CPU the outputs are the same bit for bit (tests/test_evaluate.py)."""
    from model.objectives import objective_for, predict

    apart = objective_for(network).name == "l1" and encodes_prompts_apart(network)
    rows = distinct_prompt_rows(prompt_input, prompt_target) if apart else None
    if rows is None:
        return predict(network, query, prompt_input, prompt_target)
    firsts, owners = rows
    network.check_sizes(query, prompt_input, prompt_target)
    keys, values = network.encode_prompt(prompt_input[firsts], prompt_target[firsts])
    return network.forward_with_prompt(query, keys[owners], values[owners])


def config_changes(network, arch: str) -> dict:
    """The fields of ``network.config`` that differ from architecture ``arch``'s registered config
    ({} when equal, or for a network without a config): what makes the same weights compute another
    function. Full configs stored in safetensors metadata thus count only where they differ."""
    import torch

    from model.registry import build

    config = getattr(network, "config", None)
    if not hasattr(config, "as_dict"):  # every model config has one (model.checkpoints.save_model reads it too)
        return {}
    with torch.device("meta"):  # no memory, no weights
        default = build(arch).config.as_dict()
    return {key: value for key, value in sorted(config.as_dict().items()) if default.get(key) != value}


# Modules of the model package that only training uses: editing them leaves every network's function alone.
TRAINING_ONLY_MODULES = ("model/data.py", "model/train.py")


def network_source_files(network) -> list[Path]:
    """The source files that decide what ``network`` computes: the ``model`` package (builders,
    layers, configs, loaders, the inference call in ``model.objectives``) less TRAINING_ONLY_MODULES,
    and, for every layer class from outside it (a plug-in's), the source of its top-level package
    as taskgen hashes a plug-in task's (``taskgen.shards.plugin_source_files``); torch's own left out."""
    import model
    from taskgen.shards import plugin_source_files

    package = Path(model.__file__).resolve().parent
    files = {path for path in package.glob("*.py")
             if f"{package.name}/{path.name}" not in TRAINING_ONLY_MODULES}
    for name in sorted({type(layer).__module__ for layer in network.modules()}):
        if name.split(".")[0] not in ("torch", package.name):
            files.update(path for _, path in plugin_source_files(name))  # none for a built-in or interactive module
    return sorted(files)


def files_sha256(paths) -> str:
    """sha256 over the names, lengths and bytes of ``paths`` in order (names and lengths: no two file
    sets hash alike)."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        text = Path(path).read_bytes()
        digest.update(f"{Path(path).name}\0{len(text)}\0".encode())
        digest.update(text)
    return digest.hexdigest()


def network_code_sha256(network) -> str:
    """sha256 of ``network_source_files(network)``: part of the results' fingerprint, so units scored
    before the code changed what the same weights compute are run again."""
    return files_sha256(network_source_files(network))


def adapter_source_files(generalist) -> list[Path]:
    """The bench files that decide how a built-in network generalist turns images into its network's
    inputs and its answer back into an image: the module of its class and bench/adapters.py."""
    import inspect

    return sorted({Path(inspect.getsourcefile(type(generalist))).resolve(),
                   Path(__file__).resolve().parent / "adapters.py"})


def adapter_code_sha256(generalist) -> str:
    """sha256 of ``adapter_source_files(generalist)``: part of the results' fingerprint beside
    ``network_code``, so units scored before a change to the resizing, padding or colour order are
    run again (a plug-in's whole implementation is fingerprinted instead)."""
    return files_sha256(adapter_source_files(generalist))


def _official_resize_rule(source: CheckpointSource) -> str:
    """The authors' inference resize rule of an official GenLV release ("" for anything else)."""
    if not source.official:
        return ""
    from model.registry import get_architecture

    official = get_architecture(source.arch).official
    return official.inference_resize if official is not None else ""


def _fixed_size(network) -> tuple[int, int] | None:
    """H×W every image must have for ``network`` (None: any size, padded to a multiple)."""
    size = getattr(network, "image_size", None)
    return tuple(int(v) for v in size) if size is not None else None
from . import official  # noqa: E402,F401 - registers the promptgip, painter and promptir adapters
