"""GenLV architecture: registry, official state-dict layouts, SDPA equivalence, size rules, checkpoints."""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import model
from model import checkpoints, layers
from model.layers import (ChannelAttention, ChannelNorm, OverlapWindowAttention, TokenAttention,
                          relative_index)

from reference_data import REFERENCE, REPO  # noqa: E402
MANIFESTS = REFERENCE / "checkpoints"
OFFICIAL_SIZES = ["genlv-base", "genlv-huge", "genlv-giant", "genlv101-base", "genlv101-large", "genlv101-huge"]


def _meta_build(name: str, **overrides):
    with torch.device("meta"):
        return model.build(name, **overrides)


def _n_params(net) -> int:
    return sum(t.numel() for t in net.state_dict().values())


# ----------------------------------------------------------------------------- registry and sizes

def test_import_model_does_not_import_torch():
    code = "import sys, model; model.list_architectures(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_registry_lists_every_required_name():
    names = model.list_architectures()
    for name in OFFICIAL_SIZES + ["genlv-s", "genlv-tiny", "genlv-fixture"]:
        assert name in names
    with pytest.raises(KeyError, match="unknown architecture 'nope'"):
        model.build("nope")


@pytest.mark.parametrize("name", OFFICIAL_SIZES)
def test_state_dict_equals_official_manifest(name):
    path = MANIFESTS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"reference manifest {path} not available")
    expected = checkpoints.read_manifest(path)
    net = _meta_build(name)
    actual = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert checkpoints.state_dict_diff(dict(expected), dict(actual)) == []
    assert [k for k, _ in actual] == [k for k, _ in expected], "key order differs"
    assert _n_params(net) == json.loads(path.read_text())["num_state_dict_elements"]
    assert model.get_architecture(name).official.manifest == path.name


def test_base_parameter_count_matches_paper_model():
    # The manifest's number, pinned here so the check runs without the reference folder too.
    assert _n_params(_meta_build("genlv-base")) == 38_821_432
    assert _n_params(_meta_build("genlv101-base")) == 32_743_960


def test_small_sizes_and_overrides():
    assert 300_000 <= _n_params(_meta_build("genlv-tiny")) <= 1_000_000
    assert 2_000_000 <= _n_params(_meta_build("genlv-s")) <= 8_000_000
    wider = _meta_build("genlv-tiny", dim=16, num_blocks=[1, 1, 1, 2])
    assert wider.config.dim == 16 and wider.config.num_blocks == (1, 1, 1, 2)
    assert len(wider.latent_blocks) == 2
    with pytest.raises(TypeError, match="unknown GenLV config field"):
        model.build("genlv-tiny", widht=3)
    with pytest.raises(ValueError, match="not divisible"):
        model.build("genlv-tiny", heads=(1, 2, 4, 7))


# ----------------------------------------------------------------------------- SDPA == plain formula

def _plain_attention(q, k, v, scale, bias=None):
    logits = (q @ k.transpose(-1, -2)) * scale
    if bias is not None:
        logits = logits + bias
    return logits.softmax(-1) @ v


def _randomise(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return module


def test_channel_norms_equal_the_restormer_formulas():
    torch.manual_seed(8)
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    mu, var = x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)
    with_bias, bias_free = _randomise(ChannelNorm(6, "WithBias")), _randomise(ChannelNorm(6, "BiasFree"))
    weight, bias = with_bias.body.weight.view(1, -1, 1, 1), with_bias.body.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(with_bias(x), (x - mu) / torch.sqrt(var + 1e-5) * weight + bias)
    torch.testing.assert_close(bias_free(x), x / torch.sqrt(var + 1e-5) * bias_free.body.weight.view(1, -1, 1, 1))
    assert list(dict(bias_free.named_parameters())) == ["body.weight"]


