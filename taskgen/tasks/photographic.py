"""The ``photographic`` style task: Aubry et al. 2014 style transfer built on local Laplacian filters.

Aubry, Paris, Hasinoff, Kautz & Durand ("Fast local Laplacian filters", TOG 2014, Sec. 7) transfer
a model photograph's look in the spirit of Bae et al. 2006: match the intensity histogram to the
model's, then repeatedly (a) local-Laplacian-filter the image with the remapping
``r(i; g) = g + sign(i - g) T(|i - g|)``, where T maps the image's gradient-magnitude distribution
onto the model's (so texture/detail statistics move toward the model's), and (b) re-match the
intensity histogram. Like the authors' public demo, the transfer works on intensity and the
result is black and white.

The model photograph is stored as *data*, not as a photo: its tonal quantiles and gradient-magnitude
quantiles (``MODEL_STYLE``), derived once by ``derive_style`` from scikit-image's "camera"
(cameraman) photograph - a classic black-and-white picture that is not one of the test photos.
tests/test_photographic.py re-derives them and checks the stored numbers.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..images import check_rgb, gray_to_rgb, to_float, to_uint8
from ..ops.colour import luma601, match_quantiles, quantiles
from ..ops.local_laplacian import curve_remap, local_laplacian
from ..registry import register_task

TONE_PROBS = np.linspace(0.0, 1.0, 33)
GRADIENT_PROBS = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95,
                           0.97, 0.98, 0.99, 0.995, 0.999])
STYLE_SIZE = 256            # the model's statistics are taken at this short side, the benchmark's size
TRANSFER = {
    "iterations": 3,        # Aubry et al.'s demo uses a handful (4); 3 converges at 256^2
    "n_samples": 10,        # intensity samples of the fast local Laplacian filter (the demo's N = 10)
    "min_gradient": 0.5 / 255.0,   # input gradients below half a grey level are noise: not remapped
    "gain_limits": (0.25, 4.0),    # T(a)/a is kept in this range, so no detail is blown up or erased
}

# Derived by derive_style(skimage.data.camera()); see the module docstring. Intensity units in [0, 1].
_MODEL_TONE_QUANTILES = [
    0.00784, 0.02745, 0.06667, 0.09020, 0.09804, 0.10588, 0.11373, 0.12157, 0.13725, 0.20000, 0.36471,
    0.49412, 0.53725, 0.56078, 0.57255, 0.58824, 0.59608, 0.60784, 0.61569, 0.62745, 0.63529, 0.65098,
    0.70196, 0.76078, 0.77255, 0.78431, 0.79216, 0.80392, 0.81176, 0.81961, 0.83137, 0.84706, 1.00000,
]
_MODEL_GRADIENT_QUANTILES = [
    0.00000, 0.00000, 0.00392, 0.00392, 0.00784, 0.01414, 0.02511, 0.04066, 0.05098, 0.06323,
    0.08085, 0.11043, 0.13641, 0.18167, 0.26461, 0.32549, 0.40713, 0.48410, 0.61868,
]
MODEL_STYLE = {
    "source": "skimage.data.camera() (cameraman), short side 256 px (INTER_AREA), BT.601 intensity",
    "tone_probs": TONE_PROBS.tolist(),
    "tone_quantiles": _MODEL_TONE_QUANTILES,
    "gradient_probs": GRADIENT_PROBS.tolist(),
    "gradient_quantiles": _MODEL_GRADIENT_QUANTILES,
}


def gradient_magnitude(intensity: np.ndarray) -> np.ndarray:
    """float32 HxW -> float32 HxW |grad| from forward differences (zero at the last row/column)."""
    x = np.asarray(intensity, np.float32)
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[:, :-1] = x[:, 1:] - x[:, :-1]
    gy[:-1, :] = x[1:, :] - x[:-1, :]
    return np.sqrt(gx * gx + gy * gy)


def derive_style(model: np.ndarray, size: int = STYLE_SIZE) -> dict:
    """uint8 gray HxW or RGB HxWx3 model photograph -> {"tone_quantiles", "gradient_quantiles"} (lists of floats)."""
    image = np.asarray(model)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    h, w = image.shape
    scale = size / min(h, w)
    if scale != 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    intensity = image.astype(np.float32) / 255.0
    return {"tone_quantiles": quantiles(intensity, TONE_PROBS).round(5).tolist(),
            "gradient_quantiles": quantiles(gradient_magnitude(intensity), GRADIENT_PROBS).round(5).tolist()}


def detail_transfer_curve(source_quantiles: np.ndarray, model_quantiles: np.ndarray,
                          min_gradient: float, gain_limits: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Quantile pairs -> (deltas, mapped) knots of a monotone curve T with T(0) = 0 moving source onto model amplitudes.

    Knots whose source amplitude is below ``min_gradient`` are dropped (noise and flat areas stay
    as they are); the gain T(a)/a is clamped to ``gain_limits``; both columns are made increasing.
    """
    src = np.asarray(source_quantiles, np.float64)
    dst = np.asarray(model_quantiles, np.float64)
    keep = src >= min_gradient
    src, dst = src[keep], dst[keep]
    lo, hi = gain_limits
    dst = np.clip(dst, src * lo, src * hi)
    deltas = np.concatenate([[0.0], src])
    mapped = np.concatenate([[0.0], dst])
    # Strictly increasing knots (np.interp needs increasing x; T must be monotone to stay a remap).
    deltas = np.maximum.accumulate(deltas + np.arange(deltas.size) * 1e-7)
    mapped = np.maximum.accumulate(mapped)
    return deltas, mapped


