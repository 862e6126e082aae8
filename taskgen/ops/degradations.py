"""Pure degradation operations used by the restoration tasks and the mixed chain.

Every operation maps a uint8 RGB HxWx3 image to a uint8 RGB image of the same size, rounding once
at its end: chained operations are therefore quantised between stages, as the reference
(PromptGIP / GenLV) data loaders do. Randomness enters only through an explicit
``numpy.random.Generator`` argument; the parameters themselves are drawn by the task recipes.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..images import to_float, to_uint8

# --------------------------------------------------------------------------------------------
# Noise


def add_gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB -> uint8 RGB plus i.i.d. N(0, sigma^2) per pixel and channel; sigma in 0..255 units."""
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return to_uint8(to_float(image) + noise)


def add_poisson_noise(image: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB -> uint8 RGB with shot noise Poisson(x * peak) / peak, x in [0, 1] (peak 100 = reference)."""
    photons = rng.poisson(to_float(image).astype(np.float64) * peak)
    return to_uint8(photons / peak)


def salt_pepper_map(shape: tuple[int, int], amount: float, salt_fraction: float,
                    rng: np.random.Generator) -> np.ndarray:
    """HxW int8 map: +1 salt, -1 pepper, 0 untouched; ``amount`` of the pixels are corrupted."""
    corrupted = rng.random(shape) < amount
    salt = rng.random(shape) < salt_fraction
    return np.where(corrupted, np.where(salt, 1, -1), 0).astype(np.int8)


def apply_salt_pepper(image: np.ndarray, impulses: np.ndarray) -> np.ndarray:
    """uint8 RGB + int8 impulse map -> uint8 RGB with whole pixels set to white (+1) or black (-1)."""
    out = image.copy()
    out[impulses > 0] = 255
    out[impulses < 0] = 0
    return out


# --------------------------------------------------------------------------------------------
# Blur, ringing, deconvolution


def gaussian_blur(image: np.ndarray, sigma: float, ksize: int = 15) -> np.ndarray:
    """uint8 RGB -> uint8 RGB blurred by an isotropic ksize x ksize Gaussian of std ``sigma`` px."""
    return to_uint8(cv2.GaussianBlur(to_float(image), (ksize, ksize), sigma, borderType=cv2.BORDER_REFLECT_101))


def jinc_kernel(cutoff: float, size: int = 15, pad_to: int = 0) -> np.ndarray:
    """float32 size x size ideal circular low-pass (jinc) kernel, cutoff in rad/px (pi = Nyquist), sum 1.

    The 2-D inverse Fourier transform of a disc of radius ``cutoff`` is cutoff * J1(cutoff r) / (2 pi r);
    truncating it to a small window keeps its side lobes, which is what produces ringing.
    """
    from scipy.special import j1  # imported here so that importing the module stays cheap

    if size % 2 != 1 or (pad_to and pad_to % 2 != 1):
        raise ValueError("jinc kernel sizes must be odd")
    half = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.hypot(xs - half, ys - half)
    safe_r = np.where(r == 0, 1.0, r)
    kernel = np.where(r == 0, cutoff ** 2 / (4 * np.pi), cutoff * j1(cutoff * safe_r) / (2 * np.pi * safe_r))
    kernel /= kernel.sum()
    if pad_to > size:
        pad = (pad_to - size) // 2
        kernel = np.pad(kernel, pad)
    return kernel.astype(np.float32)


def filter_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """uint8 RGB -> uint8 RGB correlated with a float kernel, reflect-101 borders (as torch 'reflect')."""
    return to_uint8(cv2.filter2D(to_float(image), -1, kernel, borderType=cv2.BORDER_REFLECT_101))


def add_ringing(image: np.ndarray, cutoff: float, size: int = 15, pad_to: int = 21) -> np.ndarray:
    """uint8 RGB -> uint8 RGB low-passed by a truncated jinc kernel (ringing/overshoot at edges)."""
    return filter_image(image, jinc_kernel(cutoff, size, pad_to))


def convolve_same(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """float32 HxW(xC) convolved with ``psf`` (odd size), output the input's size, zeros outside
    (scipy.signal.convolve's mode 'same', which skimage's Richardson-Lucy uses)."""
    flipped = np.ascontiguousarray(psf[::-1, ::-1], dtype=np.float32)  # filter2D correlates
    return cv2.filter2D(image, -1, flipped, borderType=cv2.BORDER_CONSTANT)


def richardson_lucy(observed: np.ndarray, psf: np.ndarray, iterations: int, start: float = 0.5) -> np.ndarray:
    """float32 [0,1] image -> float32 Richardson-Lucy estimate, as skimage.restoration.richardson_lucy:
    from a flat ``start`` image, ``estimate *= psf_mirror * (observed / (psf * estimate))``, zero-padded
    convolutions, clipped to [-1, 1]."""
    observed = observed.astype(np.float32)
    estimate = np.full_like(observed, np.float32(start))
    mirror = psf[::-1, ::-1]
    for _ in range(iterations):
        blurred = convolve_same(estimate, psf) + np.float32(1e-12)
        estimate *= convolve_same(observed / blurred, mirror)
    return np.clip(estimate, -1.0, 1.0)


RL_PSF_SIZE = 5   # the reference's 5x5 uniform PSF
RL_PAD = 7        # the reference pads 7 px with a linear ramp to 0 before deconvolving, then crops


def add_rl_artifacts(image: np.ndarray, iterations: int = 1) -> np.ndarray:
    """uint8 RGB -> uint8 RGB: the reference's R-L degradation (PromptGIP/GenLV ``r_l``): the image,
    padded 7 px with a linear ramp to 0, deconvolved with a 5x5 uniform PSF for one iteration from
    the flat start, cropped back. One iteration from a flat start is the PSF blur itself, so this is
    a 5x5 box blur whose border reads the ramp."""
    pad = ((RL_PAD, RL_PAD), (RL_PAD, RL_PAD), (0, 0))
    padded = np.pad(to_float(image), pad, mode="linear_ramp", end_values=0.0)
    psf = np.full((RL_PSF_SIZE, RL_PSF_SIZE), 1.0 / RL_PSF_SIZE ** 2, np.float32)
    estimate = richardson_lucy(padded, psf, iterations)
    return to_uint8(estimate[RL_PAD:-RL_PAD, RL_PAD:-RL_PAD])


# --------------------------------------------------------------------------------------------
# Lines (inpainting masks)


def random_lines(shape: tuple[int, int], count: int, rng: np.random.Generator) -> list[list[int]]:
    """``count`` segments [x1, y1, x2, y2] with end points uniform on the closed image rectangle."""
    h, w = shape
    xs = rng.integers(0, w + 1, (count, 2))
    ys = rng.integers(0, h + 1, (count, 2))
    return [[int(xs[i, 0]), int(ys[i, 0]), int(xs[i, 1]), int(ys[i, 1])] for i in range(count)]


def line_mask(shape: tuple[int, int], lines: list[list[int]], thickness: int) -> np.ndarray:
    """HxW bool mask of the given segments drawn ``thickness`` px wide (8-connected, no anti-aliasing)."""
    mask = np.zeros(shape, np.uint8)
    for x1, y1, x2, y2 in lines:
        cv2.line(mask, (x1, y1), (x2, y2), 1, thickness, cv2.LINE_8)
    return mask.astype(bool)


def paint_mask(image: np.ndarray, mask: np.ndarray, value: int) -> np.ndarray:
    """uint8 RGB -> uint8 RGB with the masked pixels set to ``value`` in every channel."""
    out = image.copy()
    out[mask] = value
    return out


# --------------------------------------------------------------------------------------------
# JPEG


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """uint8 RGB -> uint8 RGB after a baseline JPEG round trip at ``quality`` (OpenCV/libjpeg, 4:2:0)."""
    settings = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), settings)
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------------------------
# Rain


def streak_kernel(length: float, angle_deg: float, blur_ksize: int = 1) -> np.ndarray:
    """float32 kernel of an anti-aliased line ``length`` px long, ``angle_deg`` from vertical, peak 1.

    Positive angles tilt the lower end to the right (rain driven rightwards). ``blur_ksize`` (odd)
    widens the line with a Gaussian of that window, as a thicker, out-of-focus drop would be.
    """
    theta = math.radians(angle_deg)
    dx, dy = math.sin(theta), math.cos(theta)
    size = int(math.ceil(length)) + blur_ksize + 2
    size += 1 - size % 2
    half = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs -= half
    ys -= half
    along = np.clip(xs * dx + ys * dy, -length / 2.0, length / 2.0)
    dist = np.hypot(xs - along * dx, ys - along * dy)
    kernel = np.clip(1.0 - dist, 0.0, 1.0).astype(np.float32)  # 1-px wide tent across the line
    if blur_ksize > 1:
        kernel = cv2.GaussianBlur(kernel, (blur_ksize, blur_ksize), 0)
    return kernel / kernel.max()


def rain_drops(shape: tuple[int, int], density: float, rng: np.random.Generator) -> np.ndarray:
    """float32 HxW map with 1 at drop centres: each pixel holds a drop with probability ``density``."""
    return (rng.random(shape) < density).astype(np.float32)


def streak_layer(drops: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """float32 HxW drop map -> float32 HxW streak intensities (drops smeared along the streak kernel)."""
    return cv2.filter2D(drops, -1, kernel, borderType=cv2.BORDER_CONSTANT)


def add_rain_simple(image: np.ndarray, density: float, length: int, angle_deg: float, blur_ksize: int,
                    rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB -> uint8 RGB plus one additive white streak layer, min-max scaled to [0, 1] (PromptGIP model)."""
    layer = streak_layer(rain_drops(image.shape[:2], density, rng), streak_kernel(length, angle_deg, blur_ksize))
    lo, hi = float(layer.min()), float(layer.max())
    layer = (layer - lo) / max(hi - lo, 1e-6)
    return to_uint8(to_float(image) + layer[:, :, None])


def screen_blend(base: np.ndarray, light: np.ndarray) -> np.ndarray:
    """float [0,1] base HxWx3, light HxW or HxWx3 -> 1 - (1 - base)(1 - light): brightens without clipping."""
    if light.ndim == 2:
        light = light[:, :, None]
    return 1.0 - (1.0 - base) * (1.0 - light)


def smooth_field(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """float32 HxW random field in [0, 1] varying over about ``scale`` px (blurred white noise, min-max scaled)."""
    h, w = shape
    noise = rng.random((max(2, round(h / scale)), max(2, round(w / scale)))).astype(np.float32)
    field = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=scale / 4.0)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)


