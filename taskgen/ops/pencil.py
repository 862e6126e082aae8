"""Pencil drawing: Lu, Xu & Jia, "Combining sketch and tone for pencil drawing production" (NPAR 2012).

The drawing is the product of two layers, R = S * T:

- the *stroke* layer S: the gradient magnitude is classified, pixel by pixel, into the one of 8
  line directions whose line-kernel response is largest, and every class is convolved back with its
  line kernel, so edges become short straight strokes that overshoot corners as hand-drawn lines do;
- the *tone* layer T: the grey levels are histogram-matched to the paper's parametric model of pencil
  drawings (a bright Laplacian layer, a uniform mid-tone layer and a dark Gaussian layer), then
  rendered with a pencil texture H as T = H ** beta, beta being the smooth exponent field that
  best reproduces the matched tone J: argmin ||beta ln H - ln J||^2 + lam ||grad beta||^2, a sparse
  least-squares problem solved on the pixel grid (``taskgen.ops.gridsolve``).

No pencil texture ships with the paper's data, so ``pencil_texture`` draws one procedurally: dense
anti-aliased diagonal hatching over fine paper grain, from a fixed internal seed (a style asset,
identical for every sample).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .gridsolve import solve_grid_system

STROKE_DIRECTIONS = 8
STROKE_LENGTH_FRACTION = 1.0 / 30.0   # line kernel length: 1/30 of the image size (paper)
STROKE_WIDTH = 1                      # px, line kernel thickness
STROKE_NORM_FLOOR = 0.12              # smallest stroke response mapped to black (photos: 0.2-0.5)
TONE_LAMBDA = 0.2                     # smoothness of the texture exponent beta (paper)
# Parametric tone model on the 0..255 scale (paper, Sec. 3.2): bright Laplacian layer (sigma_b),
# uniform mid-tone layer on [u_a, u_b], dark Gaussian layer (mu_d, sigma_d).
TONE_SIGMA_B = 9.0
TONE_U_A, TONE_U_B = 105.0, 225.0
TONE_MU_D, TONE_SIGMA_D = 90.0, 11.0
# bright : mid : dark. The paper lists three groups; the GenLV reference generator
# (pencil_drawing.py, w_group=2) and the authors' MATLAB (GenToneMap.m, its last assignment) use 76:22:2.
TONE_WEIGHTS = (76.0, 22.0, 2.0)
# The reference darkens both layers before multiplying them: R = S ** 2 * T ** 1.5.
STROKE_DARKNESS = 2.0
TONE_DARKNESS = 1.5
TEXTURE_SEED = 12345                  # fixed: the texture is a style asset, not per-sample randomness
TEXTURE_TILE = 512


# --------------------------------------------------------------------------------------------
# Stroke layer

def segment_kernel(angle_deg: float, length: float, width: int = 1) -> np.ndarray:
    """float32 odd-sized kernel holding an anti-aliased straight segment of ``length`` px at
    ``angle_deg`` (x right, y down), centred on the centre pixel, peak value 1."""
    size = (int(np.ceil(length)) + 2) | 1
    canvas = np.zeros((size * 4, size * 4), np.uint8)      # drawn 4x larger, then area-downsampled
    centre = (size // 2) * 4 + 1.5                            # centre of the centre pixel, 4x coordinates
    dx = np.cos(np.deg2rad(angle_deg)) * length * 2.0         # half the length, times 4
    dy = np.sin(np.deg2rad(angle_deg)) * length * 2.0
    cv2.line(canvas, (int(round(centre - dx)), int(round(centre - dy))),
             (int(round(centre + dx)), int(round(centre + dy))), 255, thickness=4 * width, lineType=cv2.LINE_AA)
    kernel = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return kernel / kernel.max()


@lru_cache(maxsize=8)
def line_kernels(length: int, directions: int = STROKE_DIRECTIONS, width: int = STROKE_WIDTH) -> tuple[np.ndarray, ...]:
    """``directions`` float32 line-segment kernels of ``length`` px through the centre, each summing to 1."""
    kernels = (segment_kernel(180.0 * k / directions, length, width) for k in range(directions))
    return tuple(k / k.sum() for k in kernels)


def gradient_magnitude(luma: np.ndarray) -> np.ndarray:
    """float32 HxW in [0, 1] -> float32 HxW forward-difference gradient magnitude."""
    gx = np.zeros_like(luma)
    gy = np.zeros_like(luma)
    gx[:, :-1] = luma[:, 1:] - luma[:, :-1]
    gy[:-1] = luma[1:] - luma[:-1]
    return np.sqrt(gx * gx + gy * gy)


def stroke_layer(luma: np.ndarray, length: int | None = None) -> np.ndarray:
    """float32 HxW luma in [0, 1] -> float32 HxW stroke layer S in [0, 1] (1 = paper, 0 = darkest line)."""
    h, w = luma.shape
    if length is None:
        length = max(5, int(round(min(h, w) * STROKE_LENGTH_FRACTION)))
    magnitude = gradient_magnitude(luma)
    kernels = line_kernels(length)
    responses = np.stack([cv2.filter2D(magnitude, -1, k, borderType=cv2.BORDER_REFLECT) for k in kernels])
    winner = responses.argmax(axis=0)
    strokes = np.zeros_like(magnitude)
    for index, kernel in enumerate(kernels):
        classified = np.where(winner == index, magnitude, 0.0).astype(np.float32)
        strokes += cv2.filter2D(classified, -1, kernel, borderType=cv2.BORDER_REFLECT)
    # normalise by a high percentile, not the max, so one very strong edge does not fade the rest;
    # the floor keeps images without real edges (smooth ramps, flat areas) from turning every
    # quantisation step into a full-strength line
    scale = max(float(np.percentile(strokes, 99.5)), STROKE_NORM_FLOOR)
    return np.clip(1.0 - strokes / scale, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Tone layer

def pencil_tone_histogram(weights: tuple[float, float, float] = TONE_WEIGHTS) -> np.ndarray:
    """float64 (256,) target probability of each grey level under the three-layer pencil tone model."""
    v = np.arange(256, dtype=np.float64)
    bright = np.exp(-(255.0 - v) / TONE_SIGMA_B) / TONE_SIGMA_B
    mid = np.where((v >= TONE_U_A) & (v <= TONE_U_B), 1.0 / (TONE_U_B - TONE_U_A), 0.0)
    dark = np.exp(-((v - TONE_MU_D) ** 2) / (2.0 * TONE_SIGMA_D ** 2)) / np.sqrt(2.0 * np.pi * TONE_SIGMA_D ** 2)
    p = weights[0] * bright + weights[1] * mid + weights[2] * dark
    return p / p.sum()


def match_histogram(luma_u8: np.ndarray, target_pdf: np.ndarray) -> np.ndarray:
    """uint8 HxW -> float32 HxW in [0, 1] whose grey-level histogram follows ``target_pdf`` (CDF matching)."""
    counts = np.bincount(luma_u8.ravel(), minlength=256).astype(np.float64)
    source_cdf = np.cumsum(counts) / counts.sum()
    target_cdf = np.cumsum(target_pdf)
    lut = np.interp(source_cdf, target_cdf, np.arange(256, dtype=np.float64))
    return (lut[luma_u8] / 255.0).astype(np.float32)


# (angle in degrees, stroke length in px, coverage = mean number of strokes over a pixel): one main
# hatching direction with some spread, as a hand shading repeatedly with the same wrist motion
_HATCHING = ((-52.0, 61, 0.8), (-47.0, 41, 0.8), (-57.0, 29, 0.6), (-42.0, 21, 0.6))


@lru_cache(maxsize=1)
def _texture_tile() -> np.ndarray:
    """float32 TILE x TILE pencil texture in (0, 1]: hatching over paper grain, fixed seed (cached).

    Strokes are impulses (random positions and pressures) convolved with segment kernels, so
    overlapping strokes add graphite as real ones do; H = exp(-graphite density).
    """
    rng = np.random.default_rng(TEXTURE_SEED)
    size = TEXTURE_TILE
    density = np.zeros((size, size), np.float32)
    for angle, length, coverage in _HATCHING:
        impulses = (rng.random((size, size)) < coverage / length) * rng.uniform(0.05, 0.2, (size, size))
        density += cv2.filter2D(impulses.astype(np.float32), -1, segment_kernel(angle, length),
                                borderType=cv2.BORDER_REFLECT)
    grain = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 0.7)
    density = np.maximum(density + 0.03 * grain, 0.0)
    texture = np.exp(-density).astype(np.float32)
    texture.setflags(write=False)                 # cached and shared: views of it must stay intact
    return texture


def pencil_texture(h: int, w: int) -> np.ndarray:
    """float32 HxW pencil texture in (0, 1], read-only (the fixed tile, mirror-tiled when the image is larger)."""
    tile = _texture_tile()
    reps_y, reps_x = -(-h // tile.shape[0]), -(-w // tile.shape[1])
    if reps_y > 1 or reps_x > 1:
        tile = np.pad(tile, ((0, (reps_y - 1) * tile.shape[0]), (0, (reps_x - 1) * tile.shape[1])), mode="symmetric")
    return np.ascontiguousarray(tile[:h, :w])


def texture_exponent(tone: np.ndarray, texture: np.ndarray, lam: float = TONE_LAMBDA,
                     solver: str = "multigrid", tol: float = 1e-4) -> np.ndarray:
    """float32 HxW tone J and texture H in (0, 1] -> float32 HxW beta minimising
    ||beta ln H - ln J||^2 + lam ||grad beta||^2 (normal equations on the 5-point grid)."""
    h, w = tone.shape
    log_h = np.log(np.clip(texture, 1e-4, 1.0))
    log_j = np.log(np.clip(tone, 1e-4, 1.0))
    edges_x = np.full((h, w), lam, np.float32)
    edges_x[:, -1] = 0.0
    edges_y = np.full((h, w), lam, np.float32)
    edges_y[-1, :] = 0.0
    rhs = (log_h * log_j)[:, :, None].astype(np.float32)
    beta, _ = solve_grid_system(rhs, (log_h * log_h).astype(np.float32), edges_x, edges_y,
                                x0=np.ones_like(rhs), solver=solver, tol=tol)
    return beta[:, :, 0]


def tone_layer(luma_u8: np.ndarray, solver: str = "multigrid") -> np.ndarray:
    """uint8 HxW luma -> float32 HxW textured tone layer T = H ** beta in (0, 1]."""
    tone = match_histogram(luma_u8, pencil_tone_histogram())
    # the matched tone is piecewise flat per grey level; a light blur avoids banding in beta
    tone = cv2.GaussianBlur(tone, (0, 0), 1.0)
    texture = pencil_texture(*luma_u8.shape)
    beta = texture_exponent(tone, texture, solver=solver)
    return np.power(texture, np.maximum(beta, 0.0)).astype(np.float32)


# --------------------------------------------------------------------------------------------

def pencil_lightness(image: np.ndarray, solver: str = "multigrid") -> np.ndarray:
    """uint8 RGB -> float32 HxW pencil drawing in [0, 1]: R = S ** 2 * T ** 1.5 (strokes times
    textured tone, both darkened as the reference generator does), drawn from the BT.601 luma."""
    luma_u8 = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    luma = luma_u8.astype(np.float32) * np.float32(1.0 / 255.0)
    strokes = np.power(stroke_layer(luma), np.float32(STROKE_DARKNESS))
    tone = np.power(tone_layer(luma_u8, solver=solver), np.float32(TONE_DARKNESS))
    return (strokes * tone).astype(np.float32)


def pencil_drawing(image: np.ndarray, solver: str = "multigrid") -> np.ndarray:
    """uint8 RGB -> uint8 HxW grey pencil drawing (``pencil_lightness`` rounded)."""
    return np.clip(np.rint(pencil_lightness(image, solver) * 255.0), 0, 255).astype(np.uint8)


def pencil_colour(image: np.ndarray, solver: str = "multigrid") -> np.ndarray:
    """uint8 RGB -> uint8 RGB colour pencil drawing: the drawing replaces the luma Y of the photo
    in YUV (BT.601), U and V kept, then clipped to [0, 1] - the reference generator's ``rgb=True``.
    The inverse YUV transform maps a change of Y to the same change of R, G and B, so this is
    the photo plus (drawing - Y) in every channel."""
    rgb = image.astype(np.float32) * np.float32(1.0 / 255.0)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    shifted = rgb + (pencil_lightness(image, solver) - luma)[:, :, None]
    return np.clip(np.rint(shifted * 255.0), 0, 255).astype(np.uint8)
