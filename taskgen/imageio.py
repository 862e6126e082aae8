"""Reading user images robustly into the RGB uint8 contract, and encoding PNGs deterministically.

Every failure is an ``UnreadableImage`` whose ``reason`` is a short, countable phrase
("zero-byte file", "truncated or corrupt", ...), so folder sources can skip and count.
"""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


class UnreadableImage(ValueError):
    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _png_bit_depth(data: bytes) -> int | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24:
        return data[24]
    return None


def _scale16(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _from_cv2(data: bytes, path) -> np.ndarray:
    """Decode with OpenCV (16-bit colour PNG/TIFF); returns RGB(A)/gray of the file's depth."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise UnreadableImage(path, "not an image")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return arr


def _from_pil(data: bytes, path) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # forces a full decode: truncated files raise here
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(img, dtype=np.uint16 if mode.startswith("I;16") else np.int32)
            if mode in ("F",):
                raise UnreadableImage(path, "floating-point image (unsupported)")
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
                return np.asarray(img.convert("RGBA"))
            if mode == "L":
                return np.asarray(img)
            return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:
        raise UnreadableImage(path, "not an image") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UnreadableImage(path, f"truncated or corrupt ({err})") from None


def to_rgb8(arr: np.ndarray, path="<array>") -> np.ndarray:
    """Any decoded array -> uint8 RGB: gray expanded, alpha composited on white, 16-bit scaled."""
    if arr.dtype.kind == "f":  # OpenCV decodes 32-bit float TIFFs; their range ([0, 1]? HDR?) is unknown
        raise UnreadableImage(path, "floating-point image (unsupported)")
    if arr.dtype == np.uint16 or (arr.dtype == np.int32 and arr.max(initial=0) > 255):
        arr = _scale16(arr)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 2:  # gray + alpha
        arr = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        rgb = arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    raise UnreadableImage(path, f"unsupported layout {arr.shape}")


def read_image(path: str | Path, keep_16bit: bool = False) -> np.ndarray:
    """Read any common image file as uint8 RGB HWC (uint16 for 16-bit files if ``keep_16bit``);
    raise ``UnreadableImage`` with a reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UnreadableImage(path, f"cannot read file ({err.strerror})") from None
    if not data:
        raise UnreadableImage(path, "zero-byte file")
    # PIL reads 16-bit colour PNGs by dropping the low byte; OpenCV keeps all 16 bits.
    if _png_bit_depth(data) == 16 or (keep_16bit and data[:4] in (b"II*\x00", b"MM\x00*")):
        arr = _from_cv2(data, path)
    else:
        try:
            arr = _from_pil(data, path)
        except UnreadableImage as err:
            if err.reason != "not an image":
                raise
            arr = _from_cv2(data, path)
    if keep_16bit and arr.dtype == np.uint16:
        return to_rgb16(arr, path)
    return to_rgb8(arr, path)


def to_rgb16(arr: np.ndarray, path="<array>") -> np.ndarray:
    """uint16 gray/RGB/RGBA -> uint16 RGB (alpha dropped: HDR files carry no meaningful alpha)."""
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return np.ascontiguousarray(arr[:, :, :3])
    raise UnreadableImage(path, f"unsupported 16-bit layout {arr.shape}")


def encode_png(image: np.ndarray, compression: int = 6) -> bytes:
    """RGB uint8/uint16 HWC (or HxW) -> PNG bytes, deterministic for a given OpenCV build."""
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_PNG_COMPRESSION, compression]
    if compression == 0:
        # Row filters only help deflate; without it they cost 8x in encoding and 3x in decoding.
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, buf = cv2.imencode(".png", arr, params)
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {image.shape} and dtype {image.dtype}")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> RGB HWC array of the stored depth (uint8 or uint16)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("not a decodable PNG")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return arr


def write_image_atomic(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB image as PNG via a temporary file and rename (never half-written)."""
    from .atomic import atomic_write_bytes

    return atomic_write_bytes(path, encode_png(image))
