"""The eight stylization tasks: contract, determinism, and properties that prove each style."""
import itertools
import json

import cv2
import numpy as np
import pytest

import taskgen
from taskgen.deadleaves import dead_leaves
from taskgen.ops import npr, styles
from taskgen.sample import make_sample
from taskgen.sources import PhotoSource, load_photo

MINE = ("pencil", "rtv", "vermeer", "jojo", "raphael", "fauvism", "divisionism", "cloisonnism")
PAINTINGS = ("vermeer", "jojo", "raphael", "fauvism", "divisionism", "cloisonnism")
PLACED = ("fauvism", "divisionism", "jojo")          # the styles that draw stroke/dot/screen placement
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "grace_hopper")


def _photo(name="astronaut", size=96):
    return cv2.resize(load_photo(name), (size, size), interpolation=cv2.INTER_AREA)


def _run(name, image, seed=0):
    return taskgen.get_task(name).fn(image, np.random.default_rng(seed))


def _lab(image):
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


# --------------------------------------------------------------------------------------------
# Contract

def test_tasks_are_registered_with_their_metadata():
    specs = {s.name: s for s in taskgen.list_tasks("stylization")}
    for name in MINE:
        spec = specs[name]
        assert spec.metric == "psnr" and spec.category == "stylization"
        assert spec.description and spec.departs_from_paper
    for name in PAINTINGS:
        assert "procedural stand-in" in specs[name].description
        assert "AdaAttN" in specs[name].departs_from_paper
    assert "Lu, Xu & Jia" in specs["pencil"].description
    assert "relative total variation" in specs["rtv"].description.lower()


@pytest.mark.parametrize("name", MINE)
def test_contract_and_determinism(name):
    image, _ = dead_leaves(80, np.random.default_rng(7))
    image = np.ascontiguousarray(image[:, :72])                  # non-square
    inp, tgt, params = _run(name, image, seed=3)
    inp2, tgt2, params2 = _run(name, image, seed=3)
    assert inp.dtype == tgt.dtype == np.uint8 and inp.shape == tgt.shape == image.shape
    assert np.array_equal(inp, image), "input is the clean image"
    assert np.array_equal(inp, inp2) and np.array_equal(tgt, tgt2) and params == params2, "same seed, same bytes"
    assert json.loads(json.dumps(params)) == params
    assert not np.array_equal(tgt, image)


@pytest.mark.parametrize("name", MINE)
def test_no_global_randomness(name):
    image = _photo("rocket", 64)
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    _, first, _ = _run(name, image)
    np.random.seed(12345)                                       # a different global state ...
    _, second, _ = _run(name, image)
    assert np.array_equal(first, second)                         # ... changes nothing
    np.random.seed(0)
    _run(name, image)
    assert np.array_equal(np.random.get_state()[1], state), "the global RNG must not be consumed"


def test_randomness_only_in_placement():
    image = _photo("coffee", 96)
    for name in MINE:
        _, a, pa = _run(name, image, seed=1)
        _, b, pb = _run(name, image, seed=2)
        if name in PLACED:
            assert not np.array_equal(a, b) and pa != pb, f"{name}: placement must follow the rng"
            # ... but the style does not: colour statistics agree closely across placements
            assert np.abs(_lab(a).mean((0, 1)) - _lab(b).mean((0, 1))).max() < 2.5, name
        else:
            assert np.array_equal(a, b), f"{name}: fixed style parameters, no randomness"


def test_make_sample_on_photos():
    source = PhotoSource()
    for name in MINE:
        sample = make_sample(taskgen.get_task(name), "test", 2, seed=0, size=64, source=source)
        assert sample.target.shape == (64, 64, 3)


# --------------------------------------------------------------------------------------------
# Properties of each style

def test_pencil_target_is_the_drawing_as_luma_with_the_photos_chroma():
    from taskgen.ops import pencil

    image = _photo("chelsea", 96)
    _, tgt, params = _run("pencil", image)
    assert params["tone_weights"] == [76.0, 22.0, 2.0]
    assert not np.array_equal(tgt[..., 0], tgt[..., 2]), "colour, not grey"
    luma = lambda x: x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    drawing = pencil.pencil_drawing(image).astype(np.float32)
    unclipped = (tgt > 2).all(axis=2) & (tgt < 253).all(axis=2)
    assert unclipped.mean() > 0.5
    assert np.abs(luma(tgt) - drawing)[unclipped].max() <= 1.5, "Y is the drawing"
    # U and V are the photo's: each pixel moved by the same amount in R, G and B
    shift = tgt.astype(np.float32) - image.astype(np.float32)
    assert np.abs(shift[..., 0] - shift[..., 2])[unclipped].max() <= 1.0


