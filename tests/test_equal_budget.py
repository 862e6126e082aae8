"""scripts/equal_budget.py: its plans build, and the paper's claims are checked on real numbers."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("equal_budget", REPO / "scripts" / "equal_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PLANS = yaml.safe_load((REPO / "scripts" / "equal_budget.yaml").read_text())["plans"]


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_every_model_of_a_plan_builds_at_the_plan_size(plan):
    from model.train import TrainConfig, build_network

    budget = PLANS[plan]["train"]
    names = [m["name"] for m in PLANS[plan]["models"]]
    assert len(names) == len(set(names))
    for entry in PLANS[plan]["models"]:
        config = TrainConfig(arch=entry["arch"], overrides=entry.get("overrides") or {}, size=budget["size"])
        net = build_network(config)
        assert sum(p.numel() for p in net.parameters()) > 0, entry["name"]
    assert {"steps", "batch", "size", "lr"} <= set(budget)


def _leaderboard(tmp_path, rows):
    frame = pd.DataFrame(rows, columns=["model", "task", "category", "metric", "mean"])
    frame["higher_is_better"] = frame["metric"] != "mae"
    frame["status"] = "ok"
    frame.to_parquet(tmp_path / "model_task.parquet")
    return tmp_path


def test_claims_are_decided_by_the_per_task_means(script, tmp_path):
    rows = []
    for i, task in enumerate(["gaussian_noise", "jpeg", "haze"]):
        rows += [("genlv-s", task, "restoration", "psnr", 25.0 + i), ("xrestormer-s", task, "restoration", "psnr", 24.0),
                 ("vit-vpip-s", task, "restoration", "psnr", 20.0), ("vit-s", task, "restoration", "psnr", 21.0)]
    rows += [("genlv-s", "canny", "edge", "mae", 0.10), ("xrestormer-s", "canny", "edge", "mae", 0.05),
             ("genlv-s", "canny", "edge", "psnr", 30.0)]  # an edge task's PSNR is not its headline
    table = "\n".join(script.claims_table(_leaderboard(tmp_path, rows)))
    assert "| VPIP beats the same backbone without prompt (GenLV vs X-Restormer) | 3 | 3/3 | +2.00 dB" in table
    assert "| VPIP beats the same backbone without prompt (ViT-VPIP vs ViT) | 3 | 0/3 | -1.00 dB (PSNR tasks) | no |" \
        in table
    assert "GenLV beats PromptGIP" not in table  # no PromptGIP in this run: no claim row
    assert script.family("vit-vpip-tiny") == "vit-vpip" and script.family("vit-tiny") == "vit"


def test_commands_are_shown_relative_to_the_repository(script):
    import sys

    line = script.shown([sys.executable, "-m", "pipelines.cli", "train", "--out", f"{REPO}/out/x", "--name", "a b"])
    assert line == "python -m pipelines.cli train --out out/x --name 'a b'"
