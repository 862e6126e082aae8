"""Edge tasks: input = the clean image, target = a 3-channel uint8 edge map (white edges on black).

The operators are fixed (no random parameters, as in the reference code): the rng is accepted for
the task contract but unused, so a pair depends on the image alone.
"""
from __future__ import annotations

import numpy as np

from ..images import check_rgb, gray_to_rgb
from ..ops import edges
from ..registry import register_task

EDGE_MAP = "edge map"


@register_task(
    name="canny", category="edge", metric="mae", target_domain=EDGE_MAP,
    description="Canny edge detector (3x3 Gaussian pre-smoothing, BT.601 luma, hysteresis "
                "thresholds 50/200), binary {0, 255}, as in the GenLV reference.")
def canny(image: np.ndarray, rng: np.random.Generator):
    """uint8 RGB -> (image, 3-channel binary Canny map, params)."""
    check_rgb(image)
    return image.copy(), gray_to_rgb(edges.canny_edges(image, 50, 200)), {"low": 50, "high": 200, "blur_ksize": 3}


@register_task(
    name="laplacian", category="edge", metric="mae", target_domain=EDGE_MAP,
    description="Absolute Laplacian (3x3 Gaussian pre-smoothing, BT.601 luma, 3x3 aperture, "
                "|.| saturated to uint8), as in the GenLV reference.")
def laplacian(image: np.ndarray, rng: np.random.Generator):
    """uint8 RGB -> (image, 3-channel |Laplacian| map, params)."""
    check_rgb(image)
    return image.copy(), gray_to_rgb(edges.laplacian_edges(image)), {"blur_ksize": 3}


@register_task(
    name="perceptual_edges", category="edge", metric="mae", target_domain=EDGE_MAP,
    description="Soft perceptual boundary map: bilateral edge-preserving smoothing, Lab colour "
                "gradients at scales 1/2/4 px combined by geometric mean, non-maximum suppression, "
                "soft 1 - exp(-(g/7)^2) mapping, slight widening.",
    departs_from_paper="The paper cites DexiNed (Poma et al.); the GenLV loader reads edge maps from "
                       "disk (the BIPED dataset of the DexiNed authors), which cannot ship. This is a "
                       "classical, deterministic stand-in that imitates a soft boundary map "
                       "(texture-suppressed, colour-aware, thin and soft), not those maps.")
def perceptual_edges(image: np.ndarray, rng: np.random.Generator):
    """uint8 RGB -> (image, 3-channel soft boundary map, params)."""
    check_rgb(image)
    params = {"scales": list(edges.PERCEPTUAL_SCALES), "softness": edges.PERCEPTUAL_SOFTNESS}
    return image.copy(), gray_to_rgb(edges.perceptual_edge_map(image)), params
