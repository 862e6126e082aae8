"""The generalist protocol (DESIGN.md) and the checks at the border between a model and the bench.

A generalist is any object with

- ``name``: a short label for result rows and leaderboards;
- ``predict(query, prompt_input, prompt_target) -> output``: float RGB torch tensors in [0, 1] of
  shape ``B×3×H×W`` (the three inputs share B; the prompt pair may have another H×W than the
  query); the output has the query's shape. Size handling (padding, resizing, canvases) is the
  generalist's own business and is stated in ``info()``;
- optionally ``info() -> dict``: ``params`` (int), ``device`` (str: inputs are placed there),
  ``size`` (how sizes are handled), ``checkpoint_sha256`` and anything else worth recording.

The bench never trusts an output: ``check_output`` turns a wrong shape, dtype, NaN/inf or values
far outside [0, 1] into a ``BadOutput`` with a message that says what to fix. Mild overshoot
(normal for a network without a final clamp) is accepted and clamped when the output is quantized
like a saved image. torch is imported inside the functions so that ``bench`` imports without it.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

# Values outside [HARD_MIN, HARD_MAX] anywhere, or outside [-SOFT_SLACK, 1 + SOFT_SLACK] in more
# than SOFT_FRACTION of the values while reaching beyond [-DEEP_SLACK, 1 + DEEP_SLACK], mean the
# model is not returning [0, 1] images (0–255 or [-1, 1] outputs are the usual mistakes: a
# [-1, 1] image puts every value below 0.25 under -0.5); clipping those would hide a broken
# plug-in. The soft rule tolerates the overshoot of a network without a final clamp, and the
# depth condition a briefly trained one's undershoot over a black edge map (the CPU profile's
# genlv-tiny: 12 % of the values, none below -0.4, all scored as 0 after clamping); the wide hard
# bounds the odd far-off pixel (its score pays for it after clamping).
HARD_MIN, HARD_MAX = -3.0, 4.0
SOFT_SLACK = 0.1
SOFT_FRACTION = 0.1
DEEP_SLACK = 0.5

DEFAULT_INFO = {"params": None, "device": "cpu", "size": "any size (no adapter)", "checkpoint_sha256": ""}


@runtime_checkable
class Generalist(Protocol):
    name: str

    def predict(self, query, prompt_input, prompt_target):  # pragma: no cover - protocol
        ...


class GeneralistError(RuntimeError):
    """A generalist that cannot be found, built or described."""


class BadOutput(ValueError):
    """A prediction that breaks the protocol; the message names the problem and the fix."""


def is_generalist(obj: Any) -> bool:
    """True for an object (not a class) with a callable ``predict`` and a string ``name``."""
    return (not isinstance(obj, type) and callable(getattr(obj, "predict", None))
            and isinstance(getattr(obj, "name", None), str))


def describe(generalist) -> dict:
    """The generalist's ``info()`` over the defaults, JSON-friendly, with its ``name``."""
    info = dict(DEFAULT_INFO)
    extra = generalist.info() if callable(getattr(generalist, "info", None)) else {}
    if not isinstance(extra, dict):
        raise GeneralistError(f"{generalist.name}: info() must return a dict, got {type(extra).__name__}")
    info.update(extra)
    info["name"] = generalist.name
    return {k: jsonable(v) for k, v in info.items()}


