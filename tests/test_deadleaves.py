import numpy as np

from taskgen.deadleaves import dead_leaves


def test_deterministic_given_the_generator():
    a, da = dead_leaves(96, np.random.default_rng(5))
    b, db = dead_leaves(96, np.random.default_rng(5))
    assert a.tobytes() == b.tobytes() and da.tobytes() == db.tobytes()
    c, _ = dead_leaves(96, np.random.default_rng(6))
    assert c.tobytes() != a.tobytes()


def test_shapes_ranges_and_depth_map():
    img, depth = dead_leaves(128, np.random.default_rng(0))
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert depth.shape == (128, 128) and depth.dtype == np.float32
    assert depth.min() == 0.0 and depth.max() == 1.0


def test_occlusion_statistics_look_like_dead_leaves():
    # Many distinct flat regions (occluding leaves), strong edges, and a wide colour spread.
    img, depth = dead_leaves(128, np.random.default_rng(1))
    assert len(np.unique(depth)) > 40, "expected many visible leaves"
    gy = np.abs(np.diff(img.astype(np.int16), axis=0)).max(axis=2)
    assert (gy > 40).mean() > 0.02, "expected sharp occlusion edges"
    assert img.reshape(-1, 3).std(axis=0).mean() > 25


def test_depth_is_piecewise_constant_per_leaf():
    # Depth changes only where the image has an occlusion boundary (or inside textured leaves).
    img, depth = dead_leaves(128, np.random.default_rng(2))
    flat = np.abs(np.diff(depth, axis=1)) == 0
    assert flat.mean() > 0.7
