"""HDR and colour operations: PQ, primaries, SDR shoulder, highlight expansion, curves, quantile matching."""
from __future__ import annotations

import numpy as np
import pytest

from taskgen.ops import colour, hdr


def test_pq_round_trips_and_hits_reference_code_values():
    nits = np.concatenate([[0.0], np.geomspace(1e-3, 10000.0, 500)])
    np.testing.assert_allclose(hdr.pq_decode(hdr.pq_encode(nits)), nits, rtol=1e-9, atol=1e-9)
    # Published ST 2084 code values: 100 nits ~ 0.508, 1000 nits ~ 0.752, 10000 nits = 1.
    assert hdr.pq_encode(100.0) == pytest.approx(0.5081, abs=2e-4)
    assert hdr.pq_encode(1000.0) == pytest.approx(0.7518, abs=2e-4)
    assert hdr.pq_encode(10000.0) == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(hdr.pq_encode(nits)) > 0)


def test_primaries_conversion_keeps_white_and_round_trips():
    white = np.ones((1, 1, 3))
    np.testing.assert_allclose(hdr.convert_primaries(white, hdr.BT709_TO_BT2020), white, atol=1e-3)
    rgb = np.random.default_rng(0).random((4, 5, 3))
    back = hdr.convert_primaries(hdr.convert_primaries(rgb, hdr.BT709_TO_BT2020), hdr.BT2020_TO_BT709)
    np.testing.assert_allclose(back, rgb, atol=1e-12)
    # Pure BT.709 red is inside BT.2020: all components non-negative, red dominant.
    red = hdr.convert_primaries(np.array([[[1.0, 0.0, 0.0]]]), hdr.BT709_TO_BT2020)[0, 0]
    assert red.min() >= 0 and red.argmax() == 0


def test_shoulder_is_identity_below_knee_c1_and_clips_at_white():
    x = np.linspace(0.0, 2.0, 2001)
    y = hdr.tone_map_shoulder(x, knee=0.8)
    below = x <= 0.8
    np.testing.assert_allclose(y[below], x[below])
    assert np.all(np.diff(y) >= -1e-12)
    assert np.all(y[x >= 1.2] == 1.0) and y[x < 1.19].max() < 1.0
    slopes = np.diff(y) / np.diff(x)
    assert abs(slopes[799] - slopes[801]) < 0.01   # no kink at the knee


def test_hdr_and_sdr_renditions_decode_to_the_same_midtones():
    scene = np.random.default_rng(1).uniform(0.02, 0.75, (16, 16, 3))
    sdr_lin = hdr.decode_sdr(hdr.render_sdr(scene))
    hdr_lin = hdr.decode_hdr_pq(hdr.render_hdr_pq(scene))
    np.testing.assert_allclose(sdr_lin, scene, rtol=1e-9)
    np.testing.assert_allclose(hdr_lin, scene, rtol=1e-6, atol=1e-9)


def test_highlight_expansion_only_touches_near_white():
    linear = np.stack([np.linspace(0, 1, 101)] * 3, axis=1)[None]
    expanded = hdr.expand_highlights(linear, gain=4.0, threshold=0.75)
    np.testing.assert_allclose(expanded[0, :70], linear[0, :70])
    assert expanded[0, -1, 0] == pytest.approx(4.0)
    assert np.all(np.diff(expanded[0, :, 0]) > 0)


def test_srgb_transfer_round_trips():
    x = np.linspace(0, 1, 256, dtype=np.float32)
    np.testing.assert_allclose(colour.linear_to_srgb(colour.srgb_to_linear(x)), x, atol=1e-5)


def test_match_quantiles_moves_a_distribution_onto_the_target():
    values = np.random.default_rng(2).beta(2, 5, 10000)
    probs = np.linspace(0, 1, 33)
    target = np.linspace(0.1, 0.9, 33) ** 2
    matched = colour.match_quantiles(values, probs, target)
    np.testing.assert_allclose(colour.quantiles(matched, probs), target, atol=0.01)
    # Monotone: the order of pixel values is kept.
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(matched[order]) >= -1e-6)


def test_match_quantiles_gives_tied_values_their_middle_rank():
    probs = np.linspace(0, 1, 33)
    target = np.linspace(0.0, 1.0, 33) ** 2
    # a flat image takes the target's median, not its darkest level
    np.testing.assert_allclose(colour.match_quantiles(np.full((8, 8), 0.4), probs, target), 0.25, atol=1e-6)
    # a clipped half: the value 1 holds the knots from 17/32 up, and takes the middle of their ranks
    values = np.concatenate([np.linspace(0.0, 0.5, 500, endpoint=False), np.ones(500)])
    assert np.flatnonzero(colour.quantiles(values, probs) == 1.0)[0] == 17
    matched = colour.match_quantiles(values, probs, target)
    np.testing.assert_allclose(matched[500:], np.interp((17 / 32 + 1) / 2, probs, target), atol=1e-6)
    assert matched[:500].max() < matched[500]


def test_underwater_formation_attenuates_red_most_and_tends_to_veiling_light():
    scene = np.full((4, 4, 3), 0.5, np.float32)
    beta = np.array([0.5, 0.1, 0.08])
    veil = np.array([0.02, 0.3, 0.4])
    near = colour.underwater_formation(scene, np.full((4, 4), 1.0, np.float32), beta, veil)
    far = colour.underwater_formation(scene, np.full((4, 4), 200.0, np.float32), beta, veil)
    direct = scene * np.exp(-beta)
    assert near[0, 0, 0] < near[0, 0, 1] and near[0, 0, 0] < near[0, 0, 2]
    np.testing.assert_allclose(near[0, 0], direct[0, 0] + veil * (1 - np.exp(-beta)), rtol=1e-5)
    np.testing.assert_allclose(far[0, 0], veil, atol=1e-5)


def test_s_curve_adds_midtone_contrast_and_keeps_endpoints():
    x = np.linspace(0, 1, 101, dtype=np.float32)
    y = colour.s_curve(x, 3.0)
    assert y[0] == pytest.approx(0.0, abs=1e-6) and y[-1] == pytest.approx(1.0, abs=1e-6)
    assert (y[55] - y[45]) > (x[55] - x[45]) * 1.1
    assert np.all(np.diff(y) > 0)
