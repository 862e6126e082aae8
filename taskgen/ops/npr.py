"""Non-photorealistic rendering primitives: colour spaces and palettes, colour quantisation, flat
brushwork (Kuwahara), stroke and dot rendering, screentone and hatching, paper and canvas textures.

Conventions: images are uint8 RGB HxWx3 or float32 RGB in [0, 1]; Lab is OpenCV's float Lab (L in
[0, 100], a and b roughly in [-128, 127]).  Textures (canvas weave) are fixed style assets drawn from a
fixed internal seed and cached; per-sample randomness (where strokes and dots go) always comes from
the caller's generator.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

CANVAS_SEED = 20240611  # fixed: the canvas weave is a style asset, identical for every sample


# --------------------------------------------------------------------------------------------
# Colour

def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (or float32 RGB in [0, 1]) -> float32 Lab."""
    rgb = image.astype(np.float32) * np.float32(1.0 / 255.0) if image.dtype == np.uint8 else image.astype(np.float32)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """float32 Lab -> float32 RGB clipped to [0, 1]."""
    return np.clip(cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


def hex_to_rgb(code: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b) ints."""
    code = code.lstrip("#")
    return int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16)


def chroma_scale(lab: np.ndarray, factor: float) -> np.ndarray:
    """float32 Lab -> Lab with a and b multiplied by ``factor`` (saturation in a perceptual space)."""
    out = lab.copy()
    out[..., 1:] *= np.float32(factor)
    return out


def saturation(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 HxW HSV saturation in [0, 1]."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[:, :, 1].astype(np.float32) / 255.0


@dataclass(frozen=True)
class Palette:
    """A named set of colours: names, uint8 RGB (K, 3) and float32 Lab (K, 3)."""

    names: tuple[str, ...]
    rgb: np.ndarray
    lab: np.ndarray
    extras: dict


@lru_cache(maxsize=None)
def _palette_file() -> dict:
    return json.loads(resources.files("taskgen").joinpath("data/palettes.json").read_text())


@lru_cache(maxsize=None)
def load_palette(style: str) -> Palette:
    """The palette of ``style`` from ``taskgen/data/palettes.json`` (cached)."""
    entry = _palette_file()[style]
    colours = entry.get("colours", {})
    rgb = np.array([hex_to_rgb(c) for c in colours.values()], np.uint8).reshape(-1, 3)
    lab = rgb_to_lab(rgb[None])[0] if len(rgb) else np.zeros((0, 3), np.float32)
    extras = {k: hex_to_rgb(v) for k, v in entry.items() if isinstance(v, str) and v.startswith("#")}
    return Palette(tuple(colours), rgb, lab, extras)


def soft_palette_ab(lab: np.ndarray, palette_lab: np.ndarray, temperature: float,
                    lightness_weight: float = 0.5) -> np.ndarray:
    """float32 Lab HxWx3 -> float32 HxWx2 chroma (a, b) as a softmax-weighted mix of palette colours.

    Each pixel is pulled towards the palette colours nearest to it in Lab (lightness differences
    count ``lightness_weight`` as much as chroma differences); ``temperature`` (in squared Lab
    units) sets how soft the assignment is.  Lightness is left to the caller.
    """
    h, w, _ = lab.shape
    flat = lab.reshape(-1, 3)
    delta = flat[:, None, :] - palette_lab[None, :, :]
    dist2 = np.float32(lightness_weight) * delta[..., 0] ** 2 + delta[..., 1] ** 2 + delta[..., 2] ** 2
    logits = -(dist2 - dist2.min(axis=1, keepdims=True)) / np.float32(temperature)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    return (weights @ palette_lab[:, 1:]).reshape(h, w, 2).astype(np.float32)


def nearest_colour_pair(lab: np.ndarray, palette_lab: np.ndarray,
                        lightness_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 Lab (..., 3) -> (nearest index, second-nearest index, share of the second in [0, 0.5]).

    The share is how far the colour lies from the nearest towards the second-nearest palette colour
    (d1 / (d1 + d2)): an optical mixture of the two in that ratio reproduces the colour.
    """
    delta = lab[..., None, :] - palette_lab
    dist = np.sqrt(np.float32(lightness_weight) * delta[..., 0] ** 2 + delta[..., 1] ** 2 + delta[..., 2] ** 2)
    order = np.argsort(dist, axis=-1)[..., :2]
    first, second = order[..., 0], order[..., 1]
    d1 = np.take_along_axis(dist, first[..., None], -1)[..., 0]
    d2 = np.take_along_axis(dist, second[..., None], -1)[..., 0]
    share = d1 / np.maximum(d1 + d2, 1e-6)
    return first, second, share.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Colour quantisation (flat regions)

def kmeans_colours(lab: np.ndarray, k: int, iterations: int = 8, sample_step: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """float32 Lab HxWx3 -> (labels int32 HxW, centres float32 (k, 3)); deterministic k-means.

    Lloyd iterations on a regular subsample (every ``sample_step``-th pixel per axis), initialised
    with the mean colours of ``k`` equal-count lightness bands, so no random draw is needed; empty
    clusters keep their previous centre.
    """
    samples = lab[::sample_step, ::sample_step].reshape(-1, 3)
    order = np.argsort(samples[:, 0], kind="stable")
    centres = np.stack([samples[band].mean(axis=0) for band in np.array_split(order, k)]).astype(np.float32)
    for _ in range(iterations):
        assign = _nearest_centre(samples, centres)
        for index in range(k):
            members = samples[assign == index]
            if len(members):
                centres[index] = members.mean(axis=0)
    labels = _nearest_centre(lab.reshape(-1, 3), centres).reshape(lab.shape[:2])
    return labels.astype(np.int32), centres


def _nearest_centre(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, 3) points, (k, 3) centres -> (N,) index of the nearest centre (squared Euclidean)."""
    dist2 = (points * points).sum(1)[:, None] - 2.0 * points @ centres.T + (centres * centres).sum(1)[None, :]
    return dist2.argmin(axis=1)


def majority_filter(labels: np.ndarray, k: int, size: int) -> np.ndarray:
    """int HxW labels in [0, k) -> labels replaced by the most frequent label in a size x size window.

    Removes speckles and thin slivers so every region is a solid area, as an enamel cell.
    """
    votes = np.stack([cv2.boxFilter((labels == index).astype(np.float32), -1, (size, size), normalize=False)
                      for index in range(k)])
    return votes.argmax(axis=0).astype(np.int32)


def region_boundaries(labels: np.ndarray) -> np.ndarray:
    """int HxW labels -> bool HxW, True on pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edge[:-1, :] |= labels[1:, :] != labels[:-1, :]
    return edge


# --------------------------------------------------------------------------------------------
# Flat brushwork, orientation

def kuwahara(image: np.ndarray, half: int) -> np.ndarray:
    """float32 HxWx3 -> float32 HxWx3 Kuwahara filter: each pixel takes the mean colour of the least
    varied (in luma) of the four (2*half+1)^2 windows whose centres sit ``half`` px away diagonally;
    texture flattens into brush-like patches while borders stay crisp."""
    size = 2 * half + 1
    luma = image.mean(axis=2)
    mean = cv2.boxFilter(image, -1, (size, size), borderType=cv2.BORDER_REFLECT)
    mean_l = cv2.boxFilter(luma, -1, (size, size), borderType=cv2.BORDER_REFLECT)
    var = cv2.boxFilter(luma * luma, -1, (size, size), borderType=cv2.BORDER_REFLECT) - mean_l * mean_l
    h, w = luma.shape
    mean_p = np.pad(mean, ((half, half), (half, half), (0, 0)), mode="edge")
    var_p = np.pad(var, half, mode="edge")
    best_var = np.full((h, w), np.inf, np.float32)
    out = np.empty_like(image)
    for dy in (0, 2 * half):
        for dx in (0, 2 * half):
            v = var_p[dy:dy + h, dx:dx + w]
            better = v < best_var
            best_var = np.where(better, v, best_var)
            out[better] = mean_p[dy:dy + h, dx:dx + w][better]
    return out


def isophote_angle(gray_: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """float32 HxW -> float32 HxW angle (radians) along which the image changes least (structure tensor).

    Painters lay strokes along contours, not across them.
    """
    gx = cv2.Sobel(gray_, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray_, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), sigma)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    gradient_angle = 0.5 * np.arctan2(2.0 * jxy, jxx - jyy)
    return (gradient_angle + np.float32(np.pi / 2.0)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Placement and rendering of strokes and dots

def jittered_grid(h: int, w: int, spacing: float, jitter: float, rng: np.random.Generator,
                  offset: float = 0.0) -> np.ndarray:
    """float32 (gh, gw, 2) (y, x) points: a regular grid of ``spacing`` px (shifted by ``offset``)
    with every point moved uniformly by up to +-``jitter`` * spacing / 2 (drawn from ``rng``)."""
    ys = np.arange(offset + spacing / 2.0, h + spacing / 2.0, spacing, dtype=np.float32)
    xs = np.arange(offset + spacing / 2.0, w + spacing / 2.0, spacing, dtype=np.float32)
    grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1)
    grid += rng.uniform(-0.5, 0.5, grid.shape).astype(np.float32) * np.float32(jitter * spacing)
    return grid


def sample_at(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """float32 HxWxC image, (..., 2) (y, x) points -> (..., C) values at the nearest pixels."""
    h, w = image.shape[:2]
    y = np.clip(np.rint(points[..., 0]).astype(np.int64), 0, h - 1)
    x = np.clip(np.rint(points[..., 1]).astype(np.int64), 0, w - 1)
    return image[y, x]


def render_dots(ground: np.ndarray, centres: np.ndarray, colours: np.ndarray, radius: float,
                spacing: float) -> np.ndarray:
    """Paint round anti-aliased dots over ``ground`` (float32 HxWx3); returns a new image.

    ``centres`` (gh, gw, 2) come from a ``jittered_grid`` of the same ``spacing`` (so each grid cell
    holds one dot and a pixel only needs to look at the 3x3 cells around it); where dots overlap the
    nearest one wins.  Vectorised: no per-dot Python loop.
    """
    h, w = ground.shape[:2]
    gh, gw = centres.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cell_y = np.clip(((yy - centres[0, 0, 0] + spacing / 2.0) // spacing).astype(np.int64), 0, gh - 1)
    cell_x = np.clip(((xx - centres[0, 0, 1] + spacing / 2.0) // spacing).astype(np.int64), 0, gw - 1)
    best = np.full((h, w), np.inf, np.float32)
    best_index = np.zeros((h, w), np.int64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cy = np.clip(cell_y + dy, 0, gh - 1)
            cx = np.clip(cell_x + dx, 0, gw - 1)
            index = cy * gw + cx
            d2 = (yy - centres[cy, cx, 0]) ** 2 + (xx - centres[cy, cx, 1]) ** 2
            closer = d2 < best
            best = np.where(closer, d2, best)
            best_index = np.where(closer, index, best_index)
    # 1 inside the dot, 0 outside, linear over the last pixel: an anti-aliased disc edge
    cover = np.clip(radius + 0.5 - np.sqrt(best), 0.0, 1.0)[:, :, None]
    dot_colour = colours.reshape(-1, 3)[best_index]
    return (ground * (1.0 - cover) + dot_colour * cover).astype(np.float32)


def paint_strokes(canvas: np.ndarray, points: np.ndarray, colours: np.ndarray, angles: np.ndarray,
                  length: float, width: int) -> np.ndarray:
    """Draw straight anti-aliased strokes on a copy of uint8 RGB ``canvas``.

    ``points`` (N, 2) (y, x) centres, ``colours`` (N, 3) uint8, ``angles`` (N,) radians; strokes
    are drawn in the given order (later ones on top).
    """
    out = canvas.copy()
    half = float(length) / 2.0
    shift = 2  # fractional endpoints: 2 bits of sub-pixel precision
    scale = float(1 << shift)
    dy = np.sin(angles) * half
    dx = np.cos(angles) * half
    p0 = np.rint(np.stack([points[:, 1] - dx, points[:, 0] - dy], axis=1) * scale).astype(np.int64)
    p1 = np.rint(np.stack([points[:, 1] + dx, points[:, 0] + dy], axis=1) * scale).astype(np.int64)
    for a, b, colour in zip(p0.tolist(), p1.tolist(), colours.tolist()):
        cv2.line(out, a, b, colour, thickness=width, lineType=cv2.LINE_AA, shift=shift)
    return out


# --------------------------------------------------------------------------------------------
# Ink, screentone, hatching, textures

def ink_outlines(gray_u8: np.ndarray, low: int, high: int, thickness: int, blur_sigma: float = 1.5) -> np.ndarray:
    """uint8 HxW luma -> bool HxW ink mask: Canny edges of the smoothed image, dilated to ``thickness`` px."""
    smoothed = cv2.GaussianBlur(gray_u8, (0, 0), blur_sigma)
    edges = cv2.Canny(smoothed, low, high) > 0
    if thickness > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (thickness, thickness))
        edges = cv2.dilate(edges.astype(np.uint8), kernel) > 0
    return edges


def screen_coordinates(h: int, w: int, period: float, angle_deg: float, phase: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by ``angle_deg`` and divided by ``period``, shifted by ``phase`` (in periods)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.deg2rad(angle_deg)
    u = (np.cos(theta) * xx + np.sin(theta) * yy) / period + phase[0]
    v = (-np.sin(theta) * xx + np.cos(theta) * yy) / period + phase[1]
    return u.astype(np.float32), v.astype(np.float32)


def screentone_dots(h: int, w: int, period: float, angle_deg: float, phase: tuple[float, float],
                    darkness: np.ndarray) -> np.ndarray:
    """float32 HxW ink coverage in [0, 1] of an AM halftone screen: dots on a rotated lattice whose
    area follows ``darkness`` (HxW in [0, 1]), as printed screentone sheets."""
    u, v = screen_coordinates(h, w, period, angle_deg, phase)
    du = u - np.floor(u) - 0.5
    dv = v - np.floor(v) - 0.5
    dist = np.sqrt(du * du + dv * dv) * np.float32(period)          # px from the lattice point
    radius = np.sqrt(np.clip(darkness, 0.0, 1.0) / np.pi) * np.float32(period)  # dot area = darkness
    return np.clip(radius + 0.5 - dist, 0.0, 1.0).astype(np.float32)


def hatching(h: int, w: int, period: float, angle_deg: float, phase: float, line_width: float) -> np.ndarray:
    """float32 HxW ink coverage in [0, 1] of parallel anti-aliased lines (``period`` px apart)."""
    u, _ = screen_coordinates(h, w, period, angle_deg, (phase, 0.0))
    dist = np.abs(u - np.rint(u)) * np.float32(period)
    return np.clip(line_width / 2.0 + 0.5 - dist, 0.0, 1.0).astype(np.float32)


@lru_cache(maxsize=4)
def canvas_weave(h: int, w: int) -> np.ndarray:
    """float32 HxW zero-mean canvas texture (about +-1): plain weave of ~3 px threads with uneven
    thread thickness and grain, from a fixed seed (a style asset; cached, read-only)."""
    rng = np.random.default_rng(CANVAS_SEED)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = 3.2
    # threads wobble and vary in thickness along their length
    warp_wobble = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 6.0) * 6.0
    weft_wobble = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 6.0) * 6.0
    warp = np.cos(2 * np.pi * (xx + warp_wobble) / period)
    weft = np.cos(2 * np.pi * (yy + weft_wobble) / period)
    # plain weave: warp on top where the checkerboard of crossings says so
    over = np.sign(np.sin(np.pi * xx / period) * np.sin(np.pi * yy / period))
    texture = np.where(over > 0, warp, weft) + 0.35 * rng.standard_normal((h, w)).astype(np.float32)
    texture = cv2.GaussianBlur(texture.astype(np.float32), (0, 0), 0.6)
    texture = (texture - texture.mean()) / max(float(texture.std()), 1e-6)
    texture.setflags(write=False)
    return texture


def radial_falloff(h: int, w: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """float32 HxW in (0, 1]: exp(-d^2 / radius^2) of the distance to ``centre`` (fractions of H, W)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy = (yy / max(h - 1, 1) - centre[0])
    dx = (xx / max(w - 1, 1) - centre[1])
    return np.exp(-(dy * dy + dx * dx) / np.float32(radius * radius)).astype(np.float32)
