"""Six painting styles as deterministic non-photorealistic renderings (procedural stand-ins for the
AdaAttN neural style transfer the paper used, whose VGG weights and style images do not ship).

Each style is ``fn(image uint8 RGB, rng) -> (stylized uint8 RGB, params)`` with fixed style
parameters; ``rng`` only places strokes and dots (and sets screen phases), and ``params`` records
what was drawn.  Palettes live in ``taskgen/data/palettes.json``.  ``STYLES`` maps the task name to
its function; a real paired dataset (the ``adaattn`` layout of ``taskgen.paired``) can replace any of
them per split, because a task's target depends on nothing but these functions.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from . import npr

StyleFn = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, dict]]
STYLES: dict[str, StyleFn] = {}


def _style(name: str):
    def register(fn: StyleFn) -> StyleFn:
        STYLES[name] = fn
        return fn
    return register


def _to_u8(rgb: np.ndarray) -> np.ndarray:
    """float32 RGB [0, 1] -> uint8 (round half to even, clipped)."""
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _placement_rng(rng: np.random.Generator) -> tuple[np.random.Generator, int]:
    """One drawn seed for all stroke/dot placements, so ``params`` can record it as a single value."""
    seed = int(rng.integers(0, 2**31 - 1))
    return np.random.default_rng(seed), seed


# --------------------------------------------------------------------------------------------
# Vermeer: Dutch Golden Age palette, soft window light from the upper left, fine canvas weave

VERMEER_LIGHT_CENTRE = (0.05, 0.0)   # (y, x) as fractions: the window is up and to the left
VERMEER_LIGHT_RADIUS = 0.95
VERMEER_CANVAS_AMPLITUDE = 2.2       # Lab L units of weave relief


@_style("vermeer")
def vermeer(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Palette transfer to Vermeer's pigments, cool daylight falling from a left window, dark
    umber shadows, lead-white highlights, and a plain-weave canvas texture."""
    h, w = image.shape[:2]
    palette = npr.load_palette("vermeer")
    painted = cv2.bilateralFilter(cv2.bilateralFilter(image, 7, 35, 4), 7, 35, 4)  # grain -> smooth paint
    lab = npr.rgb_to_lab(painted)
    lightness = lab[..., 0] / 100.0
    light = npr.radial_falloff(h, w, VERMEER_LIGHT_CENTRE, VERMEER_LIGHT_RADIUS)
    # chiaroscuro: shadows sink towards umber, the lit side stays luminous
    lightness = np.clip(np.power(lightness, 1.3) * (0.45 + 0.7 * light), 0.0, 1.0)
    lab[..., 0] = lightness * 100.0
    ab = 0.2 * lab[..., 1:] + 0.8 * npr.soft_palette_ab(lab, palette.lab, temperature=90.0, lightness_weight=0.4)
    ab[..., 1] += 10.0 * (light - 0.5)                          # warm where lit, cool blue-grey in shade
    lab[..., 1:] = ab
    lab[..., 0] += VERMEER_CANVAS_AMPLITUDE * npr.canvas_weave(h, w) * (0.4 + 0.6 * lightness)
    return _to_u8(npr.lab_to_rgb(lab)), {}


# --------------------------------------------------------------------------------------------
# Raphael: sfumato softening, warm Renaissance palette under an aged varnish