def test_channel_layer_norm_under_autocast_keeps_the_input_dtype_within_bf16_tolerance():
    # Under autocast the norm runs in the input's dtype (CUDA's policy would write fp32 copies);
    # the result and the fp32 parameters' gradients stay within bf16 rounding of the fp32 ones.
    torch.manual_seed(3)
    norm = _randomise(ChannelNorm(24, "WithBias"))
    x = (torch.randn(2, 24, 6, 10) * 2 + 0.5).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = norm(x)
    assert mixed.dtype == torch.bfloat16 and mixed.shape == x.shape
    (mixed.float() ** 2).sum().backward()
    grads = [p.grad.clone() for p in (norm.body.weight, norm.body.bias)]
    assert all(g.dtype == torch.float32 for g in grads)
    norm.zero_grad()
    ref = norm(x.float())
    (ref ** 2).sum().backward()
    assert ((mixed.float() - ref).norm() / ref.norm()).item() < 1e-2
    for got, p in zip(grads, (norm.body.weight, norm.body.bias)):
        assert ((got - p.grad).norm() / p.grad.norm()).item() < 2e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gated_gelu_gives_the_formulas_values_and_gradients_bit_for_bit(dtype, memory_format):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 10, 6, 7, generator=generator).to(dtype).contiguous(memory_format=memory_format)
    upstream = torch.randn(2, 5, 6, 7, generator=generator).to(dtype)
    x.requires_grad_(True)
    fused = layers.gated_gelu(x)
    (fused_grad,) = torch.autograd.grad(fused, x, upstream)
    gate, value = x.chunk(2, dim=1)
    plain = F.gelu(gate) * value
    (plain_grad,) = torch.autograd.grad(plain, x, upstream)
    assert type(fused.grad_fn).__name__ == "_GatedGeluBackward"  # the fused backward really ran
    assert torch.equal(fused, plain) and torch.equal(fused_grad, plain_grad)
    assert fused_grad.dtype == dtype and fused_grad.is_contiguous(memory_format=memory_format)


def test_gated_gelu_keeps_the_plain_formula_where_nothing_is_saved_or_code_is_compiled(monkeypatch):
    x = torch.randn(1, 4, 3, 3)
    with torch.no_grad():
        assert layers.gated_gelu(x.requires_grad_(True)).grad_fn is None
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert type(layers.gated_gelu(x).grad_fn).__name__ == "MulBackward0"  # inductor fuses it whole


