"""PromptGIP: official state-dict layout, the official numerical fixture, and the bench adapter.

The fixture (shared/reference/fixtures/promptgip-tiny-official.npz) was made with the authors'
``MaskedAutoencoderViT`` (embed 64, depth 2, decoder 32/1) and noisy weights, called as
``model(imgs=[p_in, p_out, query, query], mask_ratio=1, input_is_list=True, train_mode=False)[4]``
on raw tensors (the official code feeds BGR; colour order plays no role inside the network).
"""
from __future__ import annotations

import argparse
import math

import pytest
import torch

import bench
import model
from bench.official import PromptGIPGeneralist
from bench.protocol import check_output
from model import checkpoints, promptgip

from reference_data import REFERENCE, TOLERANCE, load_fixture  # noqa: E402
MANIFEST = REFERENCE / "checkpoints" / "promptgip.json"
FIXTURE = REFERENCE / "fixtures" / "promptgip-tiny-official.npz"

needs_fixture = pytest.mark.skipif(not FIXTURE.exists(), reason=f"fixture {FIXTURE} not available")


@pytest.fixture(scope="module")
def fixture():
    meta, params, inputs, outputs = load_fixture(FIXTURE)
    return meta, params, inputs, outputs["prediction"]


def _fixture_net(params):
    return checkpoints.load_weights(model.build("promptgip-fixture"), params).eval()


def _run(net, inputs):
    with torch.no_grad():
        return net(inputs["query"], inputs["prompt_input"], inputs["prompt_target"])


# ----------------------------------------------------------------------------- official layout

@pytest.mark.skipif(not MANIFEST.exists(), reason="reference manifest not available")
def test_official_size_equals_the_manifest_keys_order_and_shapes():
    with torch.device("meta"):
        net = model.build("promptgip")
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == checkpoints.read_manifest(MANIFEST)
    assert sum(math.prod(s) for _, s in ours) == 329_279_747
    # The sinusoid tables are regenerated, never saved: the official file has no such keys.
    assert not any("pos" in k for k, _ in ours)


