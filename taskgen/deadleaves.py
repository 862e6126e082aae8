"""Procedural training images: the dead-leaves model with gradients, textures and depth of field.

Dead leaves (Matheron; Lee, Mumford & Huang 2001) stacks random occluding shapes whose radii follow
a power law ``p(r) ~ r^-alpha``; the result is scale invariant and has natural-image-like edge and
occlusion statistics.  Achddou, Gousseau & Ladjal ("Synthetic images as a regularity prior for
image restoration neural networks", SSVM 2021) showed that training denoisers and super-resolvers on
such images comes close to natural-image training.  On top of flat leaves we add per-leaf linear
colour gradients and textures (band-limited noise, stripes) and an optional depth-of-field blur.

Leaf hues are uniform, so every image averages to about grey; photographs do not (a warm or cool
illuminant, a dominant palette). ``tint_sigma`` > 0 gives each image such a cast: per-channel
gains exp(N(0, tint_sigma²)), normalised to keep the mean brightness. A model trained only on
grey-balanced images pulls a photo's colours towards grey when it should leave them alone.

For the same reason every dead-leaves image averages to mid-grey brightness (means 87-136 of 255),
where photos range from dark to bright (18-184 for the packaged test photos). A model that has only
seen dark images as low-light inputs brightens any dark photo it is asked to leave alone.
``exposure_sigma`` > 0 gives each image a tone curve ``x ** gamma`` with gamma = exp(N(0,
exposure_sigma²)): gamma > 1 darkens, < 1 brightens, and no value leaves [0, 1].

Leaf colours are smooth and rarely reach 0 or 1, so dead leaves have no clipped regions, where 6 %
of the packaged test photos' crops are over a tenth crushed black (a night sky, a studio
backdrop). A model that has never seen a flat black area fills it from the prompt's colours.
``levels`` > 0 gives each image a black point ``U(0, levels)`` and a white point ``1 - U(0,
levels)``, mapped to 0 and 1 with the values beyond them clipped, as a levels or contrast edit of a
photo does: the darkest leaves become flat black, the brightest flat white.

Leaves are drawn straight onto the pixel grid, so every edge is a full-contrast one-pixel step, and
the default smallest leaf (2 % of the side) packs such steps densely. Photographs are band-limited
by their optics and have fewer hard edges, so the same degradation costs them much less: JPEG
leaves the packaged 128-px test photos at 29.7 dB on average and these leaves at 22.7 dB, Gaussian
blur 24.6 against 19.4 dB (``scripts/source_severity.py``). A model trained on such leaves
learns corrections far stronger than a photo needs. ``camera_blur`` > 0 gives each image a
Gaussian lens blur with sigma ``U(0.3, camera_blur)`` px, drawn after the depth of field; a larger
``r_min`` thins out the smallest leaves.

Texture is where photographs still differ most: the default textures (a quarter of the leaves,
amplitude U(0.02, 0.08)) leave dead leaves with less fine detail than the packaged test photos (on
genlv-s's training spec, lens blur included: high-pass std 7.7 against 9.6 levels at 128 px), and
a model trained on them reproduces a photo's foliage and lattices less faithfully than it
reproduces a leaf (pass-through 37.0 against 40.5 dB for genlv-s run 26; 38.7 dB with
texture_prob 0.6 and texture_amp 0.2, high-pass std 9.8). ``texture_prob`` and ``texture_amp``
raise both: each textured leaf's amplitude is drawn from U(texture_amp / 4, texture_amp).

The stacking order gives a layer map for free: leaf ``k`` of ``n`` lies at depth ``1 - k/n``
(later leaves are nearer), the background at depth 1.  Haze and underwater tasks use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


MAX_LEVELS = 0.5  # beyond it a black point could pass the white one
MIN_CAMERA_BLUR, MAX_CAMERA_BLUR = 0.3, 3.0  # the lens blur's sigma is drawn from U(0.3, camera_blur)
MIN_TEXTURE_AMP, MAX_TEXTURE_AMP = 0.02, 0.3  # beyond 0.3 a texture swamps the leaf's own colour


@dataclass(frozen=True)
class DeadLeavesConfig:
    alpha: float = 3.0           # power-law exponent of the radius distribution
    r_min: float = 0.02          # smallest radius, as a fraction of the image size
    r_max: float = 0.45          # largest radius, as a fraction of the image size
    n_shapes: int = 1000         # leaves drawn per image (enough to cover a 256^2 image)
    gradient_prob: float = 0.5   # fraction of leaves with a linear colour gradient
    texture_prob: float = 0.25   # fraction of leaves with a texture
    texture_amp: float = 0.08    # largest texture amplitude (of 1); each textured leaf draws U(amp / 4, amp)
    dof_prob: float = 0.3        # fraction of images with a depth-of-field blur
    dof_max_sigma: float = 3.0
    tint_sigma: float = 0.0      # std of the log per-channel gain of a per-image colour cast (0 = none)
    exposure_sigma: float = 0.0  # std of the log gamma of a per-image tone curve (0 = none)
    levels: float = 0.0          # largest black point / (1 - white point) of a per-image levels clip (0 = none)
    camera_blur: float = 0.0     # largest sigma (px) of a per-image Gaussian lens blur, smallest 0.3 (0 = none)

    def __post_init__(self):
        if not 0.0 <= self.levels <= MAX_LEVELS:
            raise ValueError(f"DeadLeavesConfig.levels must be in [0, {MAX_LEVELS:g}], got {self.levels}")
        if self.camera_blur != 0.0 and not MIN_CAMERA_BLUR <= self.camera_blur <= MAX_CAMERA_BLUR:
            raise ValueError(f"DeadLeavesConfig.camera_blur must be 0 or in [{MIN_CAMERA_BLUR:g}, "
                             f"{MAX_CAMERA_BLUR:g}], got {self.camera_blur}")
        if not 0.0 <= self.texture_prob <= 1.0:
            raise ValueError(f"DeadLeavesConfig.texture_prob must be in [0, 1], got {self.texture_prob}")
        if not MIN_TEXTURE_AMP <= self.texture_amp <= MAX_TEXTURE_AMP:
            raise ValueError(f"DeadLeavesConfig.texture_amp must be in [{MIN_TEXTURE_AMP:g}, {MAX_TEXTURE_AMP:g}], "
                             f"got {self.texture_amp}")
        if not 0.0 < self.r_min < self.r_max:
            raise ValueError(f"DeadLeavesConfig.r_min must be in (0, r_max = {self.r_max:g}), got {self.r_min}")


def _power_law_radii(rng: np.random.Generator, n: int, r_min: float, r_max: float, alpha: float) -> np.ndarray:
    """Inverse-CDF draw from p(r) ~ r^-alpha on [r_min, r_max]."""
    u = rng.random(n)
    a = 1.0 - alpha
    return (r_min ** a + u * (r_max ** a - r_min ** a)) ** (1.0 / a)


def _leaf_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Natural-looking colours: uniform hue, mostly moderate saturation, spread-out value."""
    hsv = np.empty((n, 1, 3), np.float32)
    hsv[:, 0, 0] = rng.random(n) * 360.0
    hsv[:, 0, 1] = rng.beta(1.3, 2.2, n)
    hsv[:, 0, 2] = rng.beta(1.8, 1.6, n)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[:, 0, :]


