"""PromptIR: official state-dict layout, the prompt generation block, the Lightning loader, the adapter.

There is no numerical fixture for PromptIR (its official class fixes several widths for dim 48),
so the network is checked against the reference manifest and by unit properties.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import bench
import model
from bench.official import PromptIRGeneralist
from bench.protocol import check_output
from model import checkpoints
from model.promptir import PromptGenBlock

from reference_data import REFERENCE  # noqa: E402
MANIFEST = REFERENCE / "checkpoints" / "promptir.json"
# Built by the official class, never called by its forward(); kept only for a strict load.
DEAD_MODULES = ("chnl_reduce1", "chnl_reduce2", "chnl_reduce3",
                "reduce_noise_channel_1", "reduce_noise_channel_2", "reduce_noise_channel_3")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine a second spinning thread makes runs ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _small(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return model.build("promptir-s", **overrides).eval()


# ----------------------------------------------------------------------------- official layout

@pytest.mark.skipif(not MANIFEST.exists(), reason="reference manifest not available")
def test_official_size_equals_the_manifest_keys_order_and_shapes():
    with torch.device("meta"):
        net = model.build("promptir")
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == checkpoints.read_manifest(MANIFEST)
    assert len(ours) == 548
    assert sum(math.prod(s) for _, s in ours) == 35_592_263
    assert sum(p.numel() for p in net.parameters()) == 35_592_263  # no buffers in the file either
    assert all(any(k.startswith(m + ".") for k, _ in ours) for m in DEAD_MODULES)


def test_official_size_forward_keeps_the_shape_and_adds_the_input():
    torch.manual_seed(0)
    net = model.build("promptir").eval()
    query = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = net(query)
        # The global residual: with the output conv zeroed the network returns its input exactly.
        net.output.weight.zero_()
        residual_only = net(query)
    assert out.shape == query.shape and torch.isfinite(out).all()
    assert (out - query).abs().mean() > 1e-3  # random weights do change the image
    torch.testing.assert_close(residual_only, query, rtol=0, atol=0)


def test_sizes_that_are_not_multiples_of_8_are_refused():
    net = _small()
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 3, 60, 64))
    assert net.config.query_multiple == 8


def test_the_network_ignores_prompt_images():
    net = _small()
    gen = torch.Generator().manual_seed(1)
    query = torch.rand(2, 3, 32, 48, generator=gen)
    with torch.no_grad():
        bare = net(query)
        with_prompts = net(query, torch.rand(2, 3, 32, 48, generator=gen), torch.rand(2, 3, 32, 48, generator=gen))
    torch.testing.assert_close(with_prompts, bare, rtol=0, atol=0)


def test_every_parameter_but_the_dead_convs_gets_a_gradient():
    net = _small(dead_convs=True).train()
    names = {k.split(".")[0] for k, _ in net.named_parameters()}
    assert set(DEAD_MODULES) <= names
    net(torch.rand(2, 3, 32, 32)).abs().mean().backward()
    no_grad = {k.split(".")[0] for k, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    assert no_grad == set(DEAD_MODULES)
    # Without them (promptir-s default) nothing is left idle.
    assert not set(DEAD_MODULES) & {k.split(".")[0] for k, _ in _small().named_parameters()}


def _plain_restormer_block(block, x: torch.Tensor) -> torch.Tensor:
    """Restormer's TransformerBlock as the official code spells it (per-pixel LN over C, MDTA, GDFN)."""
    def norm(module, t):
        mu = t.mean(1, keepdim=True)
        var = t.var(1, keepdim=True, unbiased=False)
        weight, bias = module.body.weight.view(1, -1, 1, 1), module.body.bias.view(1, -1, 1, 1)
        return (t - mu) / torch.sqrt(var + 1e-5) * weight + bias

    b, c, h, w = x.shape
    attn, ffn = block.attn, block.ffn
    heads = attn.num_heads
    q, k, v = attn.qkv_dwconv(attn.qkv(norm(block.norm1, x))).chunk(3, dim=1)
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * attn.temperature
    x = x + attn.project_out((logits.softmax(-1) @ v).reshape(b, c, h, w))
    x1, x2 = ffn.dwconv(ffn.project_in(norm(block.norm2, x))).chunk(2, dim=1)
    return x + ffn.project_out(F.gelu(x1) * x2)


