"""The ViT backbone ablations of paper Table 1 (model/vit.py): vit-vpip (VPIP with a ViT main
network) and vit (no prompt)."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import model
from bench.builtins import CheckpointGeneralist
from model.checkpoints import write_safetensors
from model.vit import ViTConfig, build_vit, sincos_position_code

TINY = dict(embed_dim=32, depth=3, num_heads=2, prompt_blocks=1, prompt_nf=8, prompt_res_blocks=1)


def randomise_head(net, seed=0):
    """The head starts at zero (identity network); give it weights so outputs depend on the input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.head.weight.copy_(torch.randn(net.head.weight.shape, generator=g) * 0.05)
    return net


@pytest.mark.parametrize("name, low, high", [("vit-vpip", 30e6, 35e6), ("vit", 20e6, 23e6),
                                             ("vit-vpip-s", 4e6, 5e6), ("vit-s", 2.5e6, 3e6)])
def test_registered_sizes(name, low, high):
    net = model.build(name)
    assert low < sum(p.numel() for p in net.parameters()) < high
    assert net.config.use_prompt == name.startswith("vit-vpip")


def test_untrained_network_is_the_identity_and_prompt_matters_once_trained():
    torch.manual_seed(0)
    net = build_vit(**TINY).eval()
    query, p_in, p_out = torch.rand(2, 3, 32, 40), torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(net(query, p_in, p_out), query)  # zero head + global residual
        randomise_head(net)
        out = net(query, p_in, p_out)
        assert out.shape == query.shape
        # keys come from the prompt input, values from the prompt target: both matter, not symmetric
        assert not torch.allclose(out, net(query, p_in, torch.rand(2, 3, 24, 24)))
        assert not torch.allclose(out, net(query, torch.rand(2, 3, 24, 24), p_out))
        assert not torch.allclose(out, net(query, p_out, p_in))
        # batch items are independent
        torch.testing.assert_close(out[:1], net(query[:1], p_in[:1], p_out[:1]), rtol=1e-5, atol=1e-5)


def test_prompt_cross_attention_sits_in_the_middle_blocks_only():
    cfg = ViTConfig(**{**TINY, "depth": 6, "prompt_blocks": 2})
    assert list(cfg.prompt_block_indices) == [2, 3]
    net = build_vit(**{**TINY, "depth": 6, "prompt_blocks": 2})
    with_prompt = [i for i, block in enumerate(net.blocks) if hasattr(block, "prompt_attn")]
    assert with_prompt == [2, 3]
    with pytest.raises(ValueError, match="prompt_blocks"):
        ViTConfig(depth=2, prompt_blocks=3)


def test_no_prompt_ablation_ignores_the_prompt():
    torch.manual_seed(1)
    net = randomise_head(build_vit(**{**TINY, "use_prompt": False})).eval()
    assert not any(k.startswith("prompt_encoder") or ".prompt_attn." in k for k in net.state_dict())
    query = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(net(query), net(query, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)))


def test_size_rules_raise_clear_errors():
    net = build_vit(**TINY)
    with pytest.raises(ValueError, match="multiples of 8 \\(whole patches\\)"):
        net(torch.rand(1, 3, 20, 24), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="prompt H and W must be multiples of 8"):
        net(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 12, 16), torch.rand(1, 3, 12, 16))
    with pytest.raises(ValueError, match="needs prompt_input"):
        net(torch.rand(1, 3, 16, 16))


def test_position_code_is_the_2d_sine_cosine_formula():
    code = sincos_position_code(3, 5, 8)
    assert code.shape == (15, 8)
    # token (row 2, column 4): x = 4, y = 2; frequencies 1 and 1/100 for a quarter of 2 dims
    omega = [1.0, 1.0 / 100.0]
    expected = [math.sin(4 * w) for w in omega] + [math.cos(4 * w) for w in omega] \
        + [math.sin(2 * w) for w in omega] + [math.cos(2 * w) for w in omega]
    torch.testing.assert_close(code[2 * 5 + 4], torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_trains_and_reaches_every_parameter():
    torch.manual_seed(2)
    net = build_vit(**TINY)
    g = torch.Generator().manual_seed(0)
    query = torch.rand(4, 3, 16, 16, generator=g)
    target = 1.0 - query  # a task the prompt pair shows
    p_in = torch.rand(4, 3, 16, 16, generator=g)
    p_out = 1.0 - p_in
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        loss = F.l1_loss(net(query, p_in, p_out), target)
        optimizer.zero_grad()
        loss.backward()
        if step == 1:  # after one update the zero head no longer blocks the gradients behind it
            missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not missing, missing
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_checkpoint_generalist_pads_to_the_patch_size(tmp_path):
    torch.manual_seed(3)
    net = randomise_head(build_vit(**TINY))
    folder = tmp_path / "vit"
    folder.mkdir()
    write_safetensors(folder / "model.safetensors", net.state_dict())
    (folder / "config.json").write_text(json.dumps({"arch": "vit-vpip", "overrides": TINY, "name": "vit-tiny"}))
    g = CheckpointGeneralist(folder, device="cpu")
    query = torch.rand(1, 3, 20, 30)
    out = g.predict(query, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    assert out.shape == query.shape
    assert "multiple of 8" in g.info()["size"] and g.name == "vit-tiny"