def test_rtv_target_flattens_texture_of_a_photo():
    image = _photo("chelsea", 96)                               # fur texture everywhere
    _, tgt, params = _run("rtv", image)
    detail = lambda x: np.abs(x.astype(np.float32) - cv2.GaussianBlur(x, (0, 0), 1.5).astype(np.float32)).mean()
    assert detail(tgt) < 0.4 * detail(image)
    assert len(params["cg_iterations"]) == params["iterations"]


def test_cloisonnism_has_at_most_k_flat_colours_and_dark_contours_on_every_border():
    for photo in ("astronaut", "coffee", "motorcycle_left"):
        image = _photo(photo, 96)
        _, tgt, _ = _run("cloisonnism", image)
        contour = np.array(npr.load_palette("cloisonnism").extras["contour"], np.uint8)
        on_contour = (tgt == contour).all(axis=2)
        inside = tgt[~on_contour]
        assert len(np.unique(inside, axis=0)) <= styles.CLOISON_COLOURS
        labels, _ = styles.cloisonne_regions(image)
        border = npr.region_boundaries(labels)
        assert border.any() and on_contour[border].all(), "every region border is inked"
        assert cv2.cvtColor(contour[None, None], cv2.COLOR_RGB2GRAY)[0, 0] < 50, "contours are dark"
        assert 0.05 < on_contour.mean() < 0.4


def test_divisionism_is_made_of_dots_on_a_light_ground():
    image = _photo("astronaut", 128)
    _, tgt, _ = _run("divisionism", image)

    def local_std(x):
        x = x.astype(np.float32)
        mean = cv2.blur(x, (5, 5))
        return np.sqrt(np.maximum(cv2.blur(x * x, (5, 5)) - mean * mean, 0)).mean(axis=2)

    # at dot scale (5 px) the colour varies strongly even where the photo is smooth
    smooth = local_std(image) < 6
    assert smooth.mean() > 0.2
    assert np.median(local_std(tgt)[smooth]) > 25
    palette = npr.load_palette("divisionism")
    ground = np.array(palette.extras["ground"], np.uint8)
    near_ground = np.abs(tgt.astype(np.int32) - ground).sum(axis=2) < 40   # ground and dot rims
    assert near_ground.mean() > 0.1, "the light ground shows between dots"
    # dots are unmixed pigments: most pixels are (nearly, outside anti-aliased rims) a palette
    # colour or the ground, though the photo's colours are anything
    def pure_fraction(x):
        pure = np.zeros(x.shape[:2], bool)
        for colour in np.vstack([palette.rgb, ground[None]]).astype(np.int32):
            pure |= np.abs(x.astype(np.int32) - colour).sum(axis=2) < 30
        return pure.mean()
    assert pure_fraction(tgt) > 0.6 > 0.3 > pure_fraction(image)
    # and the dots still carry the picture: a blurred render correlates with the blurred photo
    blur = lambda x: cv2.GaussianBlur(x, (0, 0), 3.0).astype(np.float32).mean(axis=2).ravel()
    assert np.corrcoef(blur(tgt), blur(image))[0, 1] > 0.7


def test_fauvism_raises_saturation_and_repaints_hues():
    for photo in PHOTOS:
        image = _photo(photo, 96)
        _, tgt, _ = _run("fauvism", image)
        assert npr.saturation(tgt).mean() > npr.saturation(image).mean() + 0.2, photo
    # non-naturalistic: green foliage becomes a warm red-orange
    green = np.zeros((64, 64, 3), np.uint8)
    green[:] = (60, 140, 50)
    _, tgt, _ = _run("fauvism", green)
    hue = cv2.cvtColor(tgt, cv2.COLOR_RGB2HSV_FULL)[..., 0].astype(np.float32) * 360 / 256
    assert np.median(np.minimum(hue, 360 - hue)) < 40, "hue must be near red"


def test_fauvism_strokes_are_visible():
    # a smooth gradient has no texture; the painting does (strokes of slightly different colours)
    ramp = np.repeat(np.linspace(30, 220, 96).astype(np.uint8)[None, :, None], 96, axis=0)
    ramp = np.concatenate([ramp, ramp[:, ::-1], np.full_like(ramp, 90)], axis=2)
    _, tgt, params = _run("fauvism", ramp)
    assert params["strokes"] > 400
    assert tgt.astype(np.float32).std(axis=0).mean() > 3 * ramp.astype(np.float32).std(axis=0).mean() + 1


