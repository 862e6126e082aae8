"""scripts/prompt_use.py: the right-vs-wrong prompt probe that shows whether a model uses its prompt."""
from __future__ import annotations

import json

import pytest

from conftest import load_script

torch = pytest.importorskip("torch")

from pipelines.synth import configure as synth_configure  # noqa: E402
from pipelines.synth import read_params as synth_params  # noqa: E402
from pipelines.synth import run_synth  # noqa: E402

prompt_use = load_script("prompt_use")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("prompt_use") / "shards"
    params = synth_params(None)
    params.update({"tasks": "gaussian_noise,canny", "size": 64, "samples_per_shard": 8, "summary": None,
                   "per_task": {}, "counts": {"train": 4, "test": 0, "unseen": 0}})
    run_synth(synth_configure(params, {"out": str(out), "workers": 1}), progress=False)
    return out


def test_wrong_prompts_come_from_another_task():
    assert prompt_use.wrong_prompt_order(["a", "a", "b", "c", "a"]) == [2, 2, 3, 4, 2]
    with pytest.raises(SystemExit, match="one task only"):
        prompt_use.wrong_prompt_order(["a", "a"])


def run(shards, tmp_path, arch: str, overrides: dict) -> dict:
    out = tmp_path / f"{arch}.json"
    argv = ["--params", str(tmp_path / "none.yaml"), "--shards", str(shards), "--arch", arch,
            "--overrides", json.dumps(overrides), "--steps", "2", "--batch", "2", "--size", "64", "--lr", "1e-3",
            "--warmup", "0", "--workers", "0", "--threads", "1", "--every", "1", "--probe", "6", "--json", str(out)]
    assert prompt_use.main(argv) == 0
    return json.loads(out.read_text())


def test_a_model_without_prompt_gains_nothing_from_the_right_one(shards, tmp_path):
    report = run(shards, tmp_path, "xrestormer-s", {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1})
    assert [r["step"] for r in report["rows"]] == [0, 1, 2] and report["stop"] == 2
    for r in report["rows"]:
        assert r["gain"] == 0 and r["l1_right"] == r["l1_wrong"] and r["token_spread"] is None, r
        assert r["l1_identity"] > 0
    assert report["rows"][0]["loss"] is None and report["rows"][1]["loss"] > 0


def test_genlv_answers_another_prompt_differently_and_its_tokens_spread(shards, tmp_path):
    report = run(shards, tmp_path, "genlv-tiny", {})
    first = report["rows"][0]
    assert first["l1_wrong"] != first["l1_right"] and first["token_spread"] > 0.05, first
    assert report["config"]["arch"] == "genlv-tiny" and report["config"]["lr"] == 1e-3
