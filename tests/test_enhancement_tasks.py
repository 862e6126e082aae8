"""The eight enhancement tasks: contract (registration, dtypes, determinism, params) and properties."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import taskgen
from taskgen.deadleaves import dead_leaves
from taskgen.ops import colour, hdr
from taskgen.sample import make_sample
from taskgen.sources import DeadLeavesSource, PhotoSource, load_photo
from taskgen.tasks import enhancement

NAMES = ["low_light", "retouch", "local_laplacian", "tone_multiscale", "underwater_contrast",
         "underwater_color", "sdr_to_hdr", "hdr_to_sdr"]
RANDOM_TASKS = ["low_light", "retouch", "underwater_contrast", "underwater_color", "sdr_to_hdr", "hdr_to_sdr"]


def _photo(name: str = "astronaut", shape=(64, 64)) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(load_photo(name), (shape[1], shape[0]), interpolation=cv2.INTER_AREA))


def _run(name, image, seed=0, depth=None):
    return taskgen.get_task(name).generate(image, np.random.default_rng(seed), depth=depth)


def test_all_eight_are_registered_with_their_metadata():
    specs = {s.name: s for s in taskgen.list_tasks("enhancement")}
    for name in NAMES:
        spec = specs[name]
        assert spec.category == "enhancement" and spec.metric == "psnr"
        assert spec.description and spec.departs_from_paper
    assert specs["sdr_to_hdr"].hdr == "target" and specs["hdr_to_sdr"].hdr == "input"
    assert {n for n in NAMES if specs[n].needs_depth} == {"underwater_contrast", "underwater_color"}


@pytest.mark.parametrize("name", NAMES)
def test_contract_dtypes_shapes_determinism_and_params(name):
    spec = taskgen.get_task(name)
    image = _photo("coffee", (72, 96))   # non-square on purpose
    inp, tgt, params = _run(name, image, seed=5)
    again = _run(name, image, seed=5)
    for side, arr in (("input", inp), ("target", tgt)):
        assert arr.shape == image.shape
        assert arr.dtype == (np.uint16 if spec.hdr == side else np.uint8)
    assert inp.tobytes() == again[0].tobytes() and tgt.tobytes() == again[1].tobytes()
    assert json.dumps(params, sort_keys=True) == json.dumps(again[2], sort_keys=True)
    if name in RANDOM_TASKS:
        other = _run(name, image, seed=6)
        assert other[0].tobytes() != inp.tobytes() or other[1].tobytes() != tgt.tobytes()
        assert json.dumps(other[2], sort_keys=True) != json.dumps(params, sort_keys=True)
    # The source image is not modified in place.
    assert np.array_equal(image, _photo("coffee", (72, 96)))


@pytest.mark.parametrize("name", NAMES)
def test_make_sample_on_dead_leaves_passes_the_contract_checks(name):
    sample = make_sample(taskgen.get_task(name), "train", 3, seed=1, size=64, source=DeadLeavesSource())
    json.dumps(sample.params)


def test_low_light_is_darker_and_noisy():
    image = _photo("chelsea")
    inputs = []
    for seed in range(3):
        inp, tgt, params = _run("low_light", image, seed)
        assert np.array_equal(tgt, image)
        assert inp.mean() < 0.5 * tgt.mean()
        assert 0.3 <= params["scale"] <= 0.4
        inputs.append(inp.astype(np.float64))
    # Noise: the dark input is not a smooth function of the image (high-pass energy beyond the clean one's).
    dark = inputs[0]
    residual = dark - cv2.GaussianBlur(dark, (0, 0), 1.0)
    clean_dark = (image.astype(np.float64) / 255 * 0.35) ** 1.5 * 255
    clean_residual = clean_dark - cv2.GaussianBlur(clean_dark, (0, 0), 1.0)
    assert residual.std() > 1.2 * clean_residual.std()


def test_retouch_target_is_one_fixed_look():
    image = _photo("coffee")
    in_a, tgt_a, params_a = _run("retouch", image, seed=1)
    in_b, tgt_b, params_b = _run("retouch", image, seed=2)
    assert not np.array_equal(in_a, in_b)
    assert np.array_equal(tgt_a, tgt_b)
    assert params_a["expert_look"] == params_b["expert_look"] == enhancement.EXPERT_LOOK
    for key, (lo, hi) in enhancement.RETOUCH_DRIFT.items():
        assert lo <= params_a[key] <= hi
    # The look is not the identity: warmer and more saturated than the clean image.
    t = tgt_a.astype(np.float64)
    c = image.astype(np.float64)
    assert (t[..., 0] - t[..., 2]).mean() > (c[..., 0] - c[..., 2]).mean()


def _detail(image: np.ndarray) -> float:
    """Median absolute high-pass: texture-dominated (strong edges are few and deliberately left alone)."""
    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(np.median(np.abs(g - cv2.GaussianBlur(g, (0, 0), 2.0))))


@pytest.mark.parametrize("name", ["local_laplacian", "tone_multiscale"])
def test_detail_tasks_increase_local_contrast_and_keep_large_scale_tone(name):
    image = _photo("coffee", (96, 96))
    inp, tgt, params = _run(name, image)
    assert np.array_equal(inp, image)
    assert _detail(tgt) > 1.3 * _detail(inp)
    low_in = cv2.GaussianBlur(inp.astype(np.float64), (0, 0), 8.0)
    low_tgt = cv2.GaussianBlur(tgt.astype(np.float64), (0, 0), 8.0)
    assert np.abs(low_in - low_tgt).mean() < 6.0
    # Fixed parameters: the rng does not matter.
    assert np.array_equal(_run(name, image, seed=9)[1], tgt)


@pytest.mark.parametrize("name", ["underwater_contrast", "underwater_color"])
@pytest.mark.parametrize("with_depth", [True, False])
def test_underwater_input_loses_red_most(name, with_depth):
    image, depth = dead_leaves(64, np.random.default_rng(4))
    if not with_depth:
        image, depth = _photo("coffee"), None
    inp, tgt, params = _run(name, image, seed=3, depth=depth)
    clean = colour.srgb_to_linear(image.astype(np.float32) / 255).mean(axis=(0, 1))
    under = colour.srgb_to_linear(inp.astype(np.float32) / 255).mean(axis=(0, 1))
    kept = under / clean
    assert kept[0] < kept[1] and kept[0] < kept[2]
    assert params["depth"] == ("given" if with_depth else "proxy")
    assert params["beta"][0] == max(params["beta"])


def test_clahe_lightness_equalises_lightness_and_keeps_the_colour_cast():
    import cv2

    image, depth = dead_leaves(128, np.random.default_rng(3))
    underwater = _run("underwater_contrast", image, seed=5, depth=depth)[0]
    out = colour.clahe_lightness(underwater)
    lab_in, lab_out = (cv2.cvtColor(x, cv2.COLOR_RGB2LAB).astype(np.float32) for x in (underwater, out))
    assert lab_out[:, :, 0].std() > lab_in[:, :, 0].std() + 1  # contrast spread (48.3 -> 51.0 here)
    # a and b are kept up to the 8-bit round trip through RGB; per-channel CLAHE would move them
    assert np.abs(lab_out[:, :, 1:].mean((0, 1)) - lab_in[:, :, 1:].mean((0, 1))).max() < 2.0


def test_underwater_targets_are_clahe_of_input_and_clean_colours():
    image, depth = dead_leaves(64, np.random.default_rng(8))
    inp_c, tgt_c, _ = _run("underwater_contrast", image, seed=2, depth=depth)
    inp_k, tgt_k, _ = _run("underwater_color", image, seed=2, depth=depth)
    assert np.array_equal(inp_c, inp_k)          # same seed -> same underwater rendition
    assert np.array_equal(tgt_c, colour.clahe_lightness(inp_c, **enhancement.CLAHE_PARAMS))
    assert np.array_equal(tgt_k, image)
    # Depth matters: the same seed with a different depth map renders differently.
    other = _run("underwater_color", image, seed=2, depth=np.flipud(depth).copy())[0]
    assert not np.array_equal(other, inp_k)


def test_sdr_hdr_tasks_are_the_two_directions_of_one_pair():
    image, _ = dead_leaves(64, np.random.default_rng(2))
    sdr_in, hdr_tgt, p1 = _run("sdr_to_hdr", image, seed=4)
    hdr_in, sdr_tgt, p2 = _run("hdr_to_sdr", image, seed=4)
    assert np.array_equal(sdr_in, sdr_tgt) and np.array_equal(hdr_tgt, hdr_in)
    assert p1 == p2
    assert p1["hdr_encoding"] == hdr.HDR_ENCODING == enhancement.HDR_ENCODING
    assert hdr_tgt.dtype == np.uint16 and sdr_in.dtype == np.uint8


@pytest.mark.parametrize("source", ["photo", "deadleaves"])
def test_sdr_and_hdr_renditions_agree_on_midtones_and_hdr_has_range(source):
    if source == "photo":
        image = _photo("astronaut", (96, 96))
    else:
        image = dead_leaves(96, np.random.default_rng(1))[0]
    found_bright = False
    for seed in range(4):
        sdr_img, hdr_img, params = _run("sdr_to_hdr", image, seed=seed)
        sdr_lin = hdr.decode_sdr(sdr_img / 255.0)
        hdr_lin = hdr.decode_hdr_pq(hdr_img / 65535.0)
        code = sdr_img / 255.0
        mid = np.all((code > 0.25) & (code < 0.85), axis=2)   # below the shoulder's knee
        assert mid.mean() > 0.2
        rel = np.abs(sdr_lin[mid] - hdr_lin[mid]) / np.maximum(hdr_lin[mid], 1e-3)
        assert np.median(rel) < 0.01 and np.percentile(rel, 99) < 0.05
        assert hdr.pq_decode(hdr_img / 65535.0).max() <= hdr.HDR_MASTERING_PEAK_NITS * 1.001
        peak = hdr_lin.max()
        found_bright |= bool(peak > 2.0 and sdr_img.max() == 255)
    assert found_bright   # real dynamic range: highlights well above SDR white, clipped in SDR


def test_tasks_run_on_the_packaged_test_photos():
    source = PhotoSource()
    for name in ("underwater_color", "hdr_to_sdr", "low_light"):
        sample = make_sample(taskgen.get_task(name), "test", 2, seed=0, size=64, source=source)
        assert sample.input.shape == (64, 64, 3)
