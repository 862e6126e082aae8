"""bench.metrics: PSNR/SSIM/MAE against scikit-image on random and real images, and the conventions."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench import metrics as M
from taskgen.sources import load_photo


def sk_ssim(a, b, peak):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=peak, channel_axis=-1)


def noisy(image, sigma, rng):
    peak = M.peak_value(image.dtype)
    out = image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.rint(out), 0, peak).astype(image.dtype)


@pytest.fixture(scope="module")
def photo_pair():
    rng = np.random.default_rng(1)
    clean = load_photo("astronaut")[100:196, 150:278]  # 96x128, not square on purpose
    return noisy(clean, 12.0, rng), clean


def test_psnr_matches_skimage_on_real_and_random_images(photo_pair):
    pred, target = photo_pair
    assert M.psnr(pred, target) == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=255), abs=1e-10)
    rng = np.random.default_rng(2)
    a = rng.integers(0, 65536, (3, 40, 56, 3), dtype=np.uint16)
    b = rng.integers(0, 65536, (3, 40, 56, 3), dtype=np.uint16)
    expected = [peak_signal_noise_ratio(b[i], a[i], data_range=65535) for i in range(3)]
    np.testing.assert_allclose(M.psnr(a, b), expected, rtol=0, atol=1e-10)


def test_ssim_matches_skimage_on_real_photo(photo_pair):
    pred, target = photo_pair
    assert M.ssim(pred, target) == pytest.approx(sk_ssim(pred, target, 255), abs=1e-10)
    assert 0.3 < M.ssim(pred, target) < 0.99  # a real, non-trivial comparison
    wide = load_photo("coffee")[:75]  # 75x600: processed in several strips
    mirrored = np.ascontiguousarray(wide[:, ::-1])
    assert M.ssim(mirrored, wide) == pytest.approx(sk_ssim(mirrored, wide, 255), abs=1e-10)


@pytest.mark.parametrize("strip_bytes", [M._STRIP_BYTES, 1])  # 1: eight-row strips, partial last strip
def test_ssim_matches_skimage_on_random_batches_uint8_and_uint16(monkeypatch, strip_bytes):
    monkeypatch.setattr(M, "_STRIP_BYTES", strip_bytes)
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (4, 33, 47, 3), dtype=np.uint8)
    other = noisy(base, 30.0, rng)
    expected = [sk_ssim(other[i], base[i], 255) for i in range(4)]
    np.testing.assert_allclose(M.ssim(other, base), expected, rtol=0, atol=1e-10)

    hdr = rng.integers(0, 65536, (2, 32, 32, 3), dtype=np.uint16)
    hdr_noisy = noisy(hdr, 4000.0, rng)
    expected = [sk_ssim(hdr_noisy[i], hdr[i], 65535) for i in range(2)]
    np.testing.assert_allclose(M.ssim(hdr_noisy, hdr), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype, peak, sigma", [(np.uint8, 255, 30.0), (np.uint16, 65535, 4000.0)])
def test_ssim_of_one_channel_images_matches_skimage(dtype, peak, sigma):
    # OpenCV returns an (H, W) difference for an (H, W, 1) pair; SSIM must not trip over it
    rng = np.random.default_rng(5)
    base = rng.integers(0, peak + 1, (2, 20, 17, 1)).astype(dtype)
    other = noisy(base, sigma, rng)
    np.testing.assert_allclose(M.ssim(other, base), [sk_ssim(other[i], base[i], peak) for i in range(2)],
                               rtol=0, atol=1e-10)


def test_batched_values_equal_single_image_values(photo_pair):
    pred, target = photo_pair
    rng = np.random.default_rng(4)
    batch_pred = np.stack([pred, noisy(target, 3.0, rng), target])
    batch_target = np.stack([target, target, target])
    for fn in (M.psnr, M.ssim, M.mae):
        batched = fn(batch_pred, batch_target)
        assert batched.shape == (3,)
        singles = [float(fn(p, t)) for p, t in zip(batch_pred, batch_target)]
        np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-12)


def test_mae_is_mean_absolute_difference_on_unit_range():
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 51, np.uint8)
    b[:8] = 0  # half the pixels differ by 51/255 = 0.2
    assert M.mae(a, b) == pytest.approx(0.1, abs=1e-12)
    assert M.mae(b, b) == 0.0
    wide = np.full((16, 16, 3), 65535, np.uint16)
    assert M.mae(np.zeros_like(wide), wide) == pytest.approx(1.0)


def test_identical_images_give_capped_psnr_and_ssim_one(photo_pair):
    _, target = photo_pair
    assert M.psnr(target, target) == M.PSNR_CAP_DB
    assert M.ssim(target, target) == pytest.approx(1.0, abs=1e-12)


def test_quantize_clamps_and_rounds_like_a_saved_image():
    values = np.array([-0.3, 0.0, 0.5 / 255, 1.5 / 255, 0.2, 1.0, 1.4])
    np.testing.assert_array_equal(M.quantize(values, np.uint8), [0, 0, 0, 2, 51, 255, 255])  # half to even
    assert M.quantize(np.array([0.5]), np.uint16)[0] == 32768
    assert M.quantize(np.array([0.5]), np.uint16).dtype == np.uint16


def test_bad_inputs_are_refused():
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(M.MetricInputError, match="shape"):
        M.psnr(a, np.zeros((16, 17, 3), np.uint8))
    with pytest.raises(M.MetricInputError, match="dtype"):
        M.psnr(a, a.astype(np.uint16))
    with pytest.raises(M.MetricInputError, match="uint8 or uint16"):
        M.mae(a.astype(np.float32), a.astype(np.float32))
    with pytest.raises(M.MetricInputError, match="at least 11x11"):
        M.ssim(np.zeros((8, 30, 3), np.uint8), np.zeros((8, 30, 3), np.uint8))


def test_conventions_name_dtype_and_rules():
    psnr8 = M.get_metric("psnr").describe(np.uint8)
    assert "uint8" in psnr8 and "peak 255" in psnr8 and "no border crop" in psnr8 and "clamped" in psnr8
    assert "uint16" in M.get_metric("psnr").describe(np.uint16) and "65535" in M.get_metric("psnr").describe(np.uint16)
    assert "11x11 sigma 1.5" in M.get_metric("ssim").describe(np.uint8)
    assert not M.get_metric("mae").higher_is_better and M.get_metric("psnr").higher_is_better
    assert M.METRICS_BY_HEADLINE["mae"][0] == "mae" and M.METRICS_BY_HEADLINE["psnr"] == ("psnr", "ssim")
    with pytest.raises(KeyError, match="known"):
        M.get_metric("lpips")


def test_ssim_of_a_batch_is_the_same_on_worker_threads_and_sequentially():
    import cv2

    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (6, 40, 52, 3), dtype=np.uint8)
    other = noisy(base, 20.0, rng)
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)  # the metrics then run sequentially
        sequential = M.ssim(other, base)
        cv2.setNumThreads(4)
        threaded = M.ssim(other, base)
    finally:
        cv2.setNumThreads(before)
    np.testing.assert_array_equal(threaded, sequential)
    np.testing.assert_allclose(sequential, [sk_ssim(other[i], base[i], 255) for i in range(6)], rtol=0, atol=1e-10)


def test_mse_and_mae_equal_integer_sums():
    rng = np.random.default_rng(6)
    for peak, dtype in ((255, np.uint8), (65535, np.uint16)):
        a = rng.integers(0, peak + 1, (2, 9, 11, 3), dtype=dtype)
        b = rng.integers(0, peak + 1, (2, 9, 11, 3), dtype=dtype)
        diff = a.astype(np.int64) - b
        exact_mse = (diff ** 2).reshape(2, -1).sum(1) / diff[0].size
        exact_mae = np.abs(diff).reshape(2, -1).sum(1) / (diff[0].size * float(peak))
        np.testing.assert_allclose(M.mse(a, b), exact_mse, rtol=1e-15, atol=0)  # OpenCV sums in float64
        np.testing.assert_allclose(M.mae(a, b), exact_mae, rtol=1e-15, atol=0)
        assert M.mse(a[0][:, ::-1], b[0][:, ::-1]) == pytest.approx(M.mse(a[0], b[0]), rel=1e-15)  # strided views
