"""Training objectives of the baselines (model.objectives): losses, masks, the size rule of the
trainer, and `llvbench train` -> checkpoint -> bench for promptgip-s, painter-s and promptir-s."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bench  # noqa: E402
import model  # noqa: E402
from model import objectives  # noqa: E402
from model.painter import painter_loss  # noqa: E402
from model.train import Trainer, TrainConfig, network_overrides, train  # noqa: E402

from test_train import loss_curve, make_config, one_thread, shards  # noqa: E402,F401 - shared fixtures

SIZE = 32
# The smallest configs of each family (CPU-fast); the same dicts go to `--override` below.
TINY = {
    "promptgip-s": dict(embed_dim=32, num_heads=2, depth=1, decoder_embed_dim=16, decoder_depth=1,
                        decoder_num_heads=2, head_nf=8),
    "painter-s": dict(embed_dim=32, depth=2, num_heads=2, merge_index=0, out_indices=[0, 1], decoder_embed_dim=8),
    "promptir-s": dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, prompt_dims=[8, 16, 32]),
}
SIZED = {"promptgip-s": {"img_size": SIZE}, "painter-s": {"img_size": [2 * SIZE, SIZE]}, "promptir-s": {}}
EXPECTED_OBJECTIVE = {"promptgip-s": "promptgip", "painter-s": "painter", "promptir-s": "l1"}


def tiny(arch: str, **changes):
    torch.manual_seed(0)
    return model.build(arch, **{**TINY[arch], **SIZED[arch], **changes})


def images(n: int = 4, batch: int = 2, size: int = SIZE, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 3, size, size, generator=g) for _ in range(n)]


# ----------------------------------------------------------------------------- objectives

@pytest.mark.parametrize("arch", list(TINY))
def test_each_objective_gives_a_finite_loss_that_decreases_on_a_fixed_batch(arch, one_thread):
    net = tiny(arch)
    objective = objectives.objective_for(net)
    assert objective.name == EXPECTED_OBJECTIVE[arch]
    batch = images()
    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-3)
    losses = []
    for _ in range(8):
        loss, output = objective.loss(net, *batch, generator=torch.Generator().manual_seed(7))  # same masks
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert output.shape == batch[0].shape
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


def test_masked_patch_mse_counts_only_masked_patches():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 6, 12, generator=g), torch.rand(2, 6, 12, generator=g)
    masked = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    loss = objectives.masked_patch_mse(pred, target, masked)
    expected = ((pred - target) ** 2).mean(-1)[masked].mean()
    torch.testing.assert_close(loss, expected)
    changed = target.clone()
    changed[~masked] = 5.0  # every visible patch of the target
    torch.testing.assert_close(objectives.masked_patch_mse(pred, changed, masked), loss)
    changed[0, 0] = 5.0     # one hidden patch
    assert objectives.masked_patch_mse(pred, changed, masked) > loss + 1.0


def test_painter_loss_counts_only_masked_target_patches():
    g = torch.Generator().manual_seed(0)
    pred, tgts = torch.randn(2, 3, 64, 32, generator=g), torch.randn(2, 3, 64, 32, generator=g)
    mask = objectives.painter_masks(2, (4, 2), torch.Generator().manual_seed(3))
    pixels = mask.view(2, 1, 4, 2, 1, 1).expand(2, 1, 4, 2, 16, 16).permute(0, 1, 2, 4, 3, 5).reshape(2, 1, 64, 32)
    loss = painter_loss(pred, tgts, mask, torch.ones_like(tgts))
    changed = torch.where(pixels, tgts, tgts + 0.5)  # brighter visible area: not black, so nothing is ignored
    torch.testing.assert_close(painter_loss(pred, changed, mask, torch.ones_like(tgts)), loss)
    changed = torch.where(pixels, tgts + 2.0, tgts)
    assert painter_loss(pred, changed, mask, torch.ones_like(tgts)) > loss + 0.5


def test_hidden_target_tokens_never_reach_the_network():
    batch = images()
    prompt_input, prompt_target, query, target = batch
    net = tiny("promptgip-s").eval()
    masked = objectives.promptgip_masks(2, net.num_patches, torch.Generator().manual_seed(1))
    hidden = masked[:, net.num_patches:].view(2, 1, 2, 2, 1, 1).expand(2, 1, 2, 2, 16, 16)
    hidden = hidden.permute(0, 1, 2, 4, 3, 5).reshape(2, 1, SIZE, SIZE)
    with torch.no_grad():
        first = net(query, prompt_input, prompt_target, answer=target, masked=masked)
        second = net(query, prompt_input, prompt_target, answer=torch.where(hidden, 1 - target, target), masked=masked)
        for a, b in zip(first, second):
            torch.testing.assert_close(a, b)
        # With the inference mask the training pass is the inference pass.
        inference = objectives.promptgip_masks(2, net.num_patches, None)
        _, _, answer = net(query, prompt_input, prompt_target, answer=target, masked=inference)
        torch.testing.assert_close(answer, net(query, prompt_input, prompt_target), rtol=1e-5, atol=1e-6)

    painter = tiny("painter-s").eval()
    imgs, tgts = objectives.painter_canvases(query, prompt_input, prompt_target, target)
    mask = objectives.painter_masks(2, painter.grid, torch.Generator().manual_seed(2))
    pixels = mask.view(2, 1, 4, 2, 1, 1).expand(2, 1, 4, 2, 16, 16).permute(0, 1, 2, 4, 3, 5).reshape(2, 1, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(painter(imgs, tgts, mask), painter(imgs, torch.where(pixels, -tgts, tgts), mask))


def test_promptgip_masks_hide_the_official_share_of_prompt_target_and_answer_tokens():
    masks = objectives.promptgip_masks(64, 16, torch.Generator().manual_seed(0))
    assert masks.shape == (64, 32) and masks.dtype == torch.bool
    assert (masks.sum(1) == 32 - int(32 * 0.25)).all()   # 24 of 32 hidden in every sample
    assert masks[:, :16].any() and not masks[:, :16].all()  # spread over both images
    assert len({tuple(m.tolist()) for m in masks}) == 64
    again = objectives.promptgip_masks(64, 16, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    inference = objectives.promptgip_masks(2, 16, None)
    assert not inference[:, :16].any() and inference[:, 16:].all()


def test_painter_masks_hide_half_the_canvas_in_blocks_or_the_bottom_half():
    g = torch.Generator().manual_seed(0)
    masks = objectives.painter_masks(300, (8, 4), g)
    assert masks.shape == (300, 32) and (masks.sum(1) == 16).all()
    bottom = torch.zeros(8, 4, dtype=torch.bool)
    bottom[4:] = True
    halves = (masks == bottom.flatten()).all(1).float().mean().item()
    assert 0.05 < halves < 0.2  # half_mask_ratio 0.1 (a block mask is rarely exactly the bottom half)
    assert masks[:, :16].any(1).float().mean() > 0.5  # block masks reach the prompt half too
    big = objectives.painter_masks(2, (56, 28), g)
    assert (big.sum(1) == 784).all()
    assert torch.equal(objectives.painter_masks(1, (56, 28), None)[0], torch.arange(1568) >= 784)


# ----------------------------------------------------------------------------- trainer: size rule, masks

def test_fixed_size_networks_are_built_at_the_crop_size(tmp_path):
    for arch, expected in (("promptgip-s", {"img_size": 64}), ("painter-s", {"img_size": [128, 64]}),
                           ("promptir-s", {})):
        config = TrainConfig(arch=arch, size=64, overrides={"dim": 16} if arch == "promptir-s" else {"embed_dim": 64})
        assert network_overrides(config) == {**config.overrides, **expected}
    with pytest.raises(ValueError, match=r"--size 40: promptgip-s .*multiple of .*16.*--size 32"):
        network_overrides(TrainConfig(arch="promptgip-s", size=40))
    with pytest.raises(ValueError, match=r"--size 40: painter-s .*--size 32"):
        network_overrides(TrainConfig(arch="painter-s", size=40))
    with pytest.raises(ValueError, match=r"--override img_size=256 contradicts --size 64"):
        network_overrides(TrainConfig(arch="promptgip-s", size=64, overrides={"img_size": 256}))


def test_masks_depend_on_seed_step_and_rank_only(shards, tmp_path):
    config = TrainConfig(arch="promptgip-s", overrides=TINY["promptgip-s"], size=SIZE, shards=str(shards),
                         out=str(tmp_path), seed=3)
    first = Trainer(tiny("promptgip-s"), config, torch.device("cpu"))
    second = Trainer(tiny("promptgip-s"), config, torch.device("cpu"))
    draw = lambda trainer, step: torch.rand(8, generator=trainer.masks_for(step))  # noqa: E731
    assert torch.equal(draw(first, 5), draw(second, 5))
    assert not torch.equal(draw(first, 5), draw(first, 6))
    second.dist.rank = 1
    assert not torch.equal(draw(first, 5), draw(second, 5))


def test_resume_redraws_the_same_masks(shards, tmp_path, one_thread):
    settings = dict(arch="painter-s", overrides=TINY["painter-s"], steps=4, ckpt_every=2, ema=0.0, log_every=1)
    full = tmp_path / "full"
    train(make_config(shards, full, **settings), progress=False)
    split = tmp_path / "split"
    train(make_config(shards, split, stop_at=2, **settings), progress=False)
    train(make_config(shards, split, resume=True, **settings), progress=False)
    np.testing.assert_allclose(loss_curve(split)[1], loss_curve(full)[1], rtol=1e-5)
    assert len(set(loss_curve(full)[1].round(6))) > 1


# ----------------------------------------------------------------------------- llvbench train -> bench

@pytest.mark.parametrize("arch", list(TINY))
def test_llvbench_train_then_the_bench_evaluates_the_checkpoint(arch, shards, tmp_path):
    from pipelines.commands import train as command

    params = tmp_path / "params.yaml"
    params.write_text("train:\n  threads: 1\n")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / arch
    argv = ["--params", str(params), "--arch", arch, "--shards", str(shards), "--steps", "3", "--batch", "2",
            "--size", str(SIZE), "--warmup", "1", "--log-every", "1", "--out", str(out), "--no-progress"]
    for key, value in TINY[arch].items():
        argv += ["--override", f"{key}={json.dumps(value)}"]
    assert command.run(parser.parse_args(argv)) == 0

    config = json.loads((out / "config.json").read_text())
    assert config["objective"] == EXPECTED_OBJECTIVE[arch]
    assert config["overrides"] == {**TINY[arch], **SIZED[arch]}   # what the bench rebuilds
    assert config["train"]["overrides"] == TINY[arch]              # what --resume compares
    steps, losses = loss_curve(out)
    assert steps == [1, 2, 3] and np.isfinite(losses).all()

    generalist = bench.load_generalist("checkpoint", checkpoint=str(out), device="cpu")
    query = torch.rand(1, 3, 40, 48)
    output = generalist.predict(query, torch.rand(1, 3, 36, 36), torch.rand(1, 3, 36, 36))
    assert output.shape == query.shape and torch.isfinite(output).all()
    info = generalist.info()
    assert info["arch"] == arch
    if arch == "promptir-s":
        assert "multiple of 8" in info["size"]
    else:
        assert f"resized to {SIZE}×{SIZE}" in info["size"] and "masked" in info["interface"]


def test_imagenet_constants_first_made_during_inference_still_train():
    from model.objectives import imagenet_denormalize, imagenet_stats

    imagenet_stats.cache_clear()
    with torch.inference_mode():  # an evaluation asks for them first ...
        imagenet_denormalize(torch.zeros(1, 3, 2, 2))
    x = torch.zeros(1, 3, 2, 2, requires_grad=True)
    imagenet_denormalize(x).sum().backward()  # ... then a training step backpropagates through them
    assert x.grad is not None
