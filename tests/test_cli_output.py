"""The llvbench command's output side: a reader that leaves early (`llvbench tasks | head`)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_reader_that_closes_the_pipe_stops_the_command_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "tasks", "--markdown"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command writes anything: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
