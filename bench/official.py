"""Generalists that run PromptGIP, Painter and PromptIR as their authors' inference code does.

All three take the protocol's RGB ``B×3×H×W`` tensors in [0, 1] and return the query-sized prediction
in [0, 1]; everything model-specific happens here (shared/reference/checkpoints/README.md):

- ``promptgip``: every image resized to the model's square size (256), rounded to 8-bit levels
  (the official test sets are 8-bit files stored at that size), RGB -> **BGR**, no normalisation;
  the network sees the token sequence [prompt input, prompt target, query, answer] with the answer
  masked and returns the CNN head's answer (official output ``[4]``), which is flipped back to
  RGB, clamped and resized to the query size.
- ``painter``: every image resized to the canvas half (448×448) by Pillow's default (bicubic) from
  8-bit RGB, as the official loaders do (``pil_resize``), **RGB**, ImageNet mean/std; canvas ``imgs`` = prompt
  input above query, ``tgts`` = prompt target above prompt target (placeholder), the bottom half
  of the patches masked; the bottom half of the prediction is de-normalised, resized back with
  bicubic ``F.interpolate`` (the low-level evaluation scripts) and clamped.
- ``promptir``: the prompt pair is ignored (PromptIR's prompts are learned); the query stays
  **RGB** in [0, 1], not normalised, at its own size, reflect-padded on the bottom/right to a
  multiple of 8 (``demo.py: pad_input``), and the output is cropped back and clamped.

Weights: an official ``.pth`` (``{'model': state_dict}``, or PromptIR's Lightning
``{'state_dict': {'net.' + key: ...}}``, read with ``weights_only=True``) or one
of our safetensors files, read first and then loaded strictly into ``model.build(arch)`` (a file that
does not fit fails before the real build); or a ready ``network`` (tests, or weights already in
memory). ``arch=`` picks another config of the same family, e.g. ``promptgip-fixture`` for a file
written by the authors' code at the fixture's config. torch is imported on use.
"""
from __future__ import annotations

from pathlib import Path

from .adapters import resize_back, resolve_device
from .registry import register_generalist

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- pure helpers

def resize_quantized(images, size: tuple[int, int], mode: str):
    """B×3×H×W in [0, 1] -> B×3×size, antialiased ``mode`` resize, rounded to 8-bit levels as a saved image."""
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=True)
    return images.clamp(0, 1).mul(255).round().div(255)


def pil_resize(images, size: tuple[int, int], resample: str = "bicubic"):
    """B×3×H×W in [0, 1] -> B×3×size in 8-bit levels, resized by Pillow from 8-bit RGB like the authors' loaders.

    Pillow resizes uint8 images in two passes, rounding and clipping to 8 bits between them; a float
    resize differs from it by up to 16 levels where an upsampled edge overshoots, so the official
    preprocessing is reproduced with Pillow itself (on the CPU)."""
    import numpy as np
    import torch
    from PIL import Image

    height, width = size
    pixels = images.detach().clamp(0, 1).mul(255).round().to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
    filter_ = getattr(Image.Resampling, resample.upper())
    resized = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((width, height), filter_))
                        for image in pixels])
    return torch.from_numpy(resized).permute(0, 3, 1, 2).to(images.device, images.dtype).div(255)


def imagenet_normalize(images):
    """RGB B×3×H×W in [0, 1] -> ImageNet-normalised (mean/std per channel)."""
    mean, std = _imagenet_stats(images)
    return (images - mean) / std


def imagenet_denormalize(images):
    """Inverse of :func:`imagenet_normalize`."""
    mean, std = _imagenet_stats(images)
    return images * std + mean


def _imagenet_stats(images):
    import torch

    shape = (1, 3, 1, 1)
    return (torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(shape),
            torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(shape))


def painter_canvases(query, prompt_input, prompt_target):
    """Normalised square images -> (imgs, tgts): prompt above query, prompt target above itself."""
    import torch

    return torch.cat([prompt_input, query], dim=2), torch.cat([prompt_target, prompt_target], dim=2)