def test_vermeer_window_light_and_canvas_texture():
    grey = np.full((96, 96, 3), 150, np.uint8)
    _, tgt, _ = _run("vermeer", grey)
    luma = cv2.cvtColor(tgt, cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert luma[:24, :24].mean() > luma[-24:, -24:].mean() + 25, "light falls from the upper left"
    detail = luma - cv2.GaussianBlur(luma, (0, 0), 2.0)
    assert 0.8 < detail[30:66, 30:66].std() < 6, "a fine canvas weave, not noise"
    lab = _lab(tgt)
    assert lab[:24, :24, 2].mean() > lab[-24:, -24:, 2].mean() + 3, "warm light, cooler shade"


def test_raphael_sfumato_softens_and_warms():
    for photo in ("astronaut", "coffee", "grace_hopper"):
        image = _photo(photo, 96)
        _, tgt, _ = _run("raphael", image)
        lap = lambda x: np.abs(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean()
        assert lap(tgt) < 0.45 * lap(image), photo
        assert _lab(tgt)[..., 2].mean() > _lab(image)[..., 2].mean() + 3, "warm varnish"
        luma = cv2.cvtColor(tgt, cv2.COLOR_RGB2GRAY)
        assert luma.min() > 15, "lifted blacks"


def test_jojo_has_ink_outlines_screentone_and_hatching():
    # a dark-to-light ramp crosses every lightness band; a bright square adds an outline
    ramp = np.repeat(np.linspace(10, 250, 128).astype(np.uint8)[None, :, None], 128, axis=0).repeat(3, axis=2)
    ramp[40:88, 96:120] = 255
    ramp[40:88, 8:32] = 0
    _, tgt, params = _run("jojo", ramp)
    ink = np.array(npr.load_palette("jojo").extras["ink"], np.int32)
    is_ink = (np.abs(tgt.astype(np.int32) - ink).sum(axis=2) < 30)
    assert is_ink[50:78, 12:28].all(), "solid black shadows"
    lightness = _lab(ramp)[0, :, 0]
    # hatching and screentone: ink covers a fraction (not all, not none) of the two shadow bands
    (ink_l, hatch_l, screen_l, flat_l) = styles.JOJO_BANDS
    for lo, hi in ((ink_l + 2, hatch_l - 2), (hatch_l + 2, screen_l - 2)):
        cols = np.where((lightness > lo) & (lightness < hi))[0]
        cover = is_ink[:36, cols].mean()
        assert len(cols) >= 4 and 0.1 < cover < 0.8, (lo, hi, cover)
    # flat colour band: no ink at all
    cols = np.where((lightness > screen_l + 3) & (lightness < flat_l - 3))[0]
    assert not is_ink[:36, cols].any()
    # an outline around the bright square's left edge (inside the light band)
    assert is_ink[50:78, 93:98].any(axis=1).all()
    assert 0 <= params["hatch_phase"] < 1 and len(params["screen_phase"]) == 2


# --------------------------------------------------------------------------------------------
# The six styles are told apart by simple statistics

def _statistics(source, stylized):
    """Change of simple colour/texture statistics from the photo to its stylization."""
    def stats(x):
        lab = _lab(x)
        f = x.astype(np.float32) / 255
        detail = np.abs(f - cv2.GaussianBlur(f, (0, 0), 1.0)).mean()
        flat = (cv2.dilate(x, np.ones((3, 3), np.uint8)) == cv2.erode(x, np.ones((3, 3), np.uint8))).all(2).mean()
        return np.array([npr.saturation(x).mean(), lab[..., 0].mean() / 100, lab[..., 2].mean() / 50,
                         lab[..., 1].mean() / 50, np.log(detail), (lab[..., 0] < 15).mean(), flat])
    a, b = _lab(source), _lab(stylized)
    turn = np.abs(np.angle(np.exp(1j * (np.arctan2(b[..., 2], b[..., 1]) - np.arctan2(a[..., 2], a[..., 1])))))
    weight = np.minimum(np.hypot(a[..., 1], a[..., 2]), np.hypot(b[..., 1], b[..., 2]))
    hue_turn = (turn * weight).sum() / max(weight.sum(), 1e-6)
    return np.r_[stats(stylized) - stats(source), hue_turn]


STAT_NAMES = ("saturation", "lightness", "b*", "a*", "log detail", "black fraction", "flat fraction", "hue turn")


def test_every_pair_of_styles_is_separated_by_one_statistic():
    features = {}
    for photo in PHOTOS:
        image = _photo(photo, 96)
        for name in PAINTINGS:
            features[name, photo] = _statistics(image, _run(name, image)[1])
    spread = np.array(list(features.values())).std(axis=0)
    for a, b in itertools.combinations(PAINTINGS, 2):
        gaps = []
        for k in range(len(STAT_NAMES)):
            va = np.array([features[a, p][k] for p in PHOTOS])
            vb = np.array([features[b, p][k] for p in PHOTOS])
            gaps.append(max(va.min() - vb.max(), vb.min() - va.max()) / spread[k])
        best = int(np.argmax(gaps))
        # some statistic puts every photo of style a on one side and every photo of b on the other,
        # with a gap of at least a quarter of that statistic's overall spread
        assert gaps[best] > 0.25, f"{a} vs {b}: best statistic {STAT_NAMES[best]} gap {gaps[best]:.2f}"
