"""The shipped genlv-s (checkpoints/genlv-s): small bf16 safetensors with a model card, loaded by the
bench, trained (it restores a noisy photo far better than its untrained initialisation), and in
the default pipeline's evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

import bench  # noqa: E402
import taskgen  # noqa: E402
from bench.metrics import psnr  # noqa: E402
from bench.protocol import images_to_tensor, quantize_tensor  # noqa: E402
from model.checkpoints import read_safetensors  # noqa: E402
from model.objectives import predict  # noqa: E402
from model.train import TrainConfig, build_network  # noqa: E402
from taskgen.sources import PhotoSource  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "genlv-s"
SIZE = 64


def test_shipped_files_are_small_bf16_safetensors_with_a_model_card():
    weights = SHIPPED / "model.safetensors"
    assert weights.stat().st_size <= 16 * 2**20  # issue #10: at most 16 MiB
    state, metadata = read_safetensors(weights)
    assert metadata["llvbench_arch"] == "genlv-s"
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.bfloat16}
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["arch"] == "genlv-s" and config["name"] == "genlv-s" and config["stored_dtype"] == "bfloat16"
    card = (SHIPPED / "README.md").read_text()
    assert "identity" in card and "scripts/model_card.py" in card and "export_checkpoint.py" in card


def test_the_default_pipeline_evaluates_it():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    entries = [e for e in params["eval"]["models"] if isinstance(e, dict)]
    assert any(e.get("checkpoint") == "checkpoints/genlv-s" for e in entries)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    # new weights rerun the evaluation (an edit of the model card does not)
    assert {"checkpoints/genlv-s/config.json", "checkpoints/genlv-s/model.safetensors"} <= set(stages["eval"]["deps"])


def _pair(task, index: int):
    """(input, target) of one photo as uint8 HWC arrays."""
    rng = np.random.default_rng(index)
    image = PhotoSource().sample(index, SIZE, rng).image
    model_input, target, _ = taskgen.get_task(task).generate(image, rng)
    return model_input, target


def test_trained_weights_denoise_a_photo_far_better_than_untrained_ones():
    prompt_input, prompt_target = (images_to_tensor([a]) for a in _pair("gaussian_noise", 0))
    query, target = _pair("gaussian_noise", 1)
    query = images_to_tensor([query])
    shipped = bench.load_generalist("checkpoint", checkpoint=str(SHIPPED), device="cpu")
    untrained = build_network(TrainConfig(arch="genlv-s")).eval()
    with torch.no_grad():
        ours = shipped.predict(query, prompt_input, prompt_target)
        initial = predict(untrained, query, prompt_input, prompt_target)
    ours_db, initial_db = (float(psnr(quantize_tensor(out)[0], target)) for out in (ours, initial))
    assert ours_db > initial_db + 5, (ours_db, initial_db)