@_style("raphael")
def raphael(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Sfumato (edges dissolved by edge-aware then Gaussian smoothing), palette transfer to
    Renaissance pigments, lifted blacks and softened highlights, warm varnish and a soft vignette."""
    h, w = image.shape[:2]
    palette = npr.load_palette("raphael")
    soft = cv2.bilateralFilter(image, 9, 30, 6)
    soft = cv2.bilateralFilter(soft, 9, 30, 6).astype(np.float32) / 255.0
    soft = 0.45 * soft + 0.55 * cv2.GaussianBlur(soft, (0, 0), 2.0)   # smoke-like transitions
    lab = npr.rgb_to_lab(soft)
    lightness = lab[..., 0] / 100.0
    vignette = 0.72 + 0.28 * npr.radial_falloff(h, w, (0.45, 0.5), 0.75)
    lab[..., 0] = (12.0 + 80.0 * np.power(lightness, 0.95)) * vignette
    ab = 0.4 * lab[..., 1:] + 0.6 * npr.soft_palette_ab(lab, palette.lab, temperature=220.0, lightness_weight=0.4)
    ab[..., 0] += 3.0                                           # aged varnish: warm, yellowed
    ab[..., 1] += 11.0
    lab[..., 1:] = ab * 0.9
    return _to_u8(npr.lab_to_rgb(lab)), {}


# --------------------------------------------------------------------------------------------
# Fauvism: saturated, non-naturalistic colour in flat, visible brush strokes

# Hue remapping anchors (degrees, input -> output): foliage turns red-orange, sky pink and violet,
# skin yellow-orange; the Fauves' colour is expressive, not descriptive.
FAUVE_HUE_IN = np.array([0.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0], np.float32)
FAUVE_HUE_OUT = np.array([-10.0, 38.0, 75.0, 15.0, 285.0, 325.0, 250.0, 350.0], np.float32)
FAUVE_STROKE_SPACING = 4.0
FAUVE_STROKE_LENGTH = 9.0
FAUVE_STROKE_WIDTH = 3


def fauve_colours(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 RGB [0, 1]: remapped hues, saturation raised to >= 0.6, greys coloured
    by lightness (violet-blue shadows, rose mid-tones, yellow lights), then pulled towards tube colours."""
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hue = np.interp(hue, FAUVE_HUE_IN, FAUVE_HUE_OUT)
    grey_hue = np.interp(val, [0.0, 0.45, 1.0], [250.0, 340.0, 415.0])  # > 360 wraps to yellow
    is_grey = sat < 0.18
    hue = np.where(is_grey, grey_hue, hue) % 360.0
    sat = 0.6 + 0.4 * sat
    val = np.clip(0.18 + 0.95 * val, 0.0, 1.0)
    rgb = cv2.cvtColor(np.stack([hue, sat, val], -1).astype(np.float32), cv2.COLOR_HSV2RGB)
    lab = npr.rgb_to_lab(rgb)
    palette = npr.load_palette("fauvism")
    lab[..., 1:] = 0.5 * lab[..., 1:] + 0.5 * npr.soft_palette_ab(lab, palette.lab, temperature=250.0,
                                                                   lightness_weight=0.2)
    return npr.lab_to_rgb(npr.chroma_scale(lab, 1.15))


@_style("fauvism")
def fauvism(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Kuwahara-flattened underpainting in Fauve colours, overpainted with short thick strokes laid
    along the contours at jittered positions (drawn from ``rng``)."""
    h, w = image.shape[:2]
    placement, seed = _placement_rng(rng)
    flat = npr.kuwahara(image.astype(np.float32) / 255.0, 2)
    colours = fauve_colours(_to_u8(flat))
    underpainting = _to_u8(colours)
    points = npr.jittered_grid(h, w, FAUVE_STROKE_SPACING, 1.0, placement).reshape(-1, 2)
    points = points[placement.permutation(len(points))]
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    angles = npr.sample_at(npr.isophote_angle(luma, 3.0)[:, :, None], points)[:, 0]
    angles = angles + placement.normal(0.0, 0.25, len(angles)).astype(np.float32)
    stroke_colours = npr.sample_at(underpainting, points)
    painted = npr.paint_strokes(underpainting, points, stroke_colours, angles, FAUVE_STROKE_LENGTH,
                                FAUVE_STROKE_WIDTH)
    return painted, {"placement_seed": seed, "strokes": int(len(points))}


# --------------------------------------------------------------------------------------------
# Divisionism: dots of unmixed colour, complementary accents, light ground showing through

DOT_SPACING = 4.0
DOT_RADIUS = 1.9
ACCENT_RADIUS = 1.4
COMPLEMENT_MIN_CHROMA = 15.0   # Lab chroma below which a colour counts as grey
_DITHER = np.array([[0.125, 0.375], [0.5, 0.25]], np.float32) * 1.6  # ordered thresholds on the share


def _dot_colours(lab_at: np.ndarray, palette: npr.Palette, invert: bool) -> np.ndarray:
    """Palette colour of each dot: the nearest pigment or, where the ordered dither says so, the
    second nearest, so neighbouring dots mix optically to the local colour."""
    first, second, share = npr.nearest_colour_pair(lab_at, palette.lab, lightness_weight=0.6)
    gh, gw = share.shape
    threshold = np.tile(_DITHER, (gh // 2 + 1, gw // 2 + 1))[:gh, :gw]
    use_second = share > threshold
    if invert:
        use_second = ~use_second
    return np.where(use_second, second, first)


@_style("divisionism")
def divisionism(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Two interleaved layers of round dots (jittered grids drawn from ``rng``) in pure pigments from
    the palette; one dot in three of the second layer is the complement of the local colour."""
    h, w = image.shape[:2]
    placement, seed = _placement_rng(rng)
    palette = npr.load_palette("divisionism")
    ground = np.empty((h, w, 3), np.float32)
    ground[:] = np.array(palette.extras["ground"], np.float32) / 255.0
    lab = npr.chroma_scale(npr.rgb_to_lab(cv2.GaussianBlur(image, (0, 0), 1.2)), 1.4)
    pigments = palette.rgb.astype(np.float32) / 255.0
    canvas = ground
    for layer, (offset, radius) in enumerate(((0.0, DOT_RADIUS), (DOT_SPACING / 2.0, ACCENT_RADIUS))):
        centres = npr.jittered_grid(h, w, DOT_SPACING, 0.7, placement, offset=offset)
        lab_at = npr.sample_at(lab, centres)
        index = _dot_colours(lab_at, palette, invert=layer == 1)
        if layer == 1:
            complement = lab_at * np.array([1.0, -1.0, -1.0], np.float32)
            comp_index, _, _ = npr.nearest_colour_pair(complement, palette.lab, lightness_weight=0.6)
            gy, gx = np.mgrid[0:index.shape[0], 0:index.shape[1]]
            # greys have no meaningful complement: accents only where the colour is chromatic
            chromatic = np.hypot(lab_at[..., 1], lab_at[..., 2]) > COMPLEMENT_MIN_CHROMA
            index = np.where(((gy + gx) % 3 == 0) & chromatic, comp_index, index)
        canvas = npr.render_dots(canvas, centres, pigments[index], radius, DOT_SPACING)
    return _to_u8(canvas), {"placement_seed": seed}


# --------------------------------------------------------------------------------------------
# Cloisonnism: flat enamel-like colour cells bounded by bold dark contours

CLOISON_COLOURS = 8
CLOISON_CONTOUR_PX = 3


def cloisonne_regions(image: np.ndarray, k: int = CLOISON_COLOURS) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB -> (labels int32 HxW, centres float32 (k, 3) Lab): smoothed, quantised to k colours
    by deterministic k-means, speckles removed by a majority filter."""
    smooth = cv2.bilateralFilter(image, 9, 60, 5)
    smooth = cv2.medianBlur(cv2.bilateralFilter(smooth, 9, 60, 5), 5)
    lab = npr.rgb_to_lab(smooth)
    labels, centres = npr.kmeans_colours(lab, k)
    labels = npr.majority_filter(labels, k, 7)
    return labels, centres


@_style("cloisonnism")
def cloisonnism(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """At most ``CLOISON_COLOURS`` flat, brightened colours (deterministic k-means cells) with dark
    Prussian-blue contours of ``CLOISON_CONTOUR_PX`` px on every cell border."""
    palette = npr.load_palette("cloisonnism")
    labels, centres = cloisonne_regions(image)
    enamel = npr.chroma_scale(centres, 1.45)
    enamel[:, 0] = 8.0 + 0.9 * enamel[:, 0]                     # flat, slightly lifted tones
    flat_rgb = _to_u8(npr.lab_to_rgb(enamel[None])[0])
    out = flat_rgb[labels]
    border = npr.region_boundaries(labels).astype(np.uint8)
    border = cv2.dilate(border, np.ones((CLOISON_CONTOUR_PX - 1, CLOISON_CONTOUR_PX - 1), np.uint8)) > 0
    out[border] = palette.extras["contour"]
    return out, {}


# --------------------------------------------------------------------------------------------
# JoJo: manga colour page; unnatural posterised colour, ink, screentone and hatching

JOJO_HUE_ROTATION_DEG = 135.0    # deliberately unnatural colour schemes
JOJO_SCREEN_PERIOD = 4.0
JOJO_SCREEN_ANGLE = 45.0
JOJO_HATCH_PERIOD = 3.5
JOJO_HATCH_ANGLE = -60.0
# lightness bands (Lab L): solid ink | hatched shadow | screentoned shadow | flat colour | light
JOJO_BANDS = (20.0, 34.0, 50.0, 78.0)


@_style("jojo")
def jojo(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Hue-rotated colours snapped to a flat manga palette, lightness posterised into five bands
    (solid ink, hatching, screentone, flat colour, paper-light), plus inked outlines; the screen
    and hatching phases are drawn from ``rng``."""
    h, w = image.shape[:2]
    palette = npr.load_palette("jojo")
    screen_phase = (float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, 1.0)))
    hatch_phase = float(rng.uniform(0.0, 1.0))
    smooth = cv2.bilateralFilter(image, 7, 50, 4)
    lab = npr.rgb_to_lab(smooth)
    theta = np.deg2rad(JOJO_HUE_ROTATION_DEG)
    a, b = lab[..., 1], lab[..., 2]
    rotated = np.stack([np.cos(theta) * a - np.sin(theta) * b, np.sin(theta) * a + np.cos(theta) * b], -1)
    # doubled chroma plus a purple bias so greys, too, take a definite palette colour; the match
    # ignores lightness, which the bands below render instead
    query = np.concatenate([lab[..., :1], 2.0 * rotated + np.array([18.0, -22.0], np.float32)], -1)
    index = npr.nearest_colour_pair(query, palette.lab, lightness_weight=0.0)[0]
    index = npr.majority_filter(index, len(palette.names), 5)
    colour = palette.rgb[index].astype(np.float32) / 255.0
    paper = np.array(palette.extras["paper"], np.float32) / 255.0
    ink = np.array(palette.extras["ink"], np.float32) / 255.0
    lightness = cv2.GaussianBlur(lab[..., 0], (0, 0), 1.0)
    band = np.searchsorted(np.array(JOJO_BANDS, np.float32), lightness)   # 0 (ink) .. 4 (light)
    shade = colour * 0.62
    out = np.where((band >= 3)[..., None], colour, shade)
    out = np.where((band == 4)[..., None], 0.45 * colour + 0.55 * paper, out)
    tone = npr.screentone_dots(h, w, JOJO_SCREEN_PERIOD, JOJO_SCREEN_ANGLE, screen_phase,
                               np.full((h, w), 0.35, np.float32))
    hatch = npr.hatching(h, w, JOJO_HATCH_PERIOD, JOJO_HATCH_ANGLE, hatch_phase, 1.2)
    coverage = np.where(band == 2, tone, 0.0) + np.where(band == 1, np.maximum(hatch, 0.6 * tone), 0.0)
    coverage = np.where(band == 0, 1.0, coverage)
    gray_u8 = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    coverage = np.maximum(coverage, npr.ink_outlines(gray_u8, 40, 110, 2).astype(np.float32))[..., None]
    out = out * (1.0 - coverage) + ink * coverage
    return _to_u8(out), {"screen_phase": list(screen_phase), "hatch_phase": hatch_phase}
