"""The fast local Laplacian filter: pyramids, the fast algorithm against the filter's definition, and its
edge-aware behaviour against a plain unsharp mask."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from taskgen.ops.local_laplacian import (collapse, curve_remap, default_levels, gaussian_detail_remap,
                                         gaussian_pyramid, laplacian_pyramid, local_laplacian,
                                         local_laplacian_rgb, paris_remap)
from taskgen.sources import load_photo


def _photo_gray(size: int) -> np.ndarray:
    photo = cv2.resize(load_photo("astronaut"), (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


@pytest.mark.parametrize("shape", [(64, 64), (67, 45), (33, 100)])
def test_laplacian_pyramid_collapses_back_exactly(shape):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    n = default_levels(shape)
    assert len(laplacian_pyramid(image, n)) == n
    np.testing.assert_allclose(collapse(laplacian_pyramid(image, n)), image, atol=1e-5)


def test_default_levels_leave_a_small_coarsest_level():
    assert default_levels((256, 256)) == 7
    assert min(gaussian_pyramid(np.zeros((256, 300), np.float32), 7)[-1].shape) == 4


def test_zero_strength_remap_is_the_identity():
    image = _photo_gray(64)
    out = local_laplacian(image, gaussian_detail_remap(0.1, 0.0), n_samples=8)
    np.testing.assert_allclose(out, image, atol=1e-5)


def _direct_local_laplacian(image: np.ndarray, remap, n_levels: int) -> np.ndarray:
    """The filter's definition (Paris et al. 2011): every coefficient from its own remapped pyramid."""
    gauss = gaussian_pyramid(image, n_levels)
    out = [np.zeros_like(g) for g in gauss[:-1]]
    for level in range(n_levels - 1):
        for y in range(gauss[level].shape[0]):
            for x in range(gauss[level].shape[1]):
                g = gauss[level][y, x]
                out[level][y, x] = laplacian_pyramid(remap(image, g), level + 2)[level][y, x]
    return collapse(out + [gauss[-1]])


def test_fast_filter_converges_to_the_direct_definition():
    image = _photo_gray(128)[40:72, 40:72].copy()   # 32x32 keeps the direct O(n^2) version fast
    remap = gaussian_detail_remap(0.1, 1.0)
    direct = _direct_local_laplacian(image, remap, 4)
    fine = local_laplacian(image, remap, n_samples=256, n_levels=4, value_range=(0.0, 1.0))
    coarse = local_laplacian(image, remap, n_samples=32, n_levels=4, value_range=(0.0, 1.0))
    assert np.abs(fine - direct).max() < 2e-3
    assert np.abs(coarse - direct).max() < 1e-2
    # The filter did something: detail changed by much more than the approximation error.
    assert np.abs(direct - image).max() > 0.05


def test_32_samples_stay_within_a_grey_level_of_256():
    """Backs the task's claim: N = 32 interpolated samples instead of the paper's N = 256."""
    image = cv2.resize(load_photo("coffee"), (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    remap = gaussian_detail_remap(0.1, 1.0)
    ref = np.clip(local_laplacian_rgb(image, remap, 256), 0, 1) * 255
    fast = np.clip(local_laplacian_rgb(image, remap, 32), 0, 1) * 255
    assert np.abs(fast - ref).mean() < 0.25
    assert 10 * np.log10(255.0 ** 2 / np.mean((fast - ref) ** 2)) > 45.0


def _step_with_texture(n: int = 128) -> np.ndarray:
    step = np.full((n, n), 0.3, np.float32)
    step[:, n // 2:] = 0.7
    texture = cv2.GaussianBlur(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32), (0, 0), 1.0)
    return step + texture * np.float32(0.01 / texture.std())


def test_detail_boost_without_halos_unlike_unsharp_mask():
    image = _step_with_texture()
    n = image.shape[0]
    llf = local_laplacian(image, gaussian_detail_remap(0.1, 1.0), n_samples=32, value_range=(0.0, 1.0))
    usm = image + 1.0 * (image - cv2.GaussianBlur(image, (0, 0), 2.0))

    def texture_gain(out):
        flat = (slice(None), slice(8, n // 2 - 16))
        high = lambda a: (a - cv2.GaussianBlur(a, (0, 0), 2.0))[flat].std()
        return high(out) / high(image)

    def overshoot(out):
        profile = out.mean(axis=0)
        return max(profile[n // 2:n // 2 + 12].max() - 0.7, 0.3 - profile[n // 2 - 12:n // 2].min())

    # Both double the small-scale texture ...
    assert texture_gain(llf) > 1.7 and texture_gain(usm) > 1.7
    # ... but only the unsharp mask rings at the large step (halo); LLF stays within ~1% of it.
    assert overshoot(usm) > 0.1
    assert overshoot(llf) < 0.02


def test_local_contrast_grows_on_a_photo_and_colour_ratio_keeps_hue():
    image = cv2.resize(load_photo("chelsea"), (96, 96), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    out = np.clip(local_laplacian_rgb(image, gaussian_detail_remap(0.1, 1.0), 16), 0, 1)

    def detail(a):
        g = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
        return np.abs(g - cv2.GaussianBlur(g, (0, 0), 2.0)).mean()

    assert detail(out) > 1.25 * detail(image)
    # Large-scale brightness is kept: the low-pass residual is the input's.
    assert abs(out.mean() - image.mean()) < 0.02
    # Colour ratios: channel proportions are unchanged where the pixel is not clipped.
    ok = (out.max(axis=2) < 0.99) & (image.sum(axis=2) > 0.1) & (out.sum(axis=2) > 0.1)
    ratio_in = image[ok] / image[ok].sum(axis=1, keepdims=True)
    ratio_out = out[ok] / out[ok].sum(axis=1, keepdims=True)
    assert np.abs(ratio_in - ratio_out).max() < 1e-3


def test_remaps_behave_as_documented():
    values = np.linspace(0.0, 1.0, 101, dtype=np.float32)
    g = np.float32(0.5)
    # Aubry's remap: small differences scaled by 1 + fact, large ones untouched.
    aubry = gaussian_detail_remap(0.1, 1.0)(values, g)
    assert aubry[51] - g == pytest.approx(2 * (values[51] - g), rel=1e-2)
    assert aubry[100] == pytest.approx(1.0, abs=1e-4)
    # Paris et al.: alpha < 1 lifts detail, beta < 1 compresses edges, both odd about g.
    paris = paris_remap(0.1, 0.5, 0.5)(values, g)
    assert paris[55] - g > values[55] - g
    assert paris[100] - g < values[100] - g
    np.testing.assert_allclose(paris - g, -(paris[::-1] - g), atol=1e-6)
    # curve_remap with the identity curve is the identity, and the slope-1 tail continues it.
    ident = curve_remap(np.array([0.0, 0.2]), np.array([0.0, 0.2]))(values, g)
    np.testing.assert_allclose(ident, values, atol=1e-4)
    doubled = curve_remap(np.array([0.0, 0.1]), np.array([0.0, 0.2]))(values, g)
    assert doubled[55] - g == pytest.approx(2 * (values[55] - g), abs=1e-4)
    assert doubled[100] - g == pytest.approx(0.2 + (0.5 - 0.1), abs=1e-4)
