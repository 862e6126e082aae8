"""Painter: official state-dict layout, the official numerical fixture, and the canvas adapter.

The fixture (shared/reference/fixtures/painter-tiny-official.npz) was made with the authors'
``Painter`` class (embed 32, depth 24, 2 heads, decoder 16, 896×448 canvas, every block global
attention as the official factory builds it) and noisy weights; its inputs are raw canvases
(uint8 / 255, no ImageNet normalisation) and a mask over the bottom half.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bench
import model
from bench.official import PainterGeneralist, imagenet_normalize
from bench.protocol import check_output
from model import checkpoints
from model.painter import decomposed_rel_bias, painter_loss

from reference_data import REFERENCE, TOLERANCE, load_fixture  # noqa: E402
MANIFEST = REFERENCE / "checkpoints" / "painter-vit-large.json"
FIXTURE = REFERENCE / "fixtures" / "painter-tiny-official.npz"

needs_fixture = pytest.mark.skipif(not FIXTURE.exists(), reason=f"fixture {FIXTURE} not available")


@pytest.fixture(scope="module")
def fixture():
    meta, params, inputs, outputs = load_fixture(FIXTURE)
    imgs = inputs["canvas_uint8"].float() / 255
    tgts = inputs["target_canvas_uint8"].float() / 255
    return meta, params, (imgs, tgts, inputs["bool_masked_pos"]), outputs["pred_image"], float(outputs["loss"][0])


@pytest.fixture(scope="module")
def fixture_net(fixture):
    return checkpoints.load_weights(model.build("painter-fixture"), fixture[1]).eval()


# ----------------------------------------------------------------------------- official layout

@pytest.mark.skipif(not MANIFEST.exists(), reason="reference manifest not available")
def test_official_size_equals_the_manifest_keys_order_and_shapes():
    with torch.device("meta"):
        net = model.build("painter")
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == checkpoints.read_manifest(MANIFEST)
    assert sum(math.prod(s) for _, s in ours) == 370_721_155
    # Global attention in every block: tables for the whole 56×28 grid, not 14×14 windows.
    assert dict(ours)["blocks.7.attn.rel_pos_h"] == (111, 64) and dict(ours)["blocks.7.attn.rel_pos_w"] == (55, 64)


def test_rel_bias_equals_the_direct_definition():
    """bias[(i,j),(k,l)] = q·Rh[i−k] + q·Rw[j−l] on a small grid, computed the slow way."""
    gen = torch.Generator().manual_seed(0)
    h, w, c = 4, 3, 5
    q = torch.randn(1, 2, h * w, c, generator=gen)
    rel_h, rel_w = torch.randn(2 * h - 1, c, generator=gen), torch.randn(2 * w - 1, c, generator=gen)
    bias = decomposed_rel_bias(q, rel_h, rel_w, (h, w))
    for head in range(2):
        for i, j, k, l in [(0, 0, 3, 2), (2, 1, 1, 0), (3, 2, 0, 0), (1, 1, 1, 1)]:
            qv = q[0, head, i * w + j]
            expected = qv @ rel_h[i - k + h - 1] + qv @ rel_w[j - l + w - 1]
            assert torch.allclose(bias[0, head, i * w + j, k * w + l], expected, atol=1e-5)


def test_canvas_size_is_fixed():
    net = model.build("painter-s")
    with pytest.raises(ValueError, match="canvases"):
        net(torch.rand(1, 3, 256, 128), torch.rand(1, 3, 256, 128))


# ----------------------------------------------------------------------------- official function

@needs_fixture
def test_fixture_config_is_the_registered_one(fixture):
    meta, params, _, _, _ = fixture
    config = model.build("painter-fixture").config.as_dict()
    for key in ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "pretrain_img_size", "decoder_embed_dim"):
        assert config[key] == meta["constructor_kwargs"][key], key
    assert list(config["img_size"]) == meta["constructor_kwargs"]["img_size"]
    assert list(model.build("painter-fixture").state_dict()) == list(params)


@needs_fixture
def test_reproduces_the_official_prediction_and_loss(fixture, fixture_net):
    _, _, (imgs, tgts, mask), expected, expected_loss = fixture
    assert mask[0, 784:].all() and not mask[0, :784].any()  # the inference mask: bottom half
    with torch.no_grad():
        pred = fixture_net(imgs, tgts, mask)
    error = (pred - expected).abs().max().item()
    assert error < TOLERANCE, f"max abs difference {error:.2e} to the official output"
    assert expected.std() > 0.1
    loss = painter_loss(pred, tgts, mask, torch.ones_like(imgs)).item()
    assert abs(loss - expected_loss) < 1e-4 * max(1.0, abs(expected_loss))
    # The default mask is the official inference mask.
    assert torch.equal(fixture_net.query_mask(1), mask)


@needs_fixture
def test_perturbed_rel_pos_table_breaks_the_match(fixture):
    _, params, (imgs, tgts, mask), expected, _ = fixture
    params = dict(params)
    key = "blocks.0.attn.rel_pos_h"
    params[key] = params[key] + 0.5 * torch.randn(params[key].shape, generator=torch.Generator().manual_seed(0))
    net = checkpoints.load_weights(model.build("painter-fixture"), params).eval()
    with torch.no_grad():
        assert (net(imgs, tgts, mask) - expected).abs().max() > 10 * TOLERANCE


# ----------------------------------------------------------------------------- adapter

class _Spy(torch.nn.Module):
    """Records what the adapter gives the network."""

    def __init__(self, net):
        super().__init__()
        self.net, self.config, self.calls = net, net.config, []

    def query_mask(self, *args, **kwargs):
        return self.net.query_mask(*args, **kwargs)

    def forward(self, imgs, tgts, mask):
        out = self.net(imgs, tgts, mask)
        self.calls.append((imgs, tgts, mask, out))
        return out


def pil_bicubic_448(images):
    """The official loader, one image at a time: 8-bit RGB, ``Image.resize((448, 448))`` (bicubic), / 255."""
    from PIL import Image

    pixels = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return torch.stack([torch.from_numpy(np.asarray(Image.fromarray(p).resize((448, 448), Image.BICUBIC)).copy())
                        for p in pixels]).permute(0, 3, 1, 2).float() / 255


def test_the_canvas_images_are_resized_by_pillow_not_by_a_float_resize():
    from bench.official import pil_resize, resize_quantized

    # a 2-pixel checkerboard upsampled 4×: Pillow rounds and clips to 8 bits between its two passes
    board = (torch.arange(64).view(8, 8) // 2 % 2 + torch.arange(64).view(8, 8).T // 2 % 2) % 2
    image = board.float().expand(1, 3, 8, 8) * 0.8 + 0.1
    ours, float_resize = pil_resize(image, (32, 32)), resize_quantized(image, (32, 32), "bicubic")
    pixels = (image[0].permute(1, 2, 0) * 255).round().byte().numpy()
    from PIL import Image

    pillow = np.asarray(Image.fromarray(pixels).resize((32, 32), Image.BICUBIC))
    assert torch.equal((ours[0].permute(1, 2, 0) * 255).round().byte(), torch.from_numpy(pillow.copy()))
    assert (ours - float_resize).abs().max() * 255 >= 1  # the float path is not the official one
    # a non-square target: Pillow's size is (width, height)
    assert pil_resize(torch.rand(2, 3, 10, 20), (12, 30)).shape == (2, 3, 12, 30)


@needs_fixture
def test_adapter_builds_the_official_canvas(fixture_net):
    gen = torch.Generator().manual_seed(1)
    query = torch.rand(1, 3, 64, 80, generator=gen)
    p_in, p_out = torch.rand(1, 3, 96, 96, generator=gen), torch.rand(1, 3, 96, 96, generator=gen)
    spy = _Spy(fixture_net)
    out = PainterGeneralist(network=spy, device="cpu").predict(query, p_in, p_out)
    (imgs, tgts, mask, pred), = spy.calls
    assert imgs.shape == tgts.shape == (1, 3, 896, 448)
    square = lambda t: imagenet_normalize(pil_bicubic_448(t))  # noqa: E731
    torch.testing.assert_close(imgs[..., :448, :], square(p_in))     # prompt input on top
    torch.testing.assert_close(imgs[..., 448:, :], square(query))    # query below
    torch.testing.assert_close(tgts[..., :448, :], square(p_out))    # prompt target on top
    torch.testing.assert_close(tgts[..., 448:, :], square(p_out))    # placeholder copy, masked
    assert mask.shape == (1, 1568) and mask[0, 784:].all() and not mask[0, :784].any()
    # Output: the bottom half, de-normalised, bicubically resized to the query, in [0, 1].
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = F.interpolate(pred[..., 448:, :] * std + mean, size=(64, 80), mode="bicubic", align_corners=False)
    torch.testing.assert_close(out, expected.clamp(0, 1))
    assert out.shape == query.shape and 0 <= out.min() and out.max() <= 1


def test_adapter_end_to_end_on_the_small_config(tmp_path):
    torch.manual_seed(0)
    net = model.build("painter-s")
    path = tmp_path / "painter_vit_large.pth"
    torch.save({"model": net.state_dict(), "epoch": 0, "args": argparse.Namespace(model="x")}, path)
    g = bench.load_generalist("bench.official:PainterGeneralist", checkpoint=str(path), arch="painter-s", device="cpu")
    gen = torch.Generator().manual_seed(2)
    query = torch.rand(2, 3, 100, 70, generator=gen)
    out = g.predict(query, torch.rand(2, 3, 64, 64, generator=gen), torch.rand(2, 3, 64, 64, generator=gen))
    values = check_output(out, tuple(query.shape), who=g.name)
    assert values.min() >= 0 and values.max() <= 1
    info = bench.describe(g)
    assert info["colour_order"] == "rgb" and info["normalisation"] == "imagenet" and "512×256" in info["size"]
    assert info["params"] == sum(p.numel() for p in net.parameters())
