"""Restoration tasks: input = the degraded image, target = the clean source image.

Each degradation is a *recipe*: ``draw(rng, shape) -> params`` picks its parameters (ranges from the
PromptGIP / GenLV reference data loaders unless stated), ``apply(image, params, rng) -> image``
runs the pure operation from ``taskgen.ops.degradations``. The single tasks and the ``mixed`` chain
share these recipes, so a slot of the chain is exactly the corresponding single restoration task;
the chain's ``darken`` recipe (GenLV's low-light step) is its own, not the enhancement category's
``low_light`` task, which also adds sensor noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..images import check_rgb
from ..ops import degradations as deg
from ..registry import register_task
from ..sources import depth_proxy

CLEAN = "clean image"


@dataclass(frozen=True)
class Recipe:
    """How one degradation draws its parameters and applies them."""

    draw: Callable[[np.random.Generator, tuple[int, int]], dict]
    apply: Callable[[np.ndarray, dict, np.random.Generator], np.ndarray]


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _int(rng: np.random.Generator, low: int, high_inclusive: int) -> int:
    return int(rng.integers(low, high_inclusive + 1))


# --------------------------------------------------------------------------------------------
# Parameter draws (reference ranges cited in each task's description)


def _draw_gaussian_noise(rng, shape):
    return {"sigma": _uniform(rng, 10.0, 50.0)}


def _draw_poisson_noise(rng, shape):
    # Reference: peak 10**2 fixed; we spread log10(peak) by +-0.5 around it.
    log10_peak = _uniform(rng, 1.5, 2.5)
    return {"log10_peak": log10_peak, "peak": float(10.0 ** log10_peak)}


def _draw_salt_pepper(rng, shape):
    return {"amount": 0.05, "salt_fraction": 0.5}


def _draw_gaussian_blur(rng, shape):
    return {"sigma": _uniform(rng, 2.0, 4.0), "ksize": 15}


def _draw_jpeg(rng, shape):
    return {"quality": _int(rng, 10, 40)}


def _draw_ringing(rng, shape):
    # Reference: cutoff fixed at 1.2 rad; jittered +-0.2 so prompt and query pairs differ.
    return {"cutoff": _uniform(rng, 1.0, 1.4), "size": 15, "pad_to": 21}


def _draw_rl(rng, shape):
    # Reference: fixed, nothing drawn (one iteration, 5x5 uniform PSF, 7 px linear-ramp pad).
    return {"psf": "uniform", "psf_size": deg.RL_PSF_SIZE, "iterations": 1, "pad": deg.RL_PAD}


def _draw_inpainting(rng, shape):
    count, thickness = _int(rng, 5, 10), _int(rng, 5, 10)
    colour = "white" if rng.random() < 0.5 else "black"
    return {"count": count, "thickness": thickness, "colour": colour,
            "lines": deg.random_lines(shape, count, rng)}


_RAIN_WIDTHS = (3, 5, 7, 9, 11)


def _draw_rain_simple(rng, shape):
    amount = _uniform(rng, 40.0, 200.0)  # reference "value": drops per 25600 pixels
    return {"amount": amount, "density": amount / 25600.0, "length": _int(rng, 30, 40),
            "angle": _uniform(rng, -45.0, 45.0), "blur_ksize": int(rng.choice(_RAIN_WIDTHS))}


def _draw_rain_complex(rng, shape):
    h, w = shape
    scale = max(h, w) / 256.0  # streak sizes were tuned at 256 px
    wind = _uniform(rng, -30.0, 30.0)
    n_layers = _int(rng, 2, 4)
    layers = []
    for k in range(n_layers):
        near = k / (n_layers - 1)  # 0 = farthest layer, 1 = nearest
        layers.append({
            # far rain: many short, thin, dim streaks; near rain: few long, wide, bright, blurred ones
            "density": float(10.0 ** rng.uniform(-2.7, -2.1)) * (1.0 - 0.85 * near),
            "length": (_uniform(rng, 6.0, 16.0) + near * _uniform(rng, 15.0, 40.0)) * scale,
            "angle": wind + float(rng.normal(0.0, 3.0)),
            "blur_ksize": int(rng.choice((1, 3) if near < 0.5 else (3, 5, 7))),
            "intensity": _uniform(rng, 0.15, 0.35) + near * _uniform(rng, 0.2, 0.45),
        })
    veil = {"strength": _uniform(rng, 0.05, 0.3), "airlight": _uniform(rng, 0.7, 0.95),
            "field_scale": _uniform(rng, 32.0, 128.0) * scale}
    n_splashes = _int(rng, 0, 40)
    xs = rng.uniform(0, w, n_splashes)
    ys = h * (0.4 + 0.6 * np.sqrt(rng.random(n_splashes)))  # splashes land mostly near the bottom
    radii = rng.uniform(0.8, 2.5, n_splashes) * scale
    brightness = rng.uniform(0.4, 0.9, n_splashes)
    splashes = [[float(xs[i]), float(ys[i]), float(radii[i]), float(brightness[i])] for i in range(n_splashes)]
    return {"wind": wind, "layers": layers, "veil": veil, "splashes": splashes}


def _draw_haze(rng, shape):
    return {"beta": _uniform(rng, 0.5, 2.5), "airlight": _uniform(rng, 0.8, 1.0)}


def _draw_darken(rng, shape):
    return {"scale": _uniform(rng, 0.3, 0.4), "gamma": _uniform(rng, 1.0, 1.5)}


# --------------------------------------------------------------------------------------------
# Applications


def _apply_inpainting(image, p, rng):
    mask = deg.line_mask(image.shape[:2], p["lines"], p["thickness"])
    return deg.paint_mask(image, mask, 255 if p["colour"] == "white" else 0)


def _apply_rain_complex(image, p, rng):
    return deg.add_rain_complex(image, p["layers"], p["veil"], p["splashes"], rng)


RECIPES: dict[str, Recipe] = {
    "gaussian_noise": Recipe(_draw_gaussian_noise, lambda im, p, rng: deg.add_gaussian_noise(im, p["sigma"], rng)),
    "poisson_noise": Recipe(_draw_poisson_noise, lambda im, p, rng: deg.add_poisson_noise(im, p["peak"], rng)),
    "salt_pepper": Recipe(_draw_salt_pepper, lambda im, p, rng: deg.apply_salt_pepper(
        im, deg.salt_pepper_map(im.shape[:2], p["amount"], p["salt_fraction"], rng))),
    "gaussian_blur": Recipe(_draw_gaussian_blur, lambda im, p, rng: deg.gaussian_blur(im, p["sigma"], p["ksize"])),
    "jpeg": Recipe(_draw_jpeg, lambda im, p, rng: deg.jpeg_compress(im, p["quality"])),
    "ringing": Recipe(_draw_ringing, lambda im, p, rng: deg.add_ringing(im, p["cutoff"], p["size"], p["pad_to"])),
    "rl": Recipe(_draw_rl, lambda im, p, rng: deg.add_rl_artifacts(im, p["iterations"])),
    "inpainting": Recipe(_draw_inpainting, _apply_inpainting),
    "rain_simple": Recipe(_draw_rain_simple, lambda im, p, rng: deg.add_rain_simple(
        im, p["density"], p["length"], p["angle"], p["blur_ksize"], rng)),
    "rain_complex": Recipe(_draw_rain_complex, _apply_rain_complex),
    "darken": Recipe(_draw_darken, lambda im, p, rng: deg.darken(im, p["scale"], p["gamma"])),
}


def degrade(name: str, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """uint8 RGB -> (degraded uint8 RGB, drawn params) for one recipe."""
    recipe = RECIPES[name]
    params = recipe.draw(rng, image.shape[:2])
    return recipe.apply(image, params, rng), params


# --------------------------------------------------------------------------------------------
# Single-degradation tasks

_REF = "PromptGIP/GenLV reference"

_SINGLE_TASKS = {
    "gaussian_noise": dict(
        description="Additive white Gaussian noise, i.i.d. per pixel and channel, sigma ~ U(10, 50)/255 "
                    f"({_REF}).",
        departs_from_paper=""),
    "poisson_noise": dict(
        description="Shot noise Poisson(x*peak)/peak with log10(peak) ~ U(1.5, 2.5) around the reference "
                    "peak 100.",
        departs_from_paper="The reference uses the fixed peak 100; we draw it from 10^U(1.5, 2.5) "
                           "(same noise level on average, prompt and query differ)."),
    "salt_pepper": dict(
        description=f"Impulse noise: 5% of pixels (all channels) set to white or black, half each ({_REF}).",
        departs_from_paper=""),
    "gaussian_blur": dict(
        description=f"Isotropic Gaussian blur, 15x15 window, sigma ~ U(2, 4) px ({_REF}).",
        departs_from_paper=""),
    "jpeg": dict(
        description=f"JPEG round trip with OpenCV/libjpeg (4:2:0), quality ~ U{{10..40}} ({_REF}).",
        departs_from_paper=""),
    "ringing": dict(
        description="Ringing: ideal circular low-pass (jinc) kernel 15x15 zero-padded to 21x21, cutoff "
                    "~ U(1.0, 1.4) rad/px, reflect borders.",
        departs_from_paper="The reference fixes the cutoff at 1.2 rad/px; we jitter it by +-0.2."),
    "rl": dict(
        description=f"R-L: one Richardson-Lucy iteration with a 5x5 uniform PSF from the flat start, on the "
                    f"image padded 7 px with a linear ramp to 0, cropped back ({_REF}); one iteration from a "
                    f"flat start equals the PSF blur, so the input is a 5x5 box blur with ramp-darkened borders.",
        departs_from_paper=""),
    "inpainting": dict(
        description=f"Inpainting: 5-10 random straight lines, 5-10 px thick, all white or all black ({_REF}).",
        departs_from_paper=""),
    "rain_simple": dict(
        description="Simple additive rain (PromptGIP model): random drops (amount U(40, 200) per 25600 px) "
                    "smeared by a 30-40 px line kernel at U(-45, 45) deg, Gaussian-widened (3-11 px), "
                    "min-max scaled and added.",
        departs_from_paper="The paper also trains deraining on Rain13K and tests on real benchmarks; rain "
                           "pairs here are synthetic only."),
    "rain_complex": dict(
        description="Complex rain: 2-4 streak layers (far: dense, short, dim; near: sparse, long, wide, "
                    "bright) around a common wind angle, a spatially varying rain veil and splashes, "
                    "screen-blended.",
        departs_from_paper="Stands in for the paper's ComplexRain column (Rain13K-style real/rendered rain "
                           "datasets that cannot ship); a procedural layered-streak model of our own."),
}


@dataclass(frozen=True)
class SingleDegradationTask:
    """The task function of one recipe: (uint8 RGB, rng) -> (degraded input, clean target, params).

    A module-level class rather than a closure so that task functions pickle (process pools).
    """

    name: str

    def __call__(self, image: np.ndarray, rng: np.random.Generator):
        check_rgb(image)
        degraded, params = degrade(self.name, image, rng)
        return degraded, image.copy(), params


for _name, _meta in _SINGLE_TASKS.items():
    register_task(name=_name, category="restoration", metric="psnr", target_domain=CLEAN, **_meta)(
        SingleDegradationTask(_name))


# --------------------------------------------------------------------------------------------
# Haze (needs depth)


@register_task(
    name="haze", category="restoration", metric="psnr", target_domain=CLEAN, needs_depth=True,
    description="Atmospheric scattering I = J t + A (1 - t), t = exp(-beta d), beta ~ U(0.5, 2.5), "
                "grey airlight A ~ U(0.8, 1.0) (our ranges: the reference reads ITS pairs and synthesises none), depth d in [0, 1] from the "
                "source (dead-leaves layers) or the documented depth proxy for photos.",
    departs_from_paper="The paper trains dehazing on ITS (real indoor depth) and tests on SOTS; here "
                       "depth comes from dead-leaves stacking order or a heuristic proxy for photos.")
def haze(image: np.ndarray, rng: np.random.Generator, depth: np.ndarray | None = None):
    """uint8 RGB (+ optional float32 depth, 1 = far) -> (hazy input, clean target, params)."""
    check_rgb(image)
    source = "given" if depth is not None else "proxy"
    if depth is None:
        depth = depth_proxy(image)
    params = _draw_haze(rng, image.shape[:2])
    params["depth_source"] = source
    return deg.add_haze(image, depth, params["beta"], params["airlight"]), image.copy(), params


# --------------------------------------------------------------------------------------------
# Mixed degradations: GenLV's fixed-order chain, each slot a uniform choice where None = skip.

MIXED_SLOTS: tuple[tuple[str | None, ...], ...] = (
    ("darken", None, None, None, None),
    ("gaussian_blur", "ringing", "rl", None, None),
    ("gaussian_noise", "salt_pepper", "poisson_noise", None, None),
    ("inpainting", "rain_simple", None, None, None),
    ("jpeg", None, None, None, None),       # last, as in the reference: lines and rain are compressed too
)
_MAX_CHAIN_DRAWS = 100


def draw_chain(rng: np.random.Generator) -> tuple[list[str], int]:
    """One non-empty chain of recipe names in slot order, and how many empty chains were redrawn."""
    for redraws in range(_MAX_CHAIN_DRAWS):
        chain = [slot[int(rng.integers(len(slot)))] for slot in MIXED_SLOTS]
        chain = [name for name in chain if name is not None]
        if chain:
            return chain, redraws
    raise RuntimeError("could not draw a non-empty degradation chain")  # p ~ 0.061^100


@register_task(
    name="mixed", category="restoration", metric="psnr", target_domain=CLEAN,
    description="GenLV mixed degradations in fixed order (the reference loader's Mix1R chain): darkening "
                "(1/5) -> blur | ringing | R-L (1/5 each) -> Gaussian | salt-pepper | Poisson noise (1/5 "
                "each) -> inpainting | simple rain (1/5 each) -> JPEG (1/5); each slot but the darkening "
                "reuses the single restoration task's recipe.",
    departs_from_paper="An extra task (the paper trains on it but reports no column). Empty chains "
                       "(6.1% in the reference: 0.8 x 0.4 x 0.4 x 0.8 x 0.6; input = target) are redrawn; the "
                       "darkening slot adds a gamma U(1, 1.5) to the reference's brightness scale U(0.3, 0.4) (no "
                       "sensor noise, unlike the low_light task). "
                       "The reference degrades the prompt and the query with one chain (levels drawn apart); "
                       "here each sample draws its own chain and a prompt is another sample, so a mixed prompt "
                       "usually shows a different chain from its query's.")
def mixed(image: np.ndarray, rng: np.random.Generator):
    """uint8 RGB -> (input degraded by a random chain, clean target, params with every stage's draw)."""
    check_rgb(image)
    chain, redraws = draw_chain(rng)
    degraded = image
    stages = []
    for name in chain:
        degraded, params = degrade(name, degraded, rng)
        stages.append({"degradation": name, **params})
    return degraded, image.copy(), {"chain": chain, "stages": stages, "redraws": redraws}
