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
