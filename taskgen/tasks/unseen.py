"""Held-out tasks for the unseen-task track: never in the training mix, only in the `unseen` split.

The paper notes that GenLV "lacks the ability to generate satisfactory results for
out-of-distribution unseen tasks". These six well-defined mappings, none of which is among the 30
training tasks, measure how far a prompt alone carries a generalist to a new task. Each is a
closed-form operation with at most a few drawn parameters, so the prompt pair fully specifies it.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..images import check_rgb, gray, gray_to_rgb, to_float, to_uint8
from ..registry import register_task

HELD_OUT = "held-out task (unseen-task track, beyond the paper): never in the training mix"


def radial_falloff(shape: tuple[int, int], strength: float, centre: tuple[float, float]) -> np.ndarray:
    """float32 HxW gain in (0, 1]: cos^4-law vignetting, 1 at ``centre`` (fractions of H, W)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = centre[0] * (h - 1), centre[1] * (w - 1)
    r = np.hypot((yy - cy) / h, (xx - cx) / w) / np.float32(np.hypot(0.5, 0.5))
    return (1.0 - strength * (1.0 - np.cos(np.clip(r, 0, 1) * np.pi / 2) ** 4)).astype(np.float32)


@register_task(name="vignetting_removal", category="restoration", metric="psnr", target_domain="clean image",
               description="Vignetting removal: input darkened by a cos^4-law radial falloff "
                           "(strength U(0.4, 0.7), centre jittered by up to 10 %); target = the clean image.",
               departs_from_paper=HELD_OUT, in_training_mix=False)
def vignetting_removal(image: np.ndarray, rng: np.random.Generator):
    check_rgb(image)
    strength = float(rng.uniform(0.4, 0.7))
    centre = (float(0.5 + rng.uniform(-0.1, 0.1)), float(0.5 + rng.uniform(-0.1, 0.1)))
    gain = radial_falloff(image.shape[:2], strength, centre)
    degraded = to_uint8(to_float(image) * gain[:, :, None])
    return degraded, image.copy(), {"strength": strength, "centre_yx": list(centre)}


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """float32 odd-sized kernel summing to 1: a straight segment ``length`` px long at ``angle_deg``
    (x right, y down) through the centre pixel, i.e. linear camera motion.

    The segment is sampled every 1/16 px over [-length/2, length/2] and each sample bilinearly
    splatted, so it is anti-aliased at any angle, its mass is the same at every angle, and, the
    samples being symmetric about the centre, the blur shifts nothing (a rasterised line is up to
    half a pixel off-centre, which costs PSNR that has nothing to do with the blur).
    """
    size = (int(np.ceil(length)) + 2) | 1
    c = size // 2
    n = 16 * int(np.ceil(length))
    t = (np.arange(n) + 0.5) * (length / n) - length / 2
    theta = np.deg2rad(angle_deg)
    x, y = c + t * np.cos(theta), c + t * np.sin(theta)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    kernel = np.zeros((size, size), np.float64)
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(kernel, (y0 + oy, x0 + ox), wy * wx)
    return (kernel / kernel.sum()).astype(np.float32)


@register_task(name="motion_deblur", category="restoration", metric="psnr", target_domain="clean image",
               description="Motion deblurring: input convolved with a linear motion kernel (length "
                           "U{9..17} px, angle U(0, 180) deg, anti-aliased and centred, reflect borders); "
                           "target = the clean image.",
               departs_from_paper=HELD_OUT, in_training_mix=False)
def motion_deblur(image: np.ndarray, rng: np.random.Generator):
    check_rgb(image)
    length = int(rng.integers(9, 18))
    angle = float(rng.uniform(0, 180))
    blurred = cv2.filter2D(image, -1, motion_kernel(length, angle), borderType=cv2.BORDER_REFLECT)
    return blurred, image.copy(), {"length": length, "angle_deg": angle}


# The common "sepia" colour matrix (rows give output R, G, B from input R, G, B).
SEPIA_MATRIX = np.array([[0.393, 0.769, 0.189],
                         [0.349, 0.686, 0.168],
                         [0.272, 0.534, 0.131]], np.float32)


@register_task(name="sepia", category="stylization", metric="psnr", target_domain="sepia-toned image",
               description="Sepia toning: target = the classic sepia colour matrix applied to the "
                           "image, clipped; input = the image.",
               departs_from_paper=HELD_OUT, in_training_mix=False)
def sepia(image: np.ndarray, rng: np.random.Generator):
    check_rgb(image)
    toned = to_float(image) @ SEPIA_MATRIX.T
    return image.copy(), to_uint8(toned), {}


@register_task(name="emboss", category="stylization", metric="psnr", target_domain="embossed relief (gray)",
               description="Emboss: target = 3x3 emboss kernel (light from the top-left) on the luma, "
                           "offset to mid-gray 128, as 3 equal channels; input = the image.",
               departs_from_paper=HELD_OUT, in_training_mix=False)
def emboss(image: np.ndarray, rng: np.random.Generator):
    check_rgb(image)
    kernel = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)
    relief = cv2.filter2D(gray(image).astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    # The kernel sums to 1, so flat areas keep their luma; recentre them on mid-gray.
    relief = relief - gray(image).astype(np.float32) + 128.0
    return image.copy(), gray_to_rgb(np.clip(np.rint(relief), 0, 255).astype(np.uint8)), {}


@register_task(name="colour_inversion", category="enhancement", metric="psnr", target_domain="negative image",
               description="Colour inversion: target = 255 - image per channel (a photographic negative); "
                           "input = the image.",
               departs_from_paper=HELD_OUT, in_training_mix=False)
def colour_inversion(image: np.ndarray, rng: np.random.Generator):
    check_rgb(image)
    return image.copy(), (255 - image).astype(np.uint8), {}


@register_task(name="gamma_change", category="enhancement", metric="psnr", target_domain="re-gamma'd image",
               description="Gamma change: target = image^gamma on [0, 1] with one fixed gamma = 0.5 "
                           "(brightens shadows, keeps black and white); input = the image.",
               departs_from_paper=HELD_OUT, in_training_mix=False)
def gamma_change(image: np.ndarray, rng: np.random.Generator):
    check_rgb(image)
    return image.copy(), to_uint8(np.power(to_float(image), 0.5)), {"gamma": 0.5}
