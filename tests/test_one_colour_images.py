"""scripts/one_colour_images.py: one-colour training images for a folder: source."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("one_colour_images")


def test_one_colour_keeps_the_luminance_pattern_in_a_single_colour(script):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    colour = np.array([30.0, 50.0, 90.0])
    out = script.one_colour(image, colour, contrast=1.0).astype(float)
    ratio = out / colour  # every pixel a multiple of one colour: the same ratio in all three channels
    assert np.abs(ratio - ratio.mean(2, keepdims=True)).max() < 0.02
    lum = image.astype(float).mean(2)
    assert np.corrcoef(ratio[..., 0].ravel(), lum.ravel())[0, 1] > 0.99
    flat = script.one_colour(image, colour, contrast=0.0)
    assert np.array_equal(flat, np.broadcast_to(colour.round().astype(np.uint8), flat.shape))


def test_random_colour_spans_levels_and_saturations(script):
    rng = np.random.default_rng(1)
    colours = np.array([script.random_colour(rng) for _ in range(400)])
    means = colours.mean(1)
    assert means.min() >= 15 - 1e-9 and means.max() <= 200 + 1e-9
    saturation = 1 - colours.min(1) / colours.max(1)
    assert saturation.min() < 0.05 and 0.7 < saturation.max() <= 0.8 + 1e-9


def test_cli_writes_the_same_pixels_twice_and_names_a_bad_spec(script, tmp_path, capsys):
    from taskgen.imageio import read_image

    for run in ("a", "b"):
        assert script.main([str(tmp_path / run), "--count", "3", "--size", "32", "--seed", "5"]) == 0
    for i in range(3):
        first, second = (read_image(tmp_path / run / f"{i:05d}.png") for run in ("a", "b"))
        assert first.shape == (32, 32, 3) and np.array_equal(first, second)
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "c"), "--spec", "deadleaves:tint=7"])
    assert "--spec deadleaves:tint=7" in capsys.readouterr().err