def add_veil(image_f: np.ndarray, strength: np.ndarray | float, airlight: float) -> np.ndarray:
    """float [0,1] RGB -> float RGB mixed towards grey ``airlight`` by ``strength`` (scalar or HxW map)."""
    s = strength[:, :, None] if isinstance(strength, np.ndarray) else strength
    return image_f * (1.0 - s) + airlight * s


def splash_layer(shape: tuple[int, int], splashes: list[list[float]]) -> np.ndarray:
    """float32 HxW layer of flattened soft ellipses, one per [x, y, radius, brightness] splash."""
    layer = np.zeros(shape, np.float32)
    for x, y, radius, brightness in splashes:
        axes = (max(1, int(round(radius * 1.6))), max(1, int(round(radius * 0.7))))
        cv2.ellipse(layer, (int(round(x)), int(round(y))), axes, 0, 0, 360, float(brightness), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(layer, (0, 0), 0.8)


def add_rain_complex(image: np.ndarray, layers: list[dict], veil: dict, splashes: list[list[float]],
                     rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB -> uint8 RGB with a rain veil, several streak layers and splashes, screen-blended.

    Each layer dict holds density, length, angle, blur_ksize, intensity; ``veil`` holds strength,
    airlight and field_scale (its spatial variation). Streak overlaps saturate at the layer's
    intensity rather than being min-max rescaled, so a drop's brightness does not depend on density.
    """
    shape = image.shape[:2]
    out = to_float(image)
    field = smooth_field(shape, veil["field_scale"], rng)
    out = add_veil(out, veil["strength"] * (0.5 + 0.5 * field), veil["airlight"])
    for layer in layers:
        kernel = streak_kernel(layer["length"], layer["angle"], layer["blur_ksize"])
        streaks = np.minimum(streak_layer(rain_drops(shape, layer["density"], rng), kernel), 1.0)
        out = screen_blend(out, layer["intensity"] * streaks)
    if splashes:
        out = screen_blend(out, np.minimum(splash_layer(shape, splashes), 1.0))
    return to_uint8(out)


# --------------------------------------------------------------------------------------------
# Haze and low light


def transmission(depth: np.ndarray, beta: float) -> np.ndarray:
    """float32 HxW depth in [0, 1] (1 = far) -> float32 HxW transmission exp(-beta * depth)."""
    return np.exp(-np.float32(beta) * depth.astype(np.float32))


def add_haze(image: np.ndarray, depth: np.ndarray, beta: float, airlight: float) -> np.ndarray:
    """uint8 RGB + depth -> uint8 RGB by the scattering model I = J t + A (1 - t), t = exp(-beta d)."""
    t = transmission(depth, beta)[:, :, None]
    return to_uint8(to_float(image) * t + np.float32(airlight) * (1.0 - t))


def darken(image: np.ndarray, scale: float, gamma: float) -> np.ndarray:
    """uint8 RGB -> uint8 RGB under-exposed as scale * x^gamma (x in [0, 1]; gamma >= 1 deepens shadows)."""
    return to_uint8(np.float32(scale) * np.power(to_float(image), np.float32(gamma)))
