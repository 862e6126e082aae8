"""The 3 edge tasks and their operators (CPU, small images)."""
import json

import numpy as np
import pytest

import taskgen
from taskgen.deadleaves import dead_leaves
from taskgen.images import gray
from taskgen.ops import edges
from taskgen.sources import load_photo

EDGE_TASKS = ("canny", "laplacian", "perceptual_edges")


def photo(name: str = "coffee", size: int = 96) -> np.ndarray:
    return np.ascontiguousarray(load_photo(name)[100:100 + size, 150:150 + size])


def run(name: str, image: np.ndarray, seed: int = 0):
    return taskgen.get_task(name).fn(image, np.random.default_rng(seed))


def disc_image(size: int = 96, radius: int = 30, inside=170, outside=60, texture: float = 0.0, seed: int = 0):
    """A bright disc on a dark background, optionally with Gaussian texture; plus ring/interior masks."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    image = np.where(r < radius, inside, outside).astype(np.float32)[..., None].repeat(3, axis=2)
    image += np.random.default_rng(seed).normal(0, texture, (size, size, 1)).astype(np.float32) if texture else 0
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, np.abs(r - radius) < 2.5, r < radius - 6


@pytest.mark.parametrize("name", EDGE_TASKS)
def test_contract(name):
    spec = taskgen.get_task(name)
    assert spec.category == "edge" and spec.metric == "mae" and spec.description
    image = photo()
    inp, tgt, params = run(name, image)
    assert np.array_equal(inp, image), "the input of an edge task is the clean image"
    assert tgt.dtype == np.uint8 and tgt.shape == image.shape
    assert np.array_equal(tgt[..., 0], tgt[..., 1]) and np.array_equal(tgt[..., 0], tgt[..., 2])
    assert not np.array_equal(inp, tgt)
    assert json.loads(json.dumps(params)) == params


@pytest.mark.parametrize("name", EDGE_TASKS)
def test_fixed_operator_depends_on_the_image_only(name):
    image = photo(size=64)
    a, b = run(name, image, seed=1), run(name, image, seed=2)
    assert a[1].tobytes() == b[1].tobytes(), "edge operators have no random parameters"
    other = run(name, photo("astronaut", size=64), seed=1)
    assert not np.array_equal(a[1], other[1])


@pytest.mark.parametrize("name", EDGE_TASKS)
def test_flat_image_has_no_edges(name):
    assert run(name, np.full((64, 64, 3), 117, np.uint8))[1].max() == 0


def test_canny_is_binary_and_traces_the_boundary():
    image, ring, interior = disc_image()
    target = run("canny", image)[1][..., 0]
    assert set(np.unique(target)) == {0, 255}
    on = target > 0
    assert not on[~ring].any(), "edges only along the disc boundary"
    assert 0.8 * 2 * np.pi * 30 < on.sum() < 1.3 * 2 * np.pi * 30, "a closed one-pixel contour"
    assert set(np.unique(run("canny", photo())[1])) <= {0, 255}


def test_canny_uses_luma_of_rgb():
    # BT.601 luma weighs red 0.299 and blue 0.114: a saturated red disc (luma step 76) is found, a
    # blue one (step 29, under the low threshold) is not. Reading RGB as BGR would swap the two.
    yy, xx = np.mgrid[:64, :64]
    disc = np.hypot(yy - 32, xx - 32) < 20
    red, blue = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    red[disc, 0] = 255
    blue[disc, 2] = 255
    assert run("canny", red)[1].any() and not run("canny", blue)[1].any()


def test_laplacian_vanishes_on_ramps_and_peaks_at_steps():
    ramp = np.tile(np.linspace(20, 220, 64).astype(np.uint8)[None, :, None], (64, 1, 3))
    assert run("laplacian", ramp)[1][4:-4, 4:-4].max() <= 2, "second derivative of a linear ramp is 0"
    step = np.full((64, 64, 3), 50, np.uint8)
    step[:, 32:] = 150
    target = run("laplacian", step)[1][..., 0]
    assert target[:, 30:34].min() > 20 and target[:, :28].max() == 0 and target[:, 36:].max() == 0
    assert np.array_equal(target, edges.laplacian_edges(step))
    assert target.max() <= 255


def test_perceptual_edges_are_soft_and_thin():
    image, ring, _ = disc_image()
    target = run("perceptual_edges", image)[1][..., 0]
    assert len(np.unique(target)) > 5, "soft: intermediate values, not a binary map"
    assert target[ring].max() == 255
    strong = target > 128
    assert strong[ring].mean() > 0.2 and not strong[~ring].any()
    assert strong.sum() < 0.5 * ring.sum(), "thinned to a line, not the whole transition band"


def test_perceptual_edges_suppress_texture_that_the_laplacian_keeps():
    image, ring, interior = disc_image(texture=8.0)
    perceptual = run("perceptual_edges", image)[1][..., 0].astype(float)
    laplacian = run("laplacian", image)[1][..., 0].astype(float)
    assert perceptual[interior].mean() < 0.02 * perceptual[ring].mean()
    assert laplacian[interior].mean() > 0.15 * laplacian[ring].mean()


def test_perceptual_edges_see_isoluminant_colour_boundaries():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (180, 80, 80)
    image[:, 32:] = (60, 140, 60)
    assert abs(int(gray(image)[0, 0]) - int(gray(image)[0, -1])) <= 3
    assert not run("canny", image)[1].any(), "luma-based Canny misses it"
    target = run("perceptual_edges", image)[1][..., 0]
    assert target[:, 30:34].max(axis=1).min() == 255
    assert target[:, :26].max() == 0 and target[:, 38:].max() == 0


def test_perceptual_edges_on_dead_leaves_follow_leaf_boundaries():
    image, depth = dead_leaves(96, np.random.default_rng(1))
    target = run("perceptual_edges", image)[1][..., 0]
    boundaries = np.zeros(depth.shape, bool)
    boundaries[:, 1:] |= depth[:, 1:] != depth[:, :-1]
    boundaries[1:, :] |= depth[1:, :] != depth[:-1, :]
    near_boundary = np.zeros_like(boundaries)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            near_boundary |= np.roll(np.roll(boundaries, dy, 0), dx, 1)
    strong = target > 128
    assert strong.any() and strong[near_boundary].sum() > 0.8 * strong.sum()
