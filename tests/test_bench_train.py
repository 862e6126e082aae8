"""benchmarks/bench_train.py and profile_step.py on the CPU: figures written, options honoured."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(BENCHMARKS))
    import bench_train
    import profile_step

    threads = torch.get_num_threads()  # bench_train --threads sets it process-wide
    yield bench_train, profile_step
    torch.set_num_threads(threads)
    sys.path.remove(str(BENCHMARKS))


def test_bench_train_writes_a_row_per_batch_with_the_options_it_ran(scripts, tmp_path):
    bench_train, _ = scripts
    out = tmp_path / "bench.json"
    result = bench_train.main(["--arch", "genlv-tiny", "--size", "32", "--batch", "1,2", "--steps", "1",
                               "--warmup", "1", "--threads", "1", "--channels-last", "--checkpointing",
                               "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert [r["batch"] for r in saved["rows"]] == [1, 2]
    assert all(r["samples_per_s"] > 0 and not r["oom"] for r in saved["rows"])
    assert saved["channels_last"] and saved["checkpointing"] and saved["compile"] == ""
    assert saved["forward_gflops_per_sample"] > 0 and saved["inference_ms_b1"] > 0
    assert saved["inference_method"] == "eager"  # CUDA graphs only on CUDA
    assert "CPU" in saved["device"]
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_bench_train_can_skip_inference_and_trace_each_step(scripts, tmp_path, capsys):
    bench_train, _ = scripts
    result = bench_train.main(["--arch", "genlv-tiny", "--size", "32", "--batch", "1", "--steps", "2",
                               "--warmup", "1", "--threads", "1", "--no-inference", "--trace",
                               "--json", str(tmp_path / "b.json")])
    assert "inference_ms_b1" not in result and len(result["rows"]) == 1
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  batch 1:")]
    assert [re.sub(r" [0-9.]+ s.*$", "", line) for line in lines] == [
        "batch 1: model built in", "batch 1: warm-up step 1", "batch 1: step 1", "batch 1: step 2"]


def test_profile_step_lists_operators_by_time(scripts, tmp_path):
    _, profile_step = scripts
    out = tmp_path / "profile.txt"
    text = profile_step.main(["--arch", "genlv-tiny", "--size", "32", "--batch", "1", "--warmup", "1",
                              "--steps", "1", "--rows", "5", "--out", str(out)])
    assert out.read_text() == text
    compact = text.split("\n\n")[0].splitlines()
    assert compact[1].split() == ["self", "ms", "share", "calls", "operator"]
    times = [float(line.split()[0]) for line in compact[2:7]]
    assert len(times) == 5 and times == sorted(times, reverse=True) and times[0] > 0
    assert "total self CPU time" in compact[-1]