def transfer_style(intensity: np.ndarray, style: dict = MODEL_STYLE, transfer: dict = TRANSFER) -> np.ndarray:
    """float32 HxW intensity [0,1] -> float32 HxW [0,1] in the model photograph's tonal and detail style."""
    tone_probs = np.asarray(style["tone_probs"], np.float64)
    tone_q = np.asarray(style["tone_quantiles"], np.float64)
    grad_probs = np.asarray(style["gradient_probs"], np.float64)
    grad_q = np.asarray(style["gradient_quantiles"], np.float64)
    current = match_quantiles(intensity, tone_probs, tone_q)
    for _ in range(transfer["iterations"]):
        source_q = quantiles(gradient_magnitude(current), grad_probs)
        deltas, mapped = detail_transfer_curve(source_q, grad_q, transfer["min_gradient"], transfer["gain_limits"])
        current = local_laplacian(current, curve_remap(deltas, mapped), transfer["n_samples"], value_range=(0.0, 1.0))
        current = match_quantiles(current, tone_probs, tone_q)
    return np.clip(current, 0.0, 1.0)


@register_task(
    name="photographic", category="stylization", metric="psnr",
    target_domain="black-and-white print in a fixed model-photograph style",
    description="Photographic style transfer (Aubry et al. 2014, after Bae et al. 2006): intensity histogram matched "
                "to a fixed model photograph, then 3 rounds of fast local Laplacian filtering with a remap that "
                "moves gradient-magnitude quantiles onto the model's, each followed by histogram re-matching.",
    departs_from_paper="The model photograph is stored statistics (tone and gradient quantiles of scikit-image's "
                       "'camera' photo) rather than the paper's reference photo; applied to any source image "
                       "instead of FiveK expert-C photos; black-and-white output as the authors' public code.",
)
def photographic(image: np.ndarray, rng: np.random.Generator):
    check_rgb(image)
    styled = transfer_style(luma601(to_float(image)))
    params = {"model": MODEL_STYLE["source"], "iterations": TRANSFER["iterations"], "n_samples": TRANSFER["n_samples"]}
    return image.copy(), gray_to_rgb(to_uint8(styled)), params
