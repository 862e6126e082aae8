"""Colour and tone operations on float RGB images: transfer functions, curves, white balance,
vibrance, local contrast, CLAHE, quantile matching and the underwater image formation model.

Unless a docstring says otherwise, images are float32 HxWx3 RGB; "display" values are
sRGB-encoded in [0, 1] and "linear" values are scene/display light (1 = diffuse white, may exceed 1).
"""
from __future__ import annotations

import cv2
import numpy as np

# ITU-R BT.709 / sRGB luminance weights for *linear* RGB.
BT709_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def srgb_to_linear(display: np.ndarray) -> np.ndarray:
    """float sRGB-encoded [0,1] -> float32 linear [0,1] (IEC 61966-2-1 piecewise curve)."""
    x = np.clip(np.asarray(display, np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """float32 linear (clipped to [0,1]) -> float32 sRGB-encoded [0,1]."""
    x = np.clip(np.asarray(linear, np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1.0 / 2.4) - 0.055).astype(np.float32)


def luminance(linear: np.ndarray) -> np.ndarray:
    """float32 linear RGB HxWx3 -> float32 HxW BT.709 relative luminance."""
    return np.asarray(linear, np.float32) @ BT709_LUMA


def luma601(display: np.ndarray) -> np.ndarray:
    """float32 display RGB HxWx3 in [0,1] -> float32 HxW BT.601 luma (OpenCV's RGB2GRAY weights)."""
    return cv2.cvtColor(np.asarray(display, np.float32), cv2.COLOR_RGB2GRAY)


def apply_curve(values: np.ndarray, xs, ys) -> np.ndarray:
    """Piecewise-linear curve through control points (xs increasing) -> float32, same shape."""
    return np.interp(values, np.asarray(xs, np.float64), np.asarray(ys, np.float64)).astype(np.float32)


def s_curve(display: np.ndarray, steepness: float, pivot: float = 0.5) -> np.ndarray:
    """float [0,1] -> float32 [0,1]: logistic contrast S-curve about ``pivot``, renormalised so 0->0 and 1->1.

    ``steepness`` is the logistic slope k; k -> 0 tends to the identity, k = 4 is a moderate S.
    """
    x = np.clip(np.asarray(display, np.float32), 0.0, 1.0)
    if steepness < 1e-3:
        return x
    k = np.float32(steepness)
    lo = 1.0 / (1.0 + np.exp(k * pivot))
    hi = 1.0 / (1.0 + np.exp(-k * (1.0 - pivot)))
    y = (1.0 / (1.0 + np.exp(-k * (x - np.float32(pivot)))) - lo) / (hi - lo)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def contrast_about(display: np.ndarray, factor: float, pivot: float = 0.5) -> np.ndarray:
    """float [0,1] -> float32 [0,1]: linear contrast scaling about ``pivot`` (factor < 1 flattens), clipped."""
    return np.clip(pivot + (np.asarray(display, np.float32) - pivot) * np.float32(factor), 0.0, 1.0)


def white_balance_gains(temperature_stops: float, tint_stops: float) -> np.ndarray:
    """Per-channel linear gains (3,) float32 for a warm/cool shift and a green/magenta tint, in stops.

    Positive temperature warms (red up, blue down); positive tint is greener. Green is the anchor
    for temperature, as camera white balance keeps green fixed.
    """
    return np.array([2.0 ** temperature_stops, 2.0 ** tint_stops, 2.0 ** -temperature_stops], np.float32)


def saturate(display: np.ndarray, amount: float) -> np.ndarray:
    """float [0,1] RGB -> float32 [0,1]: scale chroma about the BT.601 luma (amount 1 = identity)."""
    x = np.asarray(display, np.float32)
    y = luma601(x)[:, :, None]
    return np.clip(y + (x - y) * np.float32(amount), 0.0, 1.0)


def vibrance(display: np.ndarray, amount: float) -> np.ndarray:
    """float [0,1] RGB -> float32 [0,1]: saturation boost weighted toward muted colours (as editors' Vibrance)."""
    x = np.asarray(display, np.float32)
    y = luma601(x)[:, :, None]
    sat = (x.max(axis=2, keepdims=True) - x.min(axis=2, keepdims=True))
    # Already-saturated pixels gain little, which keeps skin and vivid colours from clipping.
    gain = 1.0 + np.float32(amount) * (1.0 - sat)
    return np.clip(y + (x - y) * gain, 0.0, 1.0)


def local_contrast(display: np.ndarray, amount: float, sigma_frac: float = 0.04) -> np.ndarray:
    """float [0,1] RGB -> float32 [0,1]: "clarity" - large-radius unsharp mask on luma, added to all channels.

    The radius is a fraction of the image's short side so the look is the same at any resolution.
    """
    x = np.asarray(display, np.float32)
    y = luma601(x)
    sigma = max(1.0, sigma_frac * min(x.shape[:2]))
    detail = y - cv2.GaussianBlur(y, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    # Mid-tones get the full boost; near black/white it fades so clarity does not clip.
    weight = 4.0 * y * (1.0 - y)
    return np.clip(x + (np.float32(amount) * detail * weight)[:, :, None], 0.0, 1.0)


def clahe_lightness(image: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """uint8 RGB -> uint8 RGB: CLAHE (Zuiderveld 1994) on the L channel of OpenCV's 8-bit CIELAB,
    a and b kept, so the contrast changes and the colour cast stays (the GenLV reference's ICE)."""
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tiles), int(tiles)))
    lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def quantiles(values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Empirical quantiles (float64) of ``values`` at probabilities ``probs`` (linear interpolation)."""
    return np.quantile(np.asarray(values, np.float64).ravel(), probs)


def match_quantiles(values: np.ndarray, probs: np.ndarray, target_quantiles: np.ndarray) -> np.ndarray:
    """float array -> float32: monotone remap so its quantiles at ``probs`` become ``target_quantiles``.

    Histogram specification through a piecewise-linear CDF: each value's rank (interpolated
    between the source quantiles) is looked up in the target quantile function. A value that
    several knots share (a flat image, a clipped region) takes the middle of their ranks.
    """
    src = quantiles(values, probs)
    # Knots nudged apart upwards resolve a tie to its lowest rank, nudged downwards to its highest;
    # their mean is the mid-rank (a flat image maps to the target's median, not to its black).
    ramp = np.arange(src.size) * 1e-9
    rank = 0.5 * (np.interp(values, src + ramp, probs) + np.interp(values, src - ramp[::-1], probs))
    return np.interp(rank, probs, target_quantiles).astype(np.float32)


def underwater_formation(linear: np.ndarray, distance_m: np.ndarray, beta: np.ndarray,
                         veiling_light: np.ndarray) -> np.ndarray:
    """Simplified underwater image formation (Jaffe-McGlamery; Akkaynak & Treibitz 2018, one beta per channel).

    I_c = J_c exp(-beta_c d) + B_c (1 - exp(-beta_c d)); ``linear`` float32 HxWx3 scene colours
    J, ``distance_m`` float32 HxW in metres, ``beta`` (3,) 1/m attenuation, ``veiling_light`` (3,)
    backscatter colour B at infinity. Returns float32 linear HxWx3.
    """
    t = np.exp(-np.asarray(distance_m, np.float32)[:, :, None] * np.asarray(beta, np.float32)[None, None, :])
    return (np.asarray(linear, np.float32) * t + np.asarray(veiling_light, np.float32) * (1.0 - t)).astype(np.float32)