def test_row_norm_backward_is_autograds_in_fp32_and_within_an_ulp_of_it_in_bf16():
    generator = torch.Generator().manual_seed(4)
    base = torch.randn(2, 3, 4, 50, generator=generator)
    base[0, 0, 1] = 0  # a zero row: clamped, so no gradient and no NaN
    upstream = torch.randn(2, 3, 4, 1, generator=generator)
    for dtype, backward in ((torch.float32, "ClampMinBackward0"), (torch.bfloat16, "_RowNormBackward")):
        x = base.to(dtype).requires_grad_(True)
        lean = layers.row_norm(x, layers.NORMALIZE_EPS)
        assert type(lean.grad_fn).__name__ == backward and lean.dtype == torch.float32
        (lean_grad,) = torch.autograd.grad(lean, x, upstream)
        plain = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32).clamp_min(layers.NORMALIZE_EPS)
        (plain_grad,) = torch.autograd.grad(plain, x, upstream)
        assert torch.equal(lean, plain) and lean_grad.dtype == dtype
        assert torch.isfinite(lean_grad).all() and not lean_grad[0, 0, 1].any()
        if dtype == torch.float32:
            assert torch.equal(lean_grad, plain_grad)
        else:  # one bf16 rounding of the per-row scale: at most one ulp (2^-7 relative) apart
            ulp = plain_grad.float().abs() * 2.0 ** -7
            assert ((lean_grad.float() - plain_grad.float()).abs() <= ulp + 1e-30).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hand_written_backward_passes_hand_double_backward_to_the_plain_formulas(dtype):
    # A gradient penalty (create_graph) through each: the same second-order gradient as autograd's,
    # also where the incoming gradient does not itself require grad (a plain .sum()).
    generator = torch.Generator().manual_seed(5)
    cases = ((layers.gated_gelu, layers._plain_gated_gelu, (2, 6, 4, 5)),
             (lambda t: layers.row_norm(t, layers.NORMALIZE_EPS),
              lambda t: layers._plain_row_norm(t, layers.NORMALIZE_EPS), (2, 3, 4, 50)))
    for fused, plain, shape in cases:
        x = torch.randn(*shape, generator=generator).to(dtype).requires_grad_(True)
        second = []
        for f in (fused, plain):
            (grad,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
            second.append(torch.autograd.grad(grad.float().square().sum(), x)[0])
        assert second[0].abs().max() > 0 and torch.equal(*second)


def test_row_norm_keeps_autograds_backward_for_fp16():
    # The per-row scale can leave fp16's range (1000 / 1e-3); bf16 has fp32's.
    x = torch.tensor([[1e-3, 0.0, 2e-3, -1e-3]], dtype=torch.float16, requires_grad=True)
    out = layers.row_norm(x, layers.NORMALIZE_EPS)
    assert type(out.grad_fn).__name__ == "ClampMinBackward0"
    (grad,) = torch.autograd.grad(out, x, torch.full((1, 1), 1000.0))
    assert torch.isfinite(grad).all()


def test_channel_attention_equals_plain_mdta_formula():
    torch.manual_seed(0)
    attn = _randomise(ChannelAttention(dim=16, num_heads=4, bias=False))
    x = torch.randn(2, 16, 8, 12)
    qkv = attn.qkv_dwconv(attn.qkv(x))
    q, k, v = (t.reshape(2, 4, 4, 96) for t in qkv.chunk(3, dim=1))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    logits = (q @ k.transpose(-1, -2)) * attn.temperature
    plain = attn.project_out((logits.softmax(-1) @ v).reshape(2, 16, 8, 12))
    assert attn.temperature.abs().std() > 0.05  # heads really have different temperatures
    torch.testing.assert_close(attn(x), plain, atol=1e-5, rtol=1e-5)


def test_channel_attention_under_bf16_autocast_stays_within_bf16_tolerance():
    # The mixed-precision path (bf16 matmuls, fp32 softmax) against the fp32 result.
    torch.manual_seed(1)
    attn = _randomise(ChannelAttention(dim=16, num_heads=4, bias=False))
    x = torch.randn(2, 16, 8, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = attn(x)
    assert mixed.dtype == torch.bfloat16
    ref = attn(x)
    assert ((mixed.float() - ref).norm() / ref.norm()).item() < 1e-2
    # The backward (the norms' lean backward included) against the fp32 gradients.
    x.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (mixed_grad,) = torch.autograd.grad(attn(x).float().square().sum(), x)
    (ref_grad,) = torch.autograd.grad(attn(x).square().sum(), x)
    assert ((mixed_grad - ref_grad).norm() / ref_grad.norm()).item() < 2e-2


def _pad_reshape_rel_to_abs(logits):
    """HaloNet's relative->absolute conversion by padding and reshaping, (B, L, 2R-1) -> (B, L, R)."""
    b, length, m = logits.shape
    r = (m + 1) // 2
    padded = torch.cat([logits, logits.new_zeros(b, length, 1)], dim=2).reshape(b, -1)
    padded = torch.cat([padded, padded.new_zeros(b, m - length)], dim=1)
    return padded.reshape(b, length + 1, m)[:, :length, -r:]


def test_relative_index_matches_halonet_pad_reshape_trick():
    window, span = 8, 12
    table = torch.arange(2 * span - 1, dtype=torch.float32).expand(1, window, -1).contiguous()
    assert torch.equal(_pad_reshape_rel_to_abs(table)[0].long(), relative_index(window, span))


def _plain_window_attention(attn: OverlapWindowAttention, x):
    """Independent OCA: explicit halo gather with F.unfold and a full (ws², span²) bias index table."""
    b, _, h, w = x.shape
    ws, span, heads, d = attn.window, attn.span, attn.num_heads, attn.dim_head
    q, k, v = attn.qkv(x).chunk(3, dim=1)
    q = q.reshape(b, heads, d, h // ws, ws, w // ws, ws).permute(0, 3, 5, 1, 4, 6, 2).reshape(-1, heads, ws * ws, d)

    def halo(t):
        cols = F.unfold(t, span, padding=attn.pad, stride=ws)          # (b, C·span², windows)
        cols = cols.reshape(b, heads, d, span * span, -1).permute(0, 4, 1, 3, 2)
        return cols.reshape(-1, heads, span * span, d)

    k, v = halo(k), halo(v)
    scale = d ** -0.5
    qrow, qcol = torch.arange(ws * ws) // ws, torch.arange(ws * ws) % ws
    krow, kcol = torch.arange(span * span) // span, torch.arange(span * span) % span
    idx_h = krow[None, :] - qrow[:, None] + span - 1                    # (ws², span²)
    idx_w = kcol[None, :] - qcol[:, None] + span - 1
    qs = q * scale
    logit_h = qs @ attn.rel_pos_emb.rel_height.T                        # (…, ws², 2span-1)
    logit_w = qs @ attn.rel_pos_emb.rel_width.T
    bias = (logit_h.gather(-1, idx_h.expand(*logit_h.shape[:-1], -1))
            + logit_w.gather(-1, idx_w.expand(*logit_w.shape[:-1], -1)))
    out = _plain_attention(q, k, v, scale, bias)
    out = out.reshape(b, h // ws, w // ws, heads, ws, ws, d).permute(0, 3, 6, 1, 4, 2, 5).reshape(b, heads * d, h, w)
    return attn.project_out(out)


def test_overlap_window_attention_equals_plain_formula_and_trains_tables():
    torch.manual_seed(1)
    attn = _randomise(OverlapWindowAttention(dim=24, window_size=8, num_heads=2, dim_head=16, bias=False))
    x = torch.randn(2, 24, 16, 24)
    torch.testing.assert_close(attn(x), _plain_window_attention(attn, x), atol=1e-5, rtol=1e-5)
    attn(x).square().mean().backward()
    for table in (attn.rel_pos_emb.rel_height, attn.rel_pos_emb.rel_width):
        assert table.grad is not None and table.grad.abs().sum() > 0


def test_window_attention_split_into_kernel_sized_chunks_is_the_same_function(monkeypatch):
    # 12 windows in slices of 5 (5 + 5 + 2): outputs and every gradient equal the one-call version.
    torch.manual_seed(4)
    attn = _randomise(OverlapWindowAttention(dim=24, window_size=8, num_heads=2, dim_head=16, bias=False))
    x = torch.randn(2, 24, 16, 24)

    def run():
        attn.zero_grad()
        xi = x.clone().requires_grad_()
        out = attn(xi)
        out.square().mean().backward()
        return out, xi.grad, attn.rel_pos_emb.rel_height.grad.clone(), attn.qkv.weight.grad.clone()

    whole = run()
    calls = []
    real_sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(layers, "SDPA_MAX_BATCH", 5)
    monkeypatch.setattr(layers.F, "scaled_dot_product_attention",
                        lambda q, *a, **kw: calls.append(q.shape[0]) or real_sdpa(q, *a, **kw))
    chunked = run()
    assert calls == [5, 5, 2]
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_token_attention_equals_plain_formula_self_and_cross():
    torch.manual_seed(2)
    attn = _randomise(TokenAttention(dim=32, num_heads=4))
    x, keys, values = torch.randn(2, 10, 32), torch.randn(2, 7, 32), torch.randn(2, 7, 32)

    def plain(q_src, k_src, v_src):
        split = lambda t: t.reshape(2, -1, 4, 8).transpose(1, 2)  # noqa: E731
        q, k, v = split(attn.to_q(q_src)), split(attn.to_k(k_src)), split(attn.to_v(v_src))
        return attn.to_out(_plain_attention(q, k, v, 8 ** -0.5).transpose(1, 2).reshape(2, -1, 32))

    torch.testing.assert_close(attn(x), plain(x, x, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn(x, keys, values), plain(x, keys, values), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- forward contract

@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return model.build("genlv-tiny").eval()


def test_forward_shapes_with_prompt_of_another_size(tiny):
    query = torch.rand(2, 3, 64, 96)
    prompt_in, prompt_out = torch.rand(2, 3, 40, 56), torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        out = tiny(query, prompt_in, prompt_out)
    assert out.shape == query.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_prompt_cross_attention_block_returns_its_inputs_layout(tiny, memory_format):
    # Its tokens come back as an NHWC-strided view; handing that to the next PCAB made
    # torch.compile build a second PCAB graph for the other strides (one more compile).
    block = copy.deepcopy(tiny.latent_blocks[0]).to(memory_format=memory_format)
    dim = block.norm3.normalized_shape[0]
    x = torch.rand(2, dim, 4, 6).contiguous(memory_format=memory_format)
    keys = values = torch.rand(2, 12, dim)
    with torch.no_grad():
        out = block(x, keys, values)
        plain = block(x.contiguous(), keys, values)
    assert out.is_contiguous(memory_format=memory_format)
    assert layers.is_nhwc(out) == (memory_format == torch.channels_last)
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-5)


def test_size_rules_raise_clear_errors(tiny):
    ok = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny(torch.rand(1, 3, 80, 64), ok, ok)
    with pytest.raises(ValueError, match="multiples of 8"):
        tiny(ok, torch.rand(1, 3, 36, 64), torch.rand(1, 3, 36, 64))
    with pytest.raises(ValueError, match="same shape"):
        tiny(ok, ok, torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="batch sizes differ"):
        tiny(torch.rand(2, 3, 64, 64), ok, ok)


def test_prompt_changes_output_and_samples_are_independent(tiny):
    torch.manual_seed(3)
    query, p_in, p_out = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        both = tiny(query, p_in, p_out)
        first = tiny(query[:1], p_in[:1], p_out[:1])
        swapped = tiny(query[:1], p_in[:1], p_out[1:])
        reused = tiny.forward_with_prompt(query, *tiny.encode_prompt(p_in, p_out))
        channels_last = tiny(query.to(memory_format=torch.channels_last), p_in, p_out)
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reused, both)
    torch.testing.assert_close(channels_last, both, atol=1e-5, rtol=1e-5)
    assert (swapped - first).abs().max() > 1e-4  # the prompt target reaches the output


def test_input_offset_maps_images_into_and_out_of_the_network_range(tiny):
    offset = 4 / 255
    shifted = model.build("genlv-tiny", input_offset=offset).eval()
    shifted.load_state_dict(tiny.state_dict())  # same parameters: the offset adds none
    torch.manual_seed(5)
    query, p_in, p_out = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    query[..., :32, :] = 0.0  # a black half: exactly what the offset is for
    into = lambda x: x * (1 - 2 * offset) + offset  # noqa: E731
    with torch.no_grad():
        expected = (tiny(into(query), into(p_in), into(p_out)) - offset) / (1 - 2 * offset)
        out = shifted(query, p_in, p_out)
        reused = shifted.forward_with_prompt(query, *shifted.encode_prompt(p_in, p_out))
        plain = tiny(query, p_in, p_out)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reused, out)
    assert (out - plain).abs().max() > 1e-3  # it is a different function of the same weights
    with pytest.raises(ValueError, match="input_offset"):
        model.build("genlv-tiny", input_offset=0.5)


def test_backward_reaches_every_parameter():
    torch.manual_seed(4)
    net = model.build("genlv-tiny")
    query, p_in, p_out, target = (torch.rand(1, 3, 32, 32) for _ in range(4))
    F.l1_loss(net(query, p_in, p_out), target).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


# ----------------------------------------------------------------------------- checkpoint files

def test_official_layout_with_namespace_loads_strictly(tmp_path):
    torch.manual_seed(5)
    net = model.build("genlv-tiny")
    path = tmp_path / "checkpoint-1.pth"
    torch.save({"model": net.state_dict(), "optimizer": {}, "epoch": 1, "scaler": None,
                "args": argparse.Namespace(lr=1e-4, model="xrestormer_prompt_crossattn_base")}, path)
    loaded = checkpoints.load_weights(model.build("genlv-tiny"), checkpoints.read_state_dict(path))
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_untrusted_pickle_gives_a_clear_error(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"model": {}, "args": Path("x")}, path)
    with pytest.raises(checkpoints.CheckpointError, match="trust_pickle"):
        checkpoints.read_state_dict(path)


def test_mismatch_error_lists_missing_unexpected_and_shapes():
    net = model.build("genlv-tiny")
    state = dict(net.state_dict())
    state.pop("output.weight")
    state["extra.weight"] = torch.zeros(1)
    state["patch_embed.proj.weight"] = torch.zeros(5, 3, 3, 3)
    with pytest.raises(checkpoints.CheckpointError) as info:
        checkpoints.load_weights(net, state)
    text = str(info.value)
    assert "1 missing key(s): output.weight" in text
    assert "1 unexpected key(s): extra.weight" in text
    assert "patch_embed.proj.weight model (12, 3, 3, 3) vs file (5, 3, 3, 3)" in text


def test_safetensors_roundtrip_rebuilds_the_model(tmp_path):
    torch.manual_seed(6)
    net = model.build("genlv-tiny", dim=8).eval()
    path = tmp_path / "tiny.safetensors"
    checkpoints.save_model(net, path, arch="genlv-tiny")
    raw = path.read_bytes()
    (head_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + head_len])
    assert head_len % 8 == 0 and header["__metadata__"]["llvbench_arch"] == "genlv-tiny"
    assert header["output.weight"]["dtype"] == "F32" and header["output.weight"]["shape"] == [3, 16, 3, 3]
    again = checkpoints.load_model(path).eval()
    assert again.config == net.config
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x, x, x), net(x, x, x))