def test_sinusoid_table_follows_the_transformer_formula():
    width = 10
    table = promptgip.sinusoid_table(7, width)
    assert table.dtype == torch.float32 and table.shape == (7, width)
    for pos in (0, 3, 6):
        for j in range(width):
            angle = pos / 10000 ** (2 * (j // 2) / width)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert abs(table[pos, j].item() - expected) < 1e-6


def test_each_image_owns_a_block_of_1024_table_rows():
    table = torch.arange(4097, dtype=torch.float32)[:, None]
    for k in range(4):
        rows = promptgip.image_positions(table, k, num_patches=256, patch_size=16)
        assert rows[0, 0] == 1 + 1024 * k and rows[-1, 0] == 1024 * k + 256


def test_non_square_or_wrong_size_inputs_are_rejected():
    net = model.build("promptgip-fixture")
    x = torch.rand(1, 3, 128, 128)
    with pytest.raises(ValueError, match="256"):
        net(x, x, x)


# ----------------------------------------------------------------------------- official function

@needs_fixture
def test_fixture_config_is_the_registered_one(fixture):
    meta, params, _, _ = fixture
    config = model.build("promptgip-fixture").config.as_dict()
    for key, value in meta["constructor_kwargs"].items():
        assert config[key] == value, key
    assert meta["call"].endswith("[4]") and "mask_ratio=1" in meta["call"]
    assert list(model.build("promptgip-fixture").state_dict()) == list(params)


@needs_fixture
def test_reproduces_the_official_output(fixture):
    _, params, inputs, expected = fixture
    out = _run(_fixture_net(params), inputs)
    assert out.shape == expected.shape == (1, 3, 256, 256)
    error = (out - expected).abs().max().item()
    assert error < TOLERANCE, f"max abs difference {error:.2e} to the official output"
    assert expected.std() > 0.1  # a non-trivial output, so the comparison can fail


@needs_fixture
def test_wrong_position_rows_break_the_match(fixture, monkeypatch):
    """Packing the images' position rows contiguously (256 per image) is not the official layout."""
    _, params, inputs, expected = fixture
    monkeypatch.setattr(promptgip, "POS_TABLE_SIDE", 256)
    assert (_run(_fixture_net(params), inputs) - expected).abs().max() > 100 * TOLERANCE


@needs_fixture
def test_official_file_layout_loads_strictly(fixture, tmp_path):
    _, params, inputs, expected = fixture
    path = tmp_path / "PromptGIP-checkpoint.pth"
    torch.save({"model": params, "optimizer": {}, "epoch": 0, "args": argparse.Namespace(model="x")}, path)
    net = checkpoints.load_weights(model.build("promptgip-fixture"), checkpoints.read_state_dict(path)).eval()
    assert (_run(net, inputs) - expected).abs().max() < TOLERANCE
    with pytest.raises(checkpoints.CheckpointError, match="missing"):
        checkpoints.load_weights(model.build("promptgip-fixture"), {k: v for k, v in params.items() if "CNN" not in k})


# ----------------------------------------------------------------------------- adapter

@needs_fixture
def test_adapter_feeds_bgr_without_normalisation_and_returns_rgb(fixture):
    """On 8-bit 256² RGB inputs the adapter returns the official (BGR) network output, flipped to RGB."""
    _, params, inputs, _ = fixture
    net = _fixture_net(params)
    bgr = {k: (v * 255).round() / 255 for k, v in inputs.items()}
    expected_bgr = _run(net, bgr).clamp(0, 1)
    g = PromptGIPGeneralist(network=net, device="cpu")
    out = g.predict(bgr["query"].flip(1), bgr["prompt_input"].flip(1), bgr["prompt_target"].flip(1))
    torch.testing.assert_close(out, expected_bgr.flip(1), atol=1e-5, rtol=0)
    # Feeding RGB straight through (no flip) would give something else: the check can fail.
    assert (out - expected_bgr).abs().max() > 1e-3


@needs_fixture
def test_adapter_end_to_end_any_sizes(fixture, tmp_path):
    _, params, _, _ = fixture
    path = tmp_path / "PromptGIP-checkpoint.pth"
    torch.save({"model": params}, path)
    g = bench.load_generalist("bench.official:PromptGIPGeneralist", checkpoint=str(path),
                              arch="promptgip-fixture", device="cpu")
    gen = torch.Generator().manual_seed(0)
    query = torch.rand(2, 3, 72, 100, generator=gen)
    p_in, p_out = torch.rand(2, 3, 96, 64, generator=gen), torch.rand(2, 3, 96, 64, generator=gen)
    out = g.predict(query, p_in, p_out)
    values = check_output(out, tuple(query.shape), who=g.name)
    assert values.min() >= 0 and values.max() <= 1 and values.std() > 0.01
    info = bench.describe(g)
    assert info["colour_order"] == "bgr" and "256×256" in info["size"] and len(info["checkpoint_sha256"]) == 64
    assert info["params"] == 230_051


@needs_fixture
def test_adapter_reads_the_colour_order_our_safetensors_record(fixture, tmp_path):
    # save_model records colour_order rgb: flipping such weights' inputs to BGR would run them wrongly.
    _, params, _, _ = fixture
    net = checkpoints.load_weights(model.build("promptgip-fixture"), params).eval()
    path = tmp_path / "ours.safetensors"
    checkpoints.save_model(net, path, "promptgip-fixture")
    assert checkpoints.read_safetensors(path)[1]["colour_order"] == "rgb"
    g = bench.load_generalist("promptgip", checkpoint=str(path), arch="promptgip-fixture", device="cpu")
    assert g.bgr is False and bench.describe(g)["colour_order"] == "rgb"
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(1, 3, 256, 256, generator=gen) for _ in range(3)]
    rgb = bench.load_generalist("promptgip", checkpoint=str(path), arch="promptgip-fixture", device="cpu", bgr=False)
    torch.testing.assert_close(g.predict(*images), rgb.predict(*images), atol=0, rtol=0)
    with pytest.raises(checkpoints.CheckpointError, match=rf"{path.name}: saved with colour_order rgb, but bgr=True"):
        bench.load_generalist("promptgip", checkpoint=str(path), arch="promptgip-fixture", device="cpu", bgr=True)