def test_restormer_block_equals_the_official_formula():
    net = _small(seed=4)
    block = net.noise_level2  # 4d + p2 = 160 channels, 4 heads
    with torch.no_grad():
        for p in block.parameters():  # move off the init values (ones/zeros) so every term matters
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(2, 160, 6, 10)
        torch.testing.assert_close(block(x), _plain_restormer_block(block, x), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- prompt generation block

def _plain_prompt(block: PromptGenBlock, x: torch.Tensor) -> torch.Tensor:
    """The paper's formula written out: P = conv3x3(resize(sum_l softmax(W·GAP(x) + b)_l · P_l))."""
    params = block.prompt_param[0]                           # (len, C, S, S)
    gap = x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])
    logits = gap @ block.linear_layer.weight.T + block.linear_layer.bias
    weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    weights = weights / weights.sum(dim=1, keepdim=True)
    out = []
    for b in range(x.shape[0]):
        # Resize each component first, then mix: the other order than the module uses.
        resized = F.interpolate(params, size=x.shape[-2:], mode="bilinear", align_corners=False)
        out.append(sum(weights[b, l] * resized[l] for l in range(params.shape[0])))
    return F.conv2d(torch.stack(out), block.conv3x3.weight, padding=1)


@pytest.mark.parametrize("side", [8, 12, 20])  # equal to, smaller than and larger than the prompt
def test_prompt_generation_block_equals_the_plain_formula(side):
    torch.manual_seed(3)
    block = PromptGenBlock(prompt_dim=6, prompt_len=5, prompt_size=12, lin_dim=10)
    x = torch.randn(3, 10, side, side + 4)
    with torch.no_grad():
        got, expected = block(x), _plain_prompt(block, x)
    assert got.shape == (3, 6, side, side + 4)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The mixing depends on the input (different samples get different prompts).
    assert (got[0] - got[1]).abs().max() > 1e-4


# ----------------------------------------------------------------------------- loader

def _lightning_file(path: Path, net) -> Path:
    """What PromptIRModel (a LightningModule with ``self.net``) saves: weights under 'state_dict', prefixed."""
    torch.save({"epoch": 149, "global_step": 1000, "pytorch-lightning_version": "2.0.1",
                "state_dict": {"net." + k: v for k, v in net.state_dict().items()}}, path)
    return path


def test_loader_reads_the_lightning_layout_with_weights_only(tmp_path, monkeypatch):
    source = _small(seed=5)
    path = _lightning_file(tmp_path / "model.ckpt", source)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    state = checkpoints.read_state_dict(path)
    assert calls == [True]
    assert list(state) == list(source.state_dict())  # 'net.' stripped, order kept
    loaded = checkpoints.load_weights(_small(seed=6), state)
    for (k, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_loader_refuses_a_file_of_another_size(tmp_path):
    path = _lightning_file(tmp_path / "model.ckpt", _small())
    with pytest.raises(checkpoints.CheckpointError, match="shape mismatch|missing"):
        checkpoints.load_weights(model.build("promptir-s", dim=16), checkpoints.read_state_dict(path))


# ----------------------------------------------------------------------------- adapter

def test_adapter_ignores_the_prompt_and_returns_the_query_size(tmp_path):
    net = _small(seed=7)
    path = _lightning_file(tmp_path / "model.ckpt", net)
    g = bench.load_generalist("promptir", checkpoint=str(path), arch="promptir-s", device="cpu")
    assert isinstance(g, PromptIRGeneralist)
    gen = torch.Generator().manual_seed(2)
    query = torch.rand(2, 3, 60, 75, generator=gen)
    out = g.predict(query, torch.rand(2, 3, 40, 40, generator=gen), torch.rand(2, 3, 40, 40, generator=gen))
    other = g.predict(query, torch.rand(2, 3, 96, 64, generator=gen), torch.zeros(2, 3, 96, 64))
    torch.testing.assert_close(other, out, rtol=0, atol=0)
    values = check_output(out, tuple(query.shape), who=g.name)
    assert values.min() >= 0 and values.max() <= 1
    # As the official demo: reflect-pad bottom/right to 64×80, run, crop back; then clamp.
    with torch.no_grad():
        expected = net(F.pad(query, (0, 5, 0, 4), mode="reflect"))[..., :60, :75].clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    info = bench.describe(g)
    assert info["colour_order"] == "rgb" and info["normalisation"] == "none"
    assert info["params"] == sum(p.numel() for p in net.parameters()) and len(info["checkpoint_sha256"]) == 64


def test_promptir_is_a_builtin_generalist():
    assert "promptir" in bench.available_generalists()
    assert model.get_architecture("promptir").official.colour_order == "rgb"