# ----------------------------------------------------------------------------- base

class _OfficialGeneralist:
    """Lazy network construction and ``info()`` shared by the two adapters."""

    default_arch = ""

    def __init__(self, checkpoint: str | Path | None = None, arch: str | None = None, device: str = "auto",
                 name: str | None = None, network=None, trust_pickle: bool = False):
        if checkpoint is None and network is None:
            raise ValueError(f"{self.default_arch}: give checkpoint=PATH (official .pth or .safetensors) or network=")
        self.arch = arch or self.default_arch
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        if self.checkpoint is not None and self.checkpoint.is_dir():  # say so now, not at the first predict
            from model.checkpoints import CheckpointError, folder_message

            raise CheckpointError(folder_message(self.checkpoint))
        self.name = name or (f"{self.arch}@{self.checkpoint.stem}" if self.checkpoint else self.arch)
        self.device = device
        self._trust_pickle = trust_pickle
        self._network = network
        self._placed = False
        self._sha256 = None

    @property
    def network(self):
        """The network with its weights, on its device, in eval mode (built on first access)."""
        if self._network is None:
            from model import build
            from model.checkpoints import build_and_load, read_state_dict

            # The file first: an empty or foreign file fails before the (300 M-parameter) build.
            state = read_state_dict(self.checkpoint, trust_pickle=self._trust_pickle)
            self._network = build_and_load(lambda: build(self.arch), state, source=self.checkpoint, arch=self.arch)
        if not self._placed:
            self.device = resolve_device(self.device)
            self._network = self._network.to(self.device).eval()
            self._placed = True
        return self._network

    def info(self) -> dict:
        from taskgen.shards import file_sha256

        from .builtins import adapter_code_sha256, network_code_sha256

        network = self.network  # first: an unreadable file is reported by the loader, by name
        if self._sha256 is None and self.checkpoint is not None:
            self._sha256 = file_sha256(self.checkpoint)
        return {"params": int(sum(p.numel() for p in network.parameters())), "device": str(self.device),
                "arch": self.arch, "checkpoint": str(self.checkpoint or ""), "checkpoint_sha256": self._sha256 or "",
                "results_settings": {"network_code": network_code_sha256(network),
                                     "adapter_code": adapter_code_sha256(self)}, **self._interface()}

    def _interface(self) -> dict:  # pragma: no cover - overridden
        return {}


# ----------------------------------------------------------------------------- PromptGIP

def saved_colour_order(checkpoint: Path | None) -> str:
    """The colour_order a safetensors file's metadata records ("" for another file or none recorded)."""
    if checkpoint is None or checkpoint.suffix != ".safetensors" or not checkpoint.is_file():
        return ""
    from .checkpoint import _safetensors_metadata

    return str(_safetensors_metadata(checkpoint).get("colour_order", ""))


