"""Architecture registry: name -> (factory, default config, provenance).  Imports no torch.

Factories are ``"module:callable"`` strings resolved on first ``build``, so ``import model`` stays
light and a third-party package can register an architecture without importing ours.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class OfficialWeights:
    """Where a released checkpoint for an architecture lives and what it expects."""

    manifest: str           # file name of the state-dict manifest in shared/reference/checkpoints/
    checkpoint: str = ""    # path inside the Hugging Face repo; "" when no weights were released
    hf_repo: str = "Kaiwen-Zhu/GenLV"
    colour_order: str = "bgr"  # the official GenLV code reads images with cv2
    # How the authors' GenLV inference sizes every image (bench.official.official_genlv_resize):
    # "linear" = conference inference.py, cv2.INTER_LINEAR to 256²; "cubic-area" = extended
    # inference.py, INTER_CUBIC when a side is under 256, else INTER_AREA. "" for the other families,
    # whose adapters in bench.official carry their own rules.
    inference_resize: str = ""


@dataclass(frozen=True)
class ArchSpec:
    """A named configuration of a model family."""

    name: str
    factory: str                      # "package.module:callable", called with **config
    config: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    official: OfficialWeights | None = None

    def resolve(self) -> Callable[..., Any]:
        module_name, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module_name), attr)


_REGISTRY: dict[str, ArchSpec] = {}


class UnknownArchitectureError(KeyError):
    def __str__(self) -> str:
        return f"unknown architecture {self.args[0]!r}; known: {', '.join(_REGISTRY)}"


def register_architecture(name: str, factory: str, *, description: str = "",
                          official: OfficialWeights | None = None, **config) -> ArchSpec:
    """Register ``name``; ``config`` holds the factory keyword arguments that define it."""
    if name in _REGISTRY:
        raise ValueError(f"architecture {name!r} is registered twice")
    spec = ArchSpec(name=name, factory=factory, config=dict(config), description=description, official=official)
    _REGISTRY[name] = spec
    return spec


def get_architecture(name: str) -> ArchSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownArchitectureError(name) from None


def list_architectures() -> list[str]:
    """Registered names in registration order."""
    return list(_REGISTRY)


class ConfigFieldError(TypeError, ValueError):
    """An architecture config names a field its family lacks or gives one a value of the wrong type."""


def _field_problem(kind, value) -> str:
    """What a value of config field type ``kind`` must be, when ``value`` is not that ("" if fine).

    Whole-number fields (sizes, counts, widths) must be >= 1; other types are not checked."""
    import typing

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if kind is int:
        return "" if whole(value) else "a whole number >= 1"
    if kind is float:
        return "" if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if kind is bool:
        return "" if isinstance(value, bool) else "true or false"
    if kind is str:
        return "" if isinstance(value, str) else "a string"
    if typing.get_origin(kind) is tuple and typing.get_args(kind)[:1] == (int,):
        ok = isinstance(value, (list, tuple)) and all(whole(v) for v in value)
        return "" if ok else "a list of whole numbers >= 1"
    return ""


def config_from(config_class, family: str, config: Mapping[str, Any]):
    """A config dataclass from keyword arguments; an unknown name, or a value that does not have
    its field's type (a whole-number field below 1, ...), is a ConfigFieldError naming the field."""
    import dataclasses
    import typing

    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ConfigFieldError(f"unknown {family} config field(s) {unknown}; valid: {sorted(fields)}")
    kinds = typing.get_type_hints(config_class)
    for key, value in config.items():
        problem = _field_problem(kinds.get(key), value)
        if problem:
            raise ConfigFieldError(f"{family} config field {key} must be {problem}, got {value!r}")
    return config_class(**config)


def build(name: str, **overrides):
    """Instantiate architecture ``name``; ``overrides`` replace fields of its registered config."""
    spec = get_architecture(name)
    return spec.resolve()(**{**spec.config, **overrides})


# ----------------------------------------------------------------------------- built-ins

_GENLV = "model.genlv:build_genlv"
_PAPER = "X-Restormer U-Net + PCAB bottleneck + residual prompt encoder"