def test_safetensors_mixed_dtypes_roundtrip(tmp_path):
    state = {"a": torch.randn(3, 4).to(torch.bfloat16), "b": torch.arange(5), "c": torch.tensor(True),
             "d": torch.randn(2, 2).half(), "e": torch.zeros(0, 3)}
    checkpoints.write_safetensors(tmp_path / "m.safetensors", state, {"k": "v"})
    back, meta = checkpoints.read_safetensors(tmp_path / "m.safetensors")
    assert meta == {"k": "v"} and list(back) == list(state)
    for key in state:
        assert back[key].dtype == state[key].dtype and torch.equal(back[key], state[key]), key


def test_load_model_takes_the_checkpoint_folder_and_names_bad_files(tmp_path):
    net = model.build("genlv-tiny", dim=8).eval()
    checkpoints.save_model(net, tmp_path / "model.safetensors", arch="genlv-tiny")
    assert checkpoints.load_model(tmp_path).config == net.config
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoints.CheckpointError, match="empty: a folder without model.safetensors"):
        checkpoints.load_model(tmp_path / "empty")
    with pytest.raises(checkpoints.CheckpointError, match="gone.safetensors: no such checkpoint file"):
        checkpoints.read_safetensors(tmp_path / "gone.safetensors")
    raw = (tmp_path / "model.safetensors").read_bytes()
    for name, data in (("short", raw[:5]), ("cut-header", raw[:40]), ("text", b"not a checkpoint at all")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(checkpoints.CheckpointError, match=f"{name}: not a safetensors file"):
            checkpoints.read_safetensors(tmp_path / name)
    (tmp_path / "cut-data").write_bytes(raw[:-100])
    with pytest.raises(checkpoints.CheckpointError, match="cut-data: tensor .* truncated"):
        checkpoints.read_safetensors(tmp_path / "cut-data")


def test_safetensors_package_reads_our_files(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = {"w": torch.randn(4, 5), "i": torch.arange(3)}
    checkpoints.write_safetensors(tmp_path / "x.safetensors", state)
    back = safetensors_torch.load_file(str(tmp_path / "x.safetensors"))
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_bgr_wrapper_flips_inputs_and_output():
    class Probe(torch.nn.Module):
        def forward(self, query, prompt_input, prompt_target):
            return query * 2 + prompt_input[:, :1] - prompt_target[:, 2:]

    rgb = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    wrapped = checkpoints.BGRWeights(Probe())(*rgb)
    expected = Probe()(*(t.flip(1) for t in rgb)).flip(1)
    torch.testing.assert_close(wrapped, expected)


# ----------------------------------------------------------------------------- no-prompt ablation

def test_xrestormer_ablation_ignores_prompt_and_adds_the_query():
    torch.manual_seed(7)
    net = model.build("xrestormer", dim=12, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1).eval()
    keys = list(net.state_dict())
    assert not any(k.startswith(("Prompt_KV_Encoder", "latent_blocks")) for k in keys)
    assert any(k.startswith("latent.0.spatial_attn.rel_pos_emb") for k in keys)  # windowed bottleneck
    query, other = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(query), net(query, other, other))
        with pytest.raises(ValueError, match="multiples of 64"):
            net(torch.rand(1, 3, 96, 96))
        net.output.weight.zero_()
        torch.testing.assert_close(net(query), query)  # global residual: zero head -> identity


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_overlap_window_attention_compiles_and_its_backward_matches_eager():
    # Regression: the strided-view halo (Tensor.unfold on a padded map) made torch.compile's CPU
    # backward corrupt memory at head width 16, GenLV's; F.unfold does not.
    torch.manual_seed(11)
    attn = OverlapWindowAttention(12, 8, 1, 16, False, 0.5)
    x = torch.rand(1, 12, 16, 24, requires_grad=True)
    attn(x).square().mean().backward()
    eager_grad, x.grad = x.grad.clone(), None
    torch.compile(attn)(x).square().mean().backward()
    torch.testing.assert_close(x.grad, eager_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_gdfn_and_mdta_compile_under_bf16_autocast_and_their_gradients_match_eager():
    # Eager runs the hand-written backward passes (gated_gelu, row_norm); compiled code takes the
    # plain formulas, which inductor fuses. The two must agree within bf16 rounding.
    from model.layers import GatedDconvFFN

    torch.manual_seed(12)
    for module in (GatedDconvFFN(8, 2.66, False), ChannelAttention(8, 2, False)):
        x = torch.rand(1, 8, 16, 16, requires_grad=True)
        grads = []
        for run in (module, torch.compile(module)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = run(x)
            (grad,) = torch.autograd.grad(out.float().square().mean(), x)
            grads.append(grad)
        eager, compiled = grads
        assert ((compiled - eager).norm() / eager.norm()).item() < 2e-2, type(module).__name__
