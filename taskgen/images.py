"""Small image conversions shared by every task: dtype/range changes, checks, resizing, crops.

Convention (DESIGN.md): RGB, HWC; uint8 for ordinary images, uint16 for HDR images. OpenCV is
called on RGB arrays directly wherever the operation is colour-order agnostic.
"""
from __future__ import annotations

import cv2
import numpy as np


class ImageContractError(ValueError):
    """An array that is not a uint8/uint16 RGB HWC image where one is required."""


def check_rgb(image: np.ndarray, what: str = "image", dtypes=(np.uint8,)) -> np.ndarray:
    """Validate an RGB HWC image of the allowed dtypes; raise a clear error naming ``what``."""
    if not isinstance(image, np.ndarray):
        raise ImageContractError(f"{what}: expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageContractError(f"{what}: expected HxWx3 RGB, got shape {image.shape}")
    if image.dtype not in dtypes:
        names = "/".join(np.dtype(d).name for d in dtypes)
        raise ImageContractError(f"{what}: expected dtype {names}, got {image.dtype}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ImageContractError(f"{what}: image {image.shape[:2]} is smaller than 8x8")
    return image


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 [0,255] or uint16 [0,65535] -> float32 [0,1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1.0 / 255.0)
    if image.dtype == np.uint16:
        return image.astype(np.float32) * np.float32(1.0 / 65535.0)
    if image.dtype in (np.float32, np.float64):
        return image.astype(np.float32, copy=False)
    raise ImageContractError(f"to_float: unsupported dtype {image.dtype}")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0,1] (clipped) -> uint8 with round-half-to-even, as a saved image would be."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def to_uint16(image: np.ndarray) -> np.ndarray:
    """float [0,1] (clipped) -> uint16 full range."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 65535.0), 0, 65535).astype(np.uint16)


def gray(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> uint8 HxW luma (ITU-R BT.601 weights, as OpenCV's RGB2GRAY)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def gray_to_rgb(channel: np.ndarray) -> np.ndarray:
    """HxW single channel -> HxWx3 by repetition (edge maps, pencil drawings)."""
    return np.repeat(channel[:, :, None], 3, axis=2)


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
    """Upscale (bicubic) so that the short side is at least ``size``; never downscales."""
    h, w = image.shape[:2]
    short = min(h, w)
    if short >= size:
        return image
    scale = size / short
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_CUBIC)


def random_crop_box(shape: tuple[int, int], size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner (y, x) of a uniformly drawn ``size``x``size`` crop inside ``shape``."""
    h, w = shape[:2]
    if h < size or w < size:
        raise ImageContractError(f"cannot crop {size}x{size} from an image of {h}x{w}")
    return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