# Official sizes (factories at the end of the official model file); nf = prompt-encoder width.
_GENLV_SIZES: tuple[tuple[str, dict, str, OfficialWeights], ...] = (
    ("genlv-base", dict(dim=48, num_blocks=(2, 4, 4, 4), num_refinement_blocks=4, prompt_nf=64),
     "the paper's GenLV (conference code, nf=64); no released weights",
     OfficialWeights("genlv-base.json", inference_resize="linear")),
    ("genlv-huge", dict(dim=80, num_blocks=(6, 8, 8, 12), num_refinement_blocks=8, prompt_nf=64),
     "GenLV-30 Huge release (conference code, nf=64)",
     OfficialWeights("genlv-huge.json", "GenLV-30/ckpt/GenLV-Huge/checkpoint-22.pth", inference_resize="linear")),
    ("genlv-giant", dict(dim=96, num_blocks=(8, 12, 12, 16), num_refinement_blocks=12, prompt_nf=64),
     "GenLV-30 Giant release (conference code, nf=64)",
     OfficialWeights("genlv-giant.json", "GenLV-30/ckpt/GenLV-Giant/checkpoint-17.pth", inference_resize="linear")),
    ("genlv101-base", dict(dim=48, num_blocks=(2, 4, 4, 4), num_refinement_blocks=4, prompt_nf=32),
     "GenLV-101 base release (extended code, nf=32)",
     OfficialWeights("genlv101-base.json", "GenLV-101/ckpt/base-checkpoint-49.pth",
                     inference_resize="cubic-area")),
    ("genlv101-large", dict(dim=64, num_blocks=(4, 6, 6, 8), num_refinement_blocks=6, prompt_nf=32),
     "GenLV-101 large release (extended code, nf=32)",
     OfficialWeights("genlv101-large.json", "GenLV-101/ckpt/large-checkpoint-49.pth",
                     inference_resize="cubic-area")),
    ("genlv101-huge", dict(dim=80, num_blocks=(6, 8, 8, 12), num_refinement_blocks=8, prompt_nf=32),
     "GenLV-101 huge release (extended code, nf=32)",
     OfficialWeights("genlv101-huge.json", "GenLV-101/ckpt/huge-checkpoint-49.pth",
                     inference_resize="cubic-area")),
)

for _name, _config, _what, _official in _GENLV_SIZES:
    register_architecture(_name, _GENLV, description=f"{_PAPER}; {_what}", official=_official, **_config)

# Small sizes of the same architecture for this project's budgets (not official).
register_architecture(
    "genlv-s", _GENLV, description=f"{_PAPER}; small (≈5.1 M) for short GPU runs",
    dim=24, num_blocks=(2, 2, 2, 2), num_refinement_blocks=2, prompt_nf=16)
register_architecture(
    "genlv-tiny", _GENLV, description=f"{_PAPER}; tiny (≈0.94 M) for CPU tests and the CPU pipeline",
    dim=12, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, prompt_nf=12, prompt_res_blocks=2)
register_architecture(
    "genlv-fixture", _GENLV,
    description=f"{_PAPER}; the exact config of shared/reference/fixtures/genlv-tiny-official.npz",
    dim=16, num_blocks=(1, 1, 1, 2), num_refinement_blocks=1, prompt_nf=16)

# Paper Table 1 ablation without a visual prompt: the X-Restormer main network alone (its
# bottleneck uses X-Restormer blocks; global residual as in the original X-Restormer).
register_architecture(
    "xrestormer", _GENLV,
    description="X-Restormer U-Net without prompt (VPIP ablation, paper Table 1); ignores the prompt images",
    dim=48, num_blocks=(2, 4, 4, 4), num_refinement_blocks=4, use_prompt=False, global_residual=True)
register_architecture(
    "xrestormer-s", _GENLV,
    description="X-Restormer U-Net without prompt at genlv-s size (equal-budget ablation); ignores the prompt images",
    dim=24, num_blocks=(2, 2, 2, 2), num_refinement_blocks=2, use_prompt=False, global_residual=True)