def jsonable(value):
    """A value -> JSON-friendly: numpy scalars as Python, sequences as lists, anything else as str."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def images_to_tensor(images: Sequence[np.ndarray], device="cpu"):
    """List of uint8 (÷255) or uint16 (÷65535) RGB HWC images of one shape -> float32 B×3×H×W."""
    import torch

    dtypes = {np.dtype(image.dtype) for image in images}
    if len(dtypes) != 1:
        raise TypeError(f"images of one batch must share a dtype, got {sorted(map(str, dtypes))}")
    dtype = dtypes.pop()
    if dtype == np.uint8:
        scale = 1.0 / 255.0
    elif dtype == np.uint16:
        scale = 1.0 / 65535.0
    else:
        raise TypeError(f"images must be uint8 or uint16, got {dtype}")
    # Reorder while the data is still 1-2 bytes per value (OpenCV splits the planes straight into
    # the batch, ~2.5x faster than a strided copy); the float conversion then writes once.
    h, w, c = images[0].shape
    planes = np.empty((len(images), c, h, w), dtype=dtype)
    for image, dst in zip(images, planes):
        if image.shape != (h, w, c):
            raise ValueError(f"images of one batch must share a shape: {image.shape} != {(h, w, c)}")
        cv2.split(np.ascontiguousarray(image), mv=list(dst))
    return torch.from_numpy(planes).to(device=device).float().mul_(scale)


def quantize_tensor(output, dtype=np.uint8) -> np.ndarray:
    """float B×3×H×W tensor (any device) -> B×H×W×3 numpy ``dtype``, as ``bench.metrics.quantize``.

    Same float32 arithmetic (scale, clamp to [0, peak], round half to even), done where the tensor
    lives, so a GPU hands back 1-2 bytes per value instead of 4.
    """
    import torch

    from .metrics import peak_value

    peak = peak_value(dtype)
    values = output.detach()
    if values.device.type == "cpu":
        return _quantize_planes(values.float().numpy(), dtype)
    scaled = values.float().mul(peak).clamp_(0.0, peak).round_()  # on the device
    planes = scaled.to(torch.uint8 if peak == 255.0 else torch.int32).cpu().numpy()  # torch's uint16 is partial
    return np.stack([cv2.merge(list(image.astype(dtype, copy=False))) for image in planes]).reshape(
        planes.shape[0], *planes.shape[2:], -1)


def _quantize_planes(planes: np.ndarray, dtype) -> np.ndarray:
    """float32 B×C×H×W -> B×H×W×C ``dtype`` (``bench.metrics.quantize``), through one reused buffer.

    OpenCV interleaves the planes (~25x faster than a strided copy); the quantizer then works in
    place on a buffer that stays in cache.
    """
    from .metrics import quantize

    b, c, h, w = planes.shape
    out = np.empty((b, h, w, c), dtype=dtype)
    work = np.empty((h, w, c), dtype=np.float32)
    for image, target in zip(planes, out):
        image = np.ascontiguousarray(image)  # a no-op unless the model returned a strided tensor
        if c == 1:
            np.copyto(work[..., 0], image[0])
        else:
            cv2.merge(list(image), dst=work)
        quantize(work, dtype, out=target, in_place=True)
    return out


def check_output(output, expected_shape: tuple[int, int, int, int], who: str = "generalist",
                 check_values: bool = True, quantize_to=None) -> np.ndarray:
    """A predict() result -> B×H×W×3 numpy array on the CPU, or ``BadOutput``.

    Checks type, dtype, shape, then (``check_values``) finiteness and range, in that order, so the
    first message is the most useful one. Returns the values unclamped as float32, or, with
    ``quantize_to`` (uint8/uint16), clamped and rounded like a saved image (``quantize_tensor``).
    """
    import torch

    if not isinstance(output, torch.Tensor):
        raise BadOutput(f"{who}: predict() must return a torch.Tensor, got {type(output).__name__}")
    if not output.is_floating_point():
        raise BadOutput(f"{who}: predict() returned dtype {output.dtype}; expected a float tensor in [0, 1] "
                        "(convert with .float() / 255 if the model produces 0-255 integers)")
    if tuple(output.shape) != tuple(expected_shape):
        raise BadOutput(f"{who}: predict() returned shape {tuple(output.shape)}, expected {tuple(expected_shape)} "
                        "(B×3×H×W at the query's size; resizing back is the adapter's job)")
    values = output.detach()
    if check_values:
        _check_values(values, who)
    if quantize_to is not None:
        return quantize_tensor(values, quantize_to)
    return values.float().permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _check_values(values, who: str) -> None:
    """NaN/inf anywhere, or values far outside [0, 1] -> ``BadOutput``; computed on the tensor's device."""
    import torch

    lo, hi = (float(v) for v in torch.aminmax(values.float()))  # NaN and inf show up in the extremes
    size = values.numel()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(size - torch.isfinite(values).sum())
        raise BadOutput(f"{who}: predict() returned {bad} NaN/inf values out of {size}")
    outside = 0
    if lo < -SOFT_SLACK or hi > 1.0 + SOFT_SLACK:
        outside = int(((values < -SOFT_SLACK) | (values > 1.0 + SOFT_SLACK)).sum())
    deep = lo < -DEEP_SLACK or hi > 1.0 + DEEP_SLACK
    if lo < HARD_MIN or hi > HARD_MAX or (outside > SOFT_FRACTION * size and deep):
        raise BadOutput(f"{who}: predict() values span [{lo:.4g}, {hi:.4g}] with {outside} of {size} "
                        f"outside [{-SOFT_SLACK}, {1 + SOFT_SLACK}]; expected [0, 1] "
                        "(is the model returning 0-255 or [-1, 1] values?)")
