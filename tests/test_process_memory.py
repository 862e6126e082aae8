"""pipelines.memory: the entry points make glibc reuse freed memory instead of faulting big blocks in again."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _is_glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version
    except (OSError, AttributeError):
        return False
    return True


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not _is_glibc(),
                                reason="the setting is glibc's; elsewhere it is a no-op")

# A few elementwise ops on 36 MiB torch tensors (over glibc's largest mmap threshold, 32 MiB; a
# 128-px eval batch's activations reach 66 MiB), repeated; the page faults of the last rounds, once
# malloc's free lists have settled. (Not numpy: it asks for transparent huge pages, 512 times fewer
# faults.)
PROBE = """
import json, resource
import torch
SETUP
def ops():
    a = torch.empty(9 * 2**20)
    a.fill_(1.0)
    b = a * 2
    c = b + a
    del a, b, c
for _ in range(12):
    ops()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    ops()
print(json.dumps({"applied": APPLIED, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""
PAGES = 36 * 2**20 // 4096  # one 36 MiB block in 4 KiB pages


def probe(setup: str, applied: str, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LLVBENCH_SYSTEM_MALLOC"}
    env.update(env_extra or {}, PYTHONPATH=str(ROOT))
    code = PROBE.replace("SETUP", setup).replace("APPLIED", applied)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


REUSE = "from pipelines.memory import reuse_freed_memory\napplied = reuse_freed_memory()"


def test_without_the_setting_every_big_block_is_faulted_in_again():
    # The control: shows the probe sees the cost the setting removes.
    result = probe("", "None")
    assert result["faults"] > 2 * PAGES


def test_reuse_freed_memory_stops_the_faults():
    result = probe(REUSE, "applied")
    assert result["applied"] is True
    assert result["faults"] < PAGES // 8


def test_the_opt_out_leaves_malloc_as_it_was():
    result = probe(REUSE, "applied", {"LLVBENCH_SYSTEM_MALLOC": "1"})
    assert result["applied"] is False
    assert result["faults"] > 2 * PAGES


@pytest.mark.parametrize("entry", [
    "from pipelines.cli import main\nmain(['tasks'])",
    "from pipelines.params import run_stage_main\n"
    "run_stage_main('probe', 'probe', 'none.yaml', lambda f, required: {}, lambda p, f: None, [])",
])
def test_the_llvbench_command_and_the_dvc_stages_apply_it(entry):
    setup = "import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n    " + entry.replace("\n", "\n    ")
    result = probe(setup, "None")
    assert result["faults"] < PAGES // 8
