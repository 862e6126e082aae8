"""benchmarks/device_session.sh, the script a GPU lease runs, in its CPU smoke mode (SMOKE=1).

Leases are rare and short, so the script must work the first time: this runs its genlv-s stage with
the knobs the next lease plans to use (task weights, identity pairs, one-colour images, a two-part
train source) at a size two CPU cores finish in well under a minute.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_device_session_smoke_trains_evaluates_and_exports_genlv_s(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    source = "deadleaves:tint=0.25,exposure=0.6,levels=0.1,blur=1,rmin=0.05"
    env = dict(os.environ, OUT=str(out), WORK=str(work), SMOKE="1", STAGES="genlv-s", PY=sys.executable,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               TASK_WEIGHTS="scripts/genlv-s-task-weights.json", IDENTITY_RATE="0.25", ONE_COLOUR="8",
               TRAIN_SOURCE=f"{source}+{source},texture=0.6,texamp=0.2", DEADLINE_S="300")
    run = subprocess.run(["bash", "benchmarks/device_session.sh"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "] done" in log

    # the weights file was read and cut down to the smoke's two tasks, not dropped
    assert set(json.loads((work / "smoke-task-weights.json").read_text())) == {"gaussian_noise", "canny"}
    assert (out / "genlv-s" / "model.safetensors").stat().st_size > 0
    assert json.loads((out / "genlv-s" / "config.json").read_text())["name"] == "genlv-s"
    with tarfile.open(out / "figures.tar.gz") as tar:
        summary = json.load(tar.extractfile("figures/train-summary.json"))
    assert summary["status"] == "completed"
