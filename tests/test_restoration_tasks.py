"""The 12 restoration tasks and their degradation operations (CPU, small images)."""
import json
import pickle
import random

import cv2
import numpy as np
import pytest

import taskgen
from taskgen.deadleaves import dead_leaves
from taskgen.images import to_float
from taskgen.ops import degradations as deg
from taskgen.registry import CANONICAL_ORDER
from taskgen.sources import load_photo
from taskgen.tasks import restoration

RESTORATION = ("gaussian_noise", "poisson_noise", "salt_pepper", "gaussian_blur", "jpeg", "ringing", "rl",
               "inpainting", "rain_simple", "rain_complex", "haze", "mixed")


def photo(name: str = "astronaut", size: int = 96, y: int = 40, x: int = 180) -> np.ndarray:
    return np.ascontiguousarray(load_photo(name)[y:y + size, x:x + size])


def flat(value: int, shape=(96, 96)) -> np.ndarray:
    return np.full((*shape, 3), value, np.uint8)


def run(name: str, image: np.ndarray, seed: int = 0, **aux):
    return taskgen.get_task(name).fn(image, np.random.default_rng(seed), **aux)


def step_edge(size: int = 64, low: int = 64, high: int = 192) -> np.ndarray:
    image = flat(low, (size, size))
    image[:, size // 2:] = high
    return image


def streak_orientation(layer: np.ndarray) -> float:
    """Degrees from vertical (lower end to the right positive) of the dominant line direction."""
    f = layer.astype(np.float64)
    gx = cv2.Sobel(f, cv2.CV_64F, 1, 0)
    gy = cv2.Sobel(f, cv2.CV_64F, 0, 1)
    tensor = np.array([[np.sum(gx * gx), np.sum(gx * gy)], [np.sum(gx * gy), np.sum(gy * gy)]])
    _, vectors = np.linalg.eigh(tensor)
    dx, dy = vectors[:, 0]  # smallest eigenvalue: along the lines
    if dy < 0:
        dx, dy = -dx, -dy
    return float(np.degrees(np.arctan2(dx, dy)))


# --------------------------------------------------------------------------------------------
# The contract, for every task


def test_all_restoration_tasks_registered_with_metadata():
    specs = {s.name: s for s in taskgen.list_tasks("restoration")}
    for name in RESTORATION:
        spec = specs[name]
        assert name in CANONICAL_ORDER
        assert spec.metric == "psnr" and spec.target_domain == "clean image"
        assert len(spec.description) > 30
    assert specs["haze"].needs_depth
    for name in ("poisson_noise", "ringing", "rain_complex", "haze", "mixed"):
        assert specs[name].departs_from_paper, f"{name} departs from the reference and must say so"


@pytest.mark.parametrize("name", RESTORATION)
def test_contract_and_determinism(name):
    image = photo(size=80)
    inp, tgt, params = run(name, image, seed=7)
    assert inp.dtype == np.uint8 and tgt.dtype == np.uint8
    assert inp.shape == tgt.shape == image.shape
    assert np.array_equal(tgt, image), "the target of a restoration task is the clean source"
    assert not np.array_equal(inp, tgt)
    assert json.loads(json.dumps(params)) == params
    again = run(name, image, seed=7)
    assert inp.tobytes() == again[0].tobytes() and again[2] == params


@pytest.mark.parametrize("name", RESTORATION)
def test_task_functions_pickle_for_process_pools(name):
    fn = pickle.loads(pickle.dumps(taskgen.get_task(name).fn))
    image = photo(size=48)
    assert fn(image, np.random.default_rng(0))[0].tobytes() == run(name, image, seed=0)[0].tobytes()


@pytest.mark.parametrize("name", [n for n in RESTORATION if n != "rl"])  # rl draws nothing, as the reference
def test_different_seeds_draw_differently(name):
    image = photo(size=64)
    a, b = run(name, image, seed=1), run(name, image, seed=2)
    assert not np.array_equal(a[0], b[0])
    if name != "salt_pepper":  # fixed rate; only the pixel positions are random
        assert a[2] != b[2]


@pytest.mark.parametrize("name", RESTORATION)
def test_no_global_random_state_and_non_square_images(name):
    np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
    inp, tgt, _ = run(name, photo("coffee", size=72)[:, :60].copy(), seed=3)
    assert inp.shape == (72, 60, 3)
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state


# --------------------------------------------------------------------------------------------
# Each task does what its name says


def test_gaussian_noise_residual_std_matches_sigma():
    for seed in range(3):
        inp, tgt, p = run("gaussian_noise", flat(128, (128, 128)), seed=seed)
        assert 10 <= p["sigma"] <= 50
        residual = inp.astype(np.float64) - tgt
        assert abs(residual.std() - p["sigma"]) < 0.05 * p["sigma"]
        assert abs(residual.mean()) < 1.0
        # independent per channel
        assert abs(np.corrcoef(residual[..., 0].ravel(), residual[..., 1].ravel())[0, 1]) < 0.05


def test_poisson_noise_variance_follows_intensity():
    image = flat(64, (128, 128))
    image[:, 64:] = 192
    for seed in range(3):
        inp, tgt, p = run("poisson_noise", image, seed=seed)
        assert 10 ** 1.5 <= p["peak"] <= 10 ** 2.5
        residual = to_float(inp).astype(np.float64) - to_float(tgt)
        for half, level in ((residual[:, :64], 64 / 255), (residual[:, 64:], 192 / 255)):
            assert half.var() == pytest.approx(level / p["peak"], rel=0.12)


def test_salt_pepper_corrupts_five_percent_of_pixels_half_each():
    inp, tgt, p = run("salt_pepper", flat(128, (128, 128)), seed=0)
    salt = np.all(inp == 255, axis=2)
    pepper = np.all(inp == 0, axis=2)
    changed = np.any(inp != tgt, axis=2)
    assert np.array_equal(changed, salt | pepper), "whole pixels become pure white or black"
    assert changed.mean() == pytest.approx(0.05, abs=0.008)
    assert salt.sum() / changed.sum() == pytest.approx(0.5, abs=0.06)


def test_gaussian_blur_matches_recorded_kernel_and_removes_detail():
    image = photo(size=96)
    inp, tgt, p = run("gaussian_blur", image, seed=4)
    assert 2 <= p["sigma"] <= 4 and p["ksize"] == 15
    expected = cv2.GaussianBlur(image.astype(np.float32), (15, 15), p["sigma"])
    assert np.abs(inp - expected).max() <= 0.51
    detail = lambda im: cv2.Laplacian(im.astype(np.float32), cv2.CV_32F).var()
    assert detail(inp) < 0.2 * detail(tgt)


def test_jpeg_input_is_a_fixed_point_of_its_recorded_quality():
    image = photo(size=128)
    for seed in range(3):
        inp, tgt, p = run("jpeg", image, seed=seed)
        assert 10 <= p["quality"] <= 40
        first_loss = np.abs(inp.astype(np.float64) - tgt).mean()
        recoded = deg.jpeg_compress(inp, p["quality"])
        second_loss = np.abs(recoded.astype(np.float64) - inp).mean()
        assert second_loss < 0.35 * first_loss
        # a different quality is visibly not the one used
        other = deg.jpeg_compress(inp, 95 if p["quality"] < 30 else 10)
        assert np.abs(other.astype(np.float64) - inp).mean() > second_loss


def test_jpeg_colour_order_is_preserved():
    red = flat(0, (64, 64))
    red[..., 0] = 200
    out = deg.jpeg_compress(red, 30)
    assert out[..., 0].mean() > 150 and out[..., 2].mean() < 40


def test_jinc_kernel_is_a_normalised_low_pass():
    kernel = deg.jinc_kernel(1.2, 15, pad_to=21)
    assert kernel.shape == (21, 21) and kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(kernel, kernel.T) and np.array_equal(kernel, kernel[::-1])
    assert kernel.min() < 0, "side lobes (negative values) are what make ringing"
    response = np.abs(np.fft.fft2(kernel, (128, 128)))
    freq = np.fft.fftfreq(128) * 2 * np.pi
    radius = np.hypot(*np.meshgrid(freq, freq))
    assert response[radius < 0.9].min() > 0.75, "pass band (with the truncation's Gibbs ripple)"
    assert response[radius > 1.7].max() < 0.1, "stop band beyond the cutoff"



def test_ringing_overshoots_at_step_edges():
    inp, tgt, _ = run("ringing", step_edge(), seed=5)
    row = inp[32, :, 1].astype(int)
    assert row.max() > 192 + 4 and row.min() < 64 - 4, "oscillation beyond both plateaus"
    assert np.all(inp[:, :5] == 64) and np.all(inp[:, -5:] == 192)  # kernel sums to one: flat regions stay put


def _box_psf(size: int = 5) -> np.ndarray:
    return np.full((size, size), 1.0 / size ** 2, np.float32)


def test_richardson_lucy_is_a_real_deconvolution():
    sharp = to_float(dead_leaves(64, np.random.default_rng(0))[0])
    psf = cv2.getGaussianKernel(9, 1.5) @ cv2.getGaussianKernel(9, 1.5).T
    blurred = deg.convolve_same(sharp, psf)
    # one iteration from the flat start is the blur itself (away from the zero-padded border) ...
    once = deg.richardson_lucy(blurred, psf, 1)
    np.testing.assert_allclose(once[8:-8, 8:-8], deg.convolve_same(blurred, psf)[8:-8, 8:-8], atol=1e-5)
    # ... and more iterations with the true PSF restore detail
    restored = deg.richardson_lucy(blurred, psf, 30)
    inner = np.s_[8:-8, 8:-8]
    assert np.mean((restored[inner] - sharp[inner]) ** 2) < 0.7 * np.mean((blurred[inner] - sharp[inner]) ** 2)


def test_rl_is_the_references_one_iteration_box_blur_with_a_ramp_padded_border():
    image = photo(size=64)
    inp, tgt, params = run("rl", image, seed=0)
    assert params == {"psf": "uniform", "psf_size": 5, "iterations": 1, "pad": 7}
    assert np.array_equal(run("rl", image, seed=1)[0], inp), "nothing is drawn"
    box = cv2.blur(to_float(image), (5, 5))
    assert np.abs(inp[2:-2, 2:-2].astype(np.float32) - box[2:-2, 2:-2] * 255).max() <= 0.5 + 1e-3
    # the border reads the ramp down to 0, so the frame darkens a little, as in the reference
    assert inp[0].astype(int).sum() < box[0].sum() * 255


def test_inpainting_changes_only_the_drawn_lines():
    image = photo(size=96)
    for seed in range(4):
        inp, tgt, p = run("inpainting", image, seed=seed)
        assert 5 <= p["count"] <= 10 and 5 <= p["thickness"] <= 10 and len(p["lines"]) == p["count"]
        mask = deg.line_mask(image.shape[:2], p["lines"], p["thickness"])
        assert np.array_equal(inp[~mask], tgt[~mask])
        assert np.all(inp[mask] == (255 if p["colour"] == "white" else 0))


def test_rain_simple_adds_white_streaks_at_the_recorded_angle():
    for seed in range(3):
        inp, tgt, p = run("rain_simple", flat(0, (128, 128)), seed=seed)
        assert 40 <= p["amount"] <= 200 and 30 <= p["length"] <= 40 and p["blur_ksize"] in (3, 5, 7, 9, 11)
        assert np.all(inp >= tgt), "additive, non-negative"
        assert np.array_equal(inp[..., 0], inp[..., 2]), "achromatic streaks"
        assert inp.max() == 255, "min-max scaled layer"
        assert abs(streak_orientation(inp[..., 0]) - p["angle"]) < 5.0


def test_rain_complex_layers_veil_and_wind():
    for seed in range(3):
        inp, tgt, p = run("rain_complex", flat(30, (128, 128)), seed=seed)
        layers = p["layers"]
        assert 2 <= len(layers) <= 4
        lengths = [layer["length"] for layer in layers]
        assert lengths[-1] > lengths[0], "near streaks are longer than far ones"
        residual = inp.astype(np.float64) - tgt
        assert residual.min() >= 0, "veil and streaks brighten a dark scene"
        assert np.median(residual) >= 2, "the veil lifts even the pixels between streaks"
        assert abs(streak_orientation(residual[..., 1]) - p["wind"]) < 10.0


def test_haze_is_brighter_and_lower_contrast():
    for name in ("astronaut", "coffee", "chelsea"):
        inp, tgt, p = run("haze", photo(name, size=96, y=100, x=100), seed=1)
        assert p["depth_source"] == "proxy" and 0.5 <= p["beta"] <= 2.5 and 0.8 <= p["airlight"] <= 1.0
        assert inp.mean() > tgt.mean() + 5
        assert inp.std() < tgt.std()


def test_haze_uses_given_depth_and_far_is_hazier():
    image, depth = dead_leaves(96, np.random.default_rng(2))
    spec = taskgen.get_task("haze")
    inp, tgt, p = spec.generate(image, np.random.default_rng(0), depth=depth)
    assert p["depth_source"] == "given"
    t = np.exp(-p["beta"] * depth)[..., None]
    expected = to_float(image) * t + p["airlight"] * (1 - t)
    assert np.abs(to_float(inp) - expected).max() <= 0.5 / 255 + 1e-6
    change = np.abs(inp.astype(np.float64) - tgt).mean(axis=2)
    assert change[depth > 0.7].mean() > change[depth < 0.3].mean()
    proxy_input = spec.generate(image, np.random.default_rng(0))[0]
    assert not np.array_equal(proxy_input, inp)


def test_mixed_chain_follows_slot_order_and_reuses_single_recipes():
    slot_of = {name: i for i, slot in enumerate(restoration.MIXED_SLOTS) for name in slot if name}
    for seed in range(12):
        inp, tgt, p = run("mixed", photo(size=64), seed=seed)
        chain = p["chain"]
        assert chain and [s["degradation"] for s in p["stages"]] == chain
        positions = [slot_of[name] for name in chain]
        assert positions == sorted(set(positions)), "at most one per slot, in the fixed order"
        for stage in p["stages"]:
            single = restoration.RECIPES[stage["degradation"]].draw(np.random.default_rng(0), (64, 64))
            assert set(stage) - {"degradation"} == set(single)


def test_mixed_chain_is_the_reference_mix1r_order():
    # GenLV's loader (conference_version/dataset/genlv_dataloader.py, Mix1R): low light, blur family,
    # noise family, inpainting or rain, then JPEG, so the lines and streaks are compressed too
    firsts = [next(name for name in slot if name) for slot in restoration.MIXED_SLOTS]
    assert firsts == ["darken", "gaussian_blur", "gaussian_noise", "inpainting", "jpeg"]
    # a sample whose chain has both: the mixed task draws its chain first, as draw_chain does here
    seed = next(s for s in range(200)
                if {"jpeg", "rain_simple"} <= set(restoration.draw_chain(np.random.default_rng(s))[0]))
    assert run("mixed", photo(size=64), seed=seed)[2]["chain"][-2:] == ["rain_simple", "jpeg"]


def test_mixed_slot_frequencies_match_the_reference_chain():
    rng = np.random.default_rng(0)
    n = 4000
    counts: dict[str, int] = {}
    for _ in range(n):
        for name in restoration.draw_chain(rng)[0]:
            counts[name] = counts.get(name, 0) + 1
    p_empty = (4 / 5) * (2 / 5) * (2 / 5) * (4 / 5) * (3 / 5)
    expected = (1 / 5) / (1 - p_empty)  # each option has weight 1/5 in its slot; empty chains redrawn
    for slot in restoration.MIXED_SLOTS:
        for name in filter(None, slot):
            assert counts[name] / n == pytest.approx(expected, abs=0.03), name


def test_low_light_slot_darkens():
    image = photo(size=64)
    out = deg.darken(image, 0.35, 1.2)
    assert out.mean() < 0.4 * image.mean()
    assert np.all(out <= image)