def _texture_fields(rng: np.random.Generator, size: int) -> np.ndarray:
    """Two zero-mean unit-ish texture fields (band-limited noise, oriented stripes), float32."""
    noise = rng.standard_normal((size, size)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=float(rng.uniform(0.6, 2.0)))
    noise /= noise.std() + 1e-6
    coords = np.arange(size, dtype=np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(3.0, 12.0)
    phase = coords[None, :] * np.float32(np.cos(theta)) + coords[:, None] * np.float32(np.sin(theta))
    stripes = np.sin(phase * np.float32(2 * np.pi / period))
    return np.stack([noise, stripes])


def dead_leaves(size: int, rng: np.random.Generator, config: DeadLeavesConfig = DeadLeavesConfig()):
    """One dead-leaves image: returns (uint8 RGB size x size x 3, float32 depth size x size in [0,1], 1 = far)."""
    n = config.n_shapes
    labels = np.zeros((size, size), np.int32)  # 0 = background plane
    radii = _power_law_radii(rng, n, config.r_min * size, config.r_max * size, config.alpha)
    centres = rng.uniform(-0.05 * size, 1.05 * size, (n, 2))
    kinds = rng.choice(3, n, p=[0.5, 0.3, 0.2]).tolist()   # disc, ellipse, rotated rectangle
    aspects = rng.uniform(0.3, 1.0, n)
    angles = rng.uniform(0, 180, n).tolist()
    cx_all = centres[:, 0].astype(np.int64).tolist()
    cy_all = centres[:, 1].astype(np.int64).tolist()
    r_all = np.maximum(1, np.rint(radii)).astype(np.int64).tolist()
    r_minor = np.maximum(1, np.rint(radii * aspects)).astype(np.int64).tolist()
    for k in range(n):
        centre, r, kind = (cx_all[k], cy_all[k]), r_all[k], kinds[k]
        if kind == 0:
            cv2.circle(labels, centre, r, k + 1, thickness=-1)
        elif kind == 1:
            cv2.ellipse(labels, centre, (r, r_minor[k]), angles[k], 0, 360, k + 1, -1)
        else:
            box = cv2.boxPoints((centre, (2 * r, 2 * r_minor[k]), angles[k]))
            cv2.fillConvexPoly(labels, box.astype(np.int32), k + 1)

    # Per-leaf attributes, gathered through the label map.
    base = _leaf_colours(rng, n + 1)
    grad_dir = rng.standard_normal((n + 1, 2)).astype(np.float32)
    grad_dir /= np.linalg.norm(grad_dir, axis=1, keepdims=True) + 1e-6
    has_grad = rng.random(n + 1) < config.gradient_prob
    grad_colour = (_leaf_colours(rng, n + 1) - base) * has_grad[:, None]
    grad_scale = np.concatenate([[1.0 / size], 1.0 / (radii.clip(min=4.0) * 2)]).astype(np.float32)
    tex_id = rng.integers(0, 2, n + 1)
    # amp / 4 is exact in binary, so the default 0.08 draws the same numbers as U(0.02, 0.08) always did
    tex_amp = (rng.uniform(config.texture_amp / 4, config.texture_amp, n + 1)
               * (rng.random(n + 1) < config.texture_prob)).astype(np.float32)
    tex_amp[0] = 0.0  # the background plane, rarely visible, stays untextured
    centres_all = np.concatenate([[[size / 2, size / 2]], centres]).astype(np.float32)

    # Folding the ramp into per-leaf (px, py, q) keeps the per-pixel work to a few gathers.
    px = grad_dir[:, 0] * grad_scale
    py = grad_dir[:, 1] * grad_scale
    q = 0.5 - (centres_all[:, 0] * grad_dir[:, 0] + centres_all[:, 1] * grad_dir[:, 1]) * grad_scale
    flat = labels.ravel()
    coords = np.arange(size, dtype=np.float32)
    t = np.take(px.astype(np.float32), flat).reshape(size, size) * coords[None, :]
    t += np.take(py.astype(np.float32), flat).reshape(size, size) * coords[:, None]
    t += np.take(q.astype(np.float32), flat).reshape(size, size)
    np.clip(t, 0.0, 1.0, out=t)
    image = np.take(base, flat, axis=0).reshape(size, size, 3)
    image += t[:, :, None] * np.take(grad_colour.astype(np.float32), flat, axis=0).reshape(size, size, 3)
    fields = _texture_fields(rng, size)
    amp = np.take(tex_amp, flat).reshape(size, size)
    tex = np.where(np.take(tex_id, flat).reshape(size, size) == 0, fields[0], fields[1]) * amp
    image += tex[:, :, None]
    lab = labels

    depth = np.where(lab == 0, 1.0, 1.0 - lab.astype(np.float32) / (n + 1)).astype(np.float32)
    # Stretch so the visible layers span [0, 1]: the front-most leaves are near, the back far.
    lo, hi = float(depth.min()), float(depth.max())
    depth = (depth - lo) / max(hi - lo, 1e-6)
    # Visible leaves are mostly late (near) ones; a concave map spreads them over the range.
    depth = np.power(depth, 0.35, dtype=np.float32)

    if rng.random() < config.dof_prob:
        focus = float(rng.uniform(0.0, 1.0))
        sigma = float(rng.uniform(1.0, config.dof_max_sigma))
        blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
        weight = np.clip(np.abs(depth - focus) * 2.0, 0.0, 1.0)[:, :, None]
        image = image * (1.0 - weight) + blurred * weight

    if config.camera_blur > 0:  # specs without it draw nothing here, so they keep their bytes
        sigma = float(rng.uniform(MIN_CAMERA_BLUR, config.camera_blur))
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)

    if config.tint_sigma > 0:  # drawn last, so tint_sigma = 0 leaves every other draw as it was
        gains = np.exp(rng.normal(0.0, config.tint_sigma, 3)).astype(np.float32)
        image = image * (gains / gains.mean())

    if config.exposure_sigma > 0:  # drawn after tint, so specs without it keep their bytes
        gamma = np.float32(np.exp(rng.normal(0.0, config.exposure_sigma)))
        image = np.power(np.clip(image, 0.0, 1.0), gamma)

    if config.levels > 0:  # drawn last, so specs without it keep their bytes
        black, white = rng.uniform(0.0, config.levels), 1.0 - rng.uniform(0.0, config.levels)
        image = (image - np.float32(black)) / np.float32(white - black)

    out = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return out, depth
