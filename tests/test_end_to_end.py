"""The whole user journey through the command line, small: synth -> verify -> train -> eval -> leaderboard -> report.

Two training tasks and one held-out task, a few 64 px samples, genlv-tiny for a few steps. It runs
the same code the DVC stages run, so a broken hand-off between stages fails here in CI.
"""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("src", "href") and value and not value.startswith(("#", "http", "mailto:")):
                self.refs.append(value)


def _run(*argv) -> None:
    assert main([str(a) for a in argv]) == 0, f"llvbench {' '.join(map(str, argv))} failed"


def test_cli_end_to_end(tmp_path: Path):
    shards, ckpt, results, board, report = (tmp_path / n for n in ("shards", "pipeline", "results", "board",
                                                                  "report"))
    empty_params = tmp_path / "params.yaml"  # keep the repository's params.yaml out of the test
    empty_params.write_text("{}\n")

    _run("synth", "--params", empty_params, "--out", shards, "--tasks", "gaussian_noise,canny,sepia",
         "--n-train", 6, "--n-test", 4, "--n-unseen", 4, "--size", 64, "--workers", 1, "--no-progress",
         "--summary", tmp_path / "synth.json")
    _run("verify", shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    assert set(manifest["tasks"]) == {"gaussian_noise", "canny", "sepia"}

    _run("train", "--params", empty_params, "--arch", "genlv-tiny", "--shards", shards, "--steps", 3,
         "--batch", 2, "--size", 32, "--workers", 0, "--out", ckpt, "--name", "genlv-tiny", "--no-progress",
         "--metrics", tmp_path / "train.csv", "--summary", tmp_path / "train.json")
    summary = json.loads((tmp_path / "train.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 3
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()

    _run("eval", "--model", "identity", "--model", "prompt-target", "--shards", shards,
         "--tracks", "main,robustness", "--robustness-prompts", 2, "--out", results)
    _run("eval", "--model", "checkpoint", "--checkpoint", ckpt, "--shards", shards, "--tracks", "main",
         "--out", results)
    _run("eval", "--model", "identity", "--split", "unseen", "--shards", shards, "--out", results)
    _run("leaderboard", results, "--out", board)
    run = json.loads((results / "identity" / "run.json").read_text())  # the latest run, and the other split's
    assert run["split"] == "unseen" and {u["unit"] for u in run["units"]} == {"sepia"}
    tested = run["other_splits"]["test"]
    assert {(u["track"], u["unit"]) for u in tested["units"]} >= {("main", "gaussian_noise"), ("robustness", "canny")}

    model_task = pd.read_parquet(board / "model_task.parquet")  # the name comes from config.json, not the folder
    assert {"identity", "prompt-target", "genlv-tiny"} <= set(model_task["model"])
    assert set(model_task["task"]) == {"gaussian_noise", "canny", "sepia"}
    baselines = model_task[model_task["model"] != "genlv-tiny"]
    assert (baselines["status"] == "ok").all() and baselines["mean"].notna().all()
    # A 3-step model may still output far outside [0, 1]: then it is recorded as failed with the
    # reason, never clipped into a score. Either way every task has its row.
    tiny = model_task[model_task["model"] == "genlv-tiny"]
    assert set(tiny["task"]) == {"gaussian_noise", "canny"}
    assert ((tiny["status"] == "ok") & tiny["mean"].notna() | (tiny["status"] == "failed")).all()
    table = (board / "leaderboard.md").read_text()
    assert "Table 1" in table and "Table 3" in table and "Unseen tasks" in table

    _run("report", "--results", results, "--out", report, "--train-logs", tmp_path / "train.csv")
    parser = _Refs()
    parser.feed((report / "index.html").read_text())
    assert parser.refs, "the report references no images"
    missing = [r for r in parser.refs if not (report / r).exists()]
    assert not missing, f"report references missing files: {missing[:5]}"
