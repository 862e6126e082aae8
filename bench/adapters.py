"""Helpers for adapters: the protocol leaves size handling and placement to the generalist (DESIGN.md).

Third-party adapters may use them too: pad a query to what a network accepts and crop back,
resize a prompt to the query's size, pick the device. Tensors are B×C×H×W; torch is imported on use.
"""
from __future__ import annotations


def resize_to(images, size: tuple[int, int]):
    """B×C×H×W float tensor -> B×C×size, bilinear with antialiasing (unchanged if already that size)."""
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def pad_to_multiple(images, multiple: int):
    """B×C×H×W tensor -> (reflect-padded on the bottom/right to multiples of ``multiple``, (H, W))."""
    import torch.nn.functional as F

    h, w = images.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return images, (h, w)
    # Reflection needs the pad to be smaller than the side; replicate covers tiny images.
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode), (h, w)


def resolve_device(device: str) -> str:
    """``auto`` -> "cuda" when a GPU is present, else "cpu"; any other name unchanged, but a CUDA
    device without CUDA is a ValueError (once, here, instead of a failure in every unit)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        why = "this torch is a CPU build" if torch.version.cuda is None else "no GPU is visible"
        raise ValueError(f"device {device!r} asked for, but CUDA is not available ({why}); use cpu or auto")
    return device


OFFICIAL_GENLV_SIDE = 256  # both GenLV inference.py files resize every image to 256×256


def resize_back(images, size: tuple[int, int]):
    """Network answer -> query size (bilinear, antialiased), clamped to [0, 1]; no rounding."""
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    return images.clamp(0, 1)


def official_genlv_resize(images, rule: str, side: int = OFFICIAL_GENLV_SIDE):
    """B×3×H×W float in [0, 1] -> B×3×side×side as the authors' GenLV inference resizes (float, not rounded).

    ``rule`` (``model.registry.OfficialWeights.inference_resize``): "linear" is the conference
    ``inference.py`` (``cv2.INTER_LINEAR``); "cubic-area" the extended one (``INTER_CUBIC`` when a side
    is under ``side``, else ``INTER_AREA``). Both read the image as float in [0, 1] before resizing.
    """
    import torch.nn.functional as F

    h, w = images.shape[-2:]
    if (h, w) == (side, side):
        return images
    if rule == "linear":  # cv2's INTER_LINEAR on floats: half-pixel centres, no antialiasing
        return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=False)
    if rule == "cubic-area":
        if h < side or w < side:  # cv2's INTER_CUBIC: a = -0.75 as torch's, edge pixels repeated
            return F.interpolate(images, size=(side, side), mode="bicubic", align_corners=False, antialias=False)
        return area_shrink(images, (side, side))
    raise ValueError(f"unknown GenLV inference resize rule {rule!r}; known: linear, cubic-area")


def area_weights(source: int, target: int, dtype=None, device=None):
    """(target, source) matrix of cv2's INTER_AREA for a shrink (target <= source): output i averages the
    input interval [i·s, (i+1)·s), s = source/target, each pixel weighted by the length it overlaps."""
    import torch

    if target > source:
        raise ValueError(f"area_weights shrinks only: {source} -> {target}")
    scale = source / target
    starts = torch.arange(target, dtype=torch.float64)[:, None] * scale
    pixels = torch.arange(source, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(starts + scale, pixels + 1) - torch.maximum(starts, pixels)).clamp_min(0)
    return (overlap / scale).to(dtype=dtype, device=device)


def area_shrink(images, size: tuple[int, int]):
    """B×C×H×W -> B×C×size by exact pixel-area averaging (cv2.INTER_AREA); each side must shrink or stay."""
    import torch

    rows = area_weights(images.shape[-2], size[0], images.dtype, images.device)
    cols = area_weights(images.shape[-1], size[1], images.dtype, images.device)
    return torch.einsum("yh,bchw,xw->bcyx", rows, images, cols)
