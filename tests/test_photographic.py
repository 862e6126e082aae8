"""The photographic style task (Aubry et al. 2014 style transfer on local Laplacian filters)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import taskgen
from taskgen.deadleaves import dead_leaves
from taskgen.ops.colour import luma601, match_quantiles, quantiles
from taskgen.sample import make_sample
from taskgen.sources import DeadLeavesSource, load_photo
from taskgen.tasks.photographic import (GRADIENT_PROBS, MODEL_STYLE, TONE_PROBS, TRANSFER, derive_style,
                                        detail_transfer_curve, gradient_magnitude)


def _photo(name: str, size: int = 96) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(load_photo(name), (size, size), interpolation=cv2.INTER_AREA))


def _run(image, seed=0):
    return taskgen.get_task("photographic").generate(image, np.random.default_rng(seed))


def test_registered_as_stylization_psnr():
    spec = taskgen.get_task("photographic")
    assert spec.category == "stylization" and spec.metric == "psnr"
    assert "Aubry" in spec.description and spec.departs_from_paper


def test_stored_model_style_is_what_derive_style_gives_for_the_camera_photo():
    import skimage.data

    derived = derive_style(skimage.data.camera())
    np.testing.assert_allclose(MODEL_STYLE["tone_quantiles"], derived["tone_quantiles"], atol=1e-5)
    np.testing.assert_allclose(MODEL_STYLE["gradient_quantiles"], derived["gradient_quantiles"], atol=1e-5)
    assert len(MODEL_STYLE["tone_probs"]) == len(MODEL_STYLE["tone_quantiles"])
    assert len(MODEL_STYLE["gradient_probs"]) == len(MODEL_STYLE["gradient_quantiles"])


def test_contract_fixed_style_and_gray_output():
    image = _photo("coffee", 80)
    inp, tgt, params = _run(image, seed=1)
    assert np.array_equal(inp, image)
    assert tgt.dtype == np.uint8 and tgt.shape == image.shape
    assert np.array_equal(tgt[..., 0], tgt[..., 1]) and np.array_equal(tgt[..., 1], tgt[..., 2])
    # One style for every sample: the rng does not change the target.
    assert np.array_equal(_run(image, seed=2)[1], tgt)
    json.dumps(params)
    sample = make_sample(taskgen.get_task("photographic"), "train", 0, seed=0, size=64, source=DeadLeavesSource())
    assert sample.target.dtype == np.uint8


_STYLE_IMAGES = {"chelsea": lambda: _photo("chelsea"), "grace_hopper": lambda: _photo("grace_hopper"),
                 "deadleaves": lambda: dead_leaves(96, np.random.default_rng(0))[0]}


@pytest.mark.parametrize("name", sorted(_STYLE_IMAGES))
def test_output_takes_the_models_tones_and_moves_detail_toward_it(name):
    image = _STYLE_IMAGES[name]()
    tgt = _run(image)[1][..., 0].astype(np.float32) / 255.0
    tone = np.asarray(MODEL_STYLE["tone_quantiles"])
    # Tonal histogram: within a few grey levels of the model's quantiles (ends excluded: they are extremes).
    assert np.abs(quantiles(tgt, TONE_PROBS)[1:-1] - tone[1:-1]).max() < 0.04
    # Detail: the gradient distribution after the LLF rounds is closer to the model's than after
    # histogram matching alone (what the local Laplacian part of the method adds).
    model_g = np.asarray(MODEL_STYLE["gradient_quantiles"])
    upper = GRADIENT_PROBS >= 0.5
    only_tone = match_quantiles(luma601(image.astype(np.float32) / 255.0), TONE_PROBS, tone)

    def distance(x):
        ours = quantiles(gradient_magnitude(x), GRADIENT_PROBS)[upper]
        return np.abs(np.log((ours + 1e-3) / (model_g[upper] + 1e-3))).mean()

    assert distance(tgt) < distance(only_tone)


def test_detail_transfer_curve_is_monotone_starts_at_zero_and_is_gain_limited():
    src = np.array([0.0, 0.0, 0.001, 0.01, 0.02, 0.05, 0.2])
    dst = np.array([0.0, 0.003, 0.004, 0.05, 0.03, 0.2, 0.3])
    deltas, mapped = detail_transfer_curve(src, dst, TRANSFER["min_gradient"], TRANSFER["gain_limits"])
    assert deltas[0] == 0 and mapped[0] == 0
    assert np.all(np.diff(deltas) > 0) and np.all(np.diff(mapped) >= 0)
    gains = mapped[1:] / deltas[1:]
    assert gains.max() <= TRANSFER["gain_limits"][1] + 1e-6
    assert gains.min() >= TRANSFER["gain_limits"][0] - 1e-3