# Paper Table 1 backbone ablation: a ViT main network inside VPIP (vit-vpip) and without prompt
# (vit). The paper gives no ViT details; model/vit.py states our reading.
_VIT = "model.vit:build_vit"
register_architecture(
    "vit-vpip", _VIT, description="ViT main network + GenLV's prompt encoder and prompt cross-attention "
                                  "(VPIP backbone ablation, paper Table 1); patch 8, 12 blocks of 384",
    embed_dim=384, depth=12, num_heads=6, prompt_blocks=4, prompt_nf=64)
register_architecture(
    "vit", _VIT, description="ViT main network without prompt (paper Table 1 ablation); ignores the prompt images",
    embed_dim=384, depth=12, num_heads=6, use_prompt=False)
register_architecture(
    "vit-vpip-s", _VIT, description="vit-vpip, small (≈4.5 M) for equal-budget runs",
    embed_dim=192, depth=6, num_heads=3, prompt_blocks=2, prompt_nf=32, prompt_res_blocks=2)
register_architecture(
    "vit-s", _VIT, description="vit, small (≈2.7 M) for equal-budget runs; ignores the prompt images",
    embed_dim=192, depth=6, num_heads=3, use_prompt=False)

# ----------------------------------------------------------------------------- baselines (issue 8)

_PROMPTGIP = "model.promptgip:build_promptgip"
_PROMPTGIP_WHAT = "PromptGIP: MAE ViT over a 4-image token sequence (answer masked) + CNN head"
_PAINTER = "model.painter:build_painter"
_PAINTER_WHAT = "Painter: ViT in-painting the bottom half of a 2×1 canvas (global rel-pos attention)"

register_architecture(
    "promptgip", _PROMPTGIP, description=f"{_PROMPTGIP_WHAT}; official ViT-L, 256² input",
    official=OfficialWeights("promptgip.json", "pretrained_models/PromptGIP-checkpoint.pth",
                             hf_repo="", colour_order="bgr"))  # released on Baidu Disk (code ycjg)
register_architecture(
    "promptgip-fixture", _PROMPTGIP,
    description=f"{_PROMPTGIP_WHAT}; the config of shared/reference/fixtures/promptgip-tiny-official.npz",
    embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)
register_architecture(
    "promptgip-s", _PROMPTGIP, description=f"{_PROMPTGIP_WHAT}; small (≈5.5 M) for equal-budget retraining",
    embed_dim=256, depth=6, num_heads=8, decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4)
register_architecture(
    "painter", _PAINTER, description=f"{_PAINTER_WHAT}; official ViT-L, 896×448 canvas",
    official=OfficialWeights("painter-vit-large.json", "painter_vit_large.pth",
                             hf_repo="BAAI/Painter", colour_order="rgb"))
register_architecture(
    "painter-fixture", _PAINTER,
    description=f"{_PAINTER_WHAT}; the config of shared/reference/fixtures/painter-tiny-official.npz",
    embed_dim=32, depth=24, num_heads=2, decoder_embed_dim=16)
register_architecture(
    "painter-s", _PAINTER, description=f"{_PAINTER_WHAT}; small (≈10.8 M) on a 512×256 canvas for retraining",
    img_size=(512, 256), embed_dim=256, depth=8, num_heads=8, decoder_embed_dim=16,
    merge_index=1, out_indices=(1, 3, 5, 7))

_PROMPTIR = "model.promptir:build_promptir"
_PROMPTIR_WHAT = "PromptIR: Restormer U-Net with learned prompts in the decoder (ignores the visual prompt)"

register_architecture(
    "promptir", _PROMPTIR, description=f"{_PROMPTIR_WHAT}; official all-in-one model, PromptIR(decoder=True)",
    official=OfficialWeights("promptir.json", "ckpt/model.ckpt", hf_repo="", colour_order="rgb"))
# Released as a GitHub release asset (va1shn9v/PromptIR v1.0) / Google Drive, a Lightning file.
register_architecture(
    "promptir-s", _PROMPTIR, description=f"{_PROMPTIR_WHAT}; small for equal-budget retraining",
    dim=24, num_blocks=(2, 2, 2, 2), num_refinement_blocks=2, prompt_dims=(32, 64, 160), dead_convs=False)