@register_generalist("promptgip", "PromptGIP with official weights: 256² BGR, 4-image sequence, answer masked")
class PromptGIPGeneralist(_OfficialGeneralist):
    """Official PromptGIP inference (``evaluation_prompt.py``); ``bgr=False`` for weights trained on RGB."""

    default_arch = "promptgip"

    def __init__(self, *args, bgr: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if bgr is not None and not isinstance(bgr, bool):
            raise ValueError(f"{self.name}: option bgr must be true or false, not {bgr!r}")
        saved = saved_colour_order(self.checkpoint)
        if bgr is not None and saved and bgr != (saved == "bgr"):
            from model.checkpoints import CheckpointError

            raise CheckpointError(f"{self.checkpoint}: saved with colour_order {saved}, but bgr={bgr} was given; "
                                  "leave bgr out to follow the file")
        # The official weights take BGR; our safetensors record the order they were trained in.
        self.bgr = bgr if bgr is not None else saved != "rgb"

    def predict(self, query, prompt_input, prompt_target):
        import torch

        network = self.network
        side = network.config.img_size
        flip = (lambda t: t.flip(1)) if self.bgr else (lambda t: t)
        with torch.inference_mode():
            q, p_in, p_out = (flip(resize_quantized(t.to(self.device).float(), (side, side), "bilinear"))
                              for t in (query, prompt_input, prompt_target))
            answer = flip(network(q, p_in, p_out)).clamp(0, 1)
            return resize_back(answer, tuple(query.shape[-2:]))

    def _interface(self) -> dict:
        side = self.network.config.img_size
        return {"size": f"prompt pair and query resized to {side}×{side} (bilinear, antialiased, 8-bit levels); "
                        "output resized back to the query (bilinear, antialiased)",
                "colour_order": "bgr" if self.bgr else "rgb", "normalisation": "none"}


# ----------------------------------------------------------------------------- Painter

@register_generalist("painter", "Painter with official weights: 896×448 canvas, prompt above query, bottom masked")
class PainterGeneralist(_OfficialGeneralist):
    """Official Painter low-level inference (``eval/{derain,lol,sidd}/painter_inference_*.py``)."""

    default_arch = "painter"

    def predict(self, query, prompt_input, prompt_target):
        import torch
        import torch.nn.functional as F

        network = self.network
        side = network.config.img_size[1]
        with torch.inference_mode():
            q, p_in, p_out = (imagenet_normalize(pil_resize(t.float(), (side, side)).to(self.device))
                              for t in (query, prompt_input, prompt_target))
            imgs, tgts = painter_canvases(q, p_in, p_out)
            pred = network(imgs, tgts, network.query_mask(imgs.shape[0], imgs.device))
            answer = imagenet_denormalize(pred[..., side:, :])
            # The official evaluation resizes back with plain bicubic interpolation (no antialiasing).
            answer = F.interpolate(answer, size=tuple(query.shape[-2:]), mode="bicubic", align_corners=False)
            return answer.clamp(0, 1)

    def _interface(self) -> dict:
        h, w = self.network.config.img_size
        return {"size": f"each image resized to {w}×{w} by Pillow (bicubic, from 8-bit RGB); canvas {h}×{w} "
                        "with the prompt above the query, bottom half masked; answer resized back bicubically",
                "colour_order": "rgb", "normalisation": "imagenet"}


# ----------------------------------------------------------------------------- PromptIR

@register_generalist("promptir", "PromptIR with official weights: RGB query only, reflect-padded to a multiple of 8")
class PromptIRGeneralist(_OfficialGeneralist):
    """Official PromptIR inference (``demo.py``): the visual prompt is not an input of the model."""

    default_arch = "promptir"

    def predict(self, query, prompt_input, prompt_target):
        import torch

        from .adapters import pad_to_multiple

        network = self.network
        with torch.inference_mode():
            # The official test script centre-crops to a multiple of 16 instead; padding (the
            # demo's rule) keeps every query pixel, which the bench scores.
            padded, (h, w) = pad_to_multiple(query.to(self.device).float(), network.config.query_multiple)
            return network(padded)[..., :h, :w].clamp(0, 1)

    def _interface(self) -> dict:
        multiple = self.network.config.query_multiple
        return {"size": f"query reflect-padded bottom/right to a multiple of {multiple}, output cropped back; "
                        "prompt images ignored",
                "colour_order": "rgb", "normalisation": "none"}


# ----------------------------------------------------------------------------- family lookup

ADAPTERS = {cls.default_arch: cls for cls in (PromptGIPGeneralist, PainterGeneralist, PromptIRGeneralist)}


def adapter_for(arch: str) -> str | None:
    """The adapter (``promptgip``, ``painter``, ``promptir``) that runs files written by the authors'
    code for any config of ``arch``'s family (same factory), or None (another family, or unknown)."""
    from model import get_architecture

    try:
        factory = get_architecture(arch).factory
    except KeyError:  # an architecture registered elsewhere (a builder=): no adapter
        return None
    return next((name for name in ADAPTERS if get_architecture(name).factory == factory), None)
