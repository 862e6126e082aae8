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
    assert all(r["compiled_graphs"] == 0 for r in saved["rows"])  # eager builds no graph
    assert saved["channels_last"] and saved["checkpointing"] and saved["compile"] == ""
    assert saved["forward_gflops_per_sample"] > 0 and saved["inference_ms_b1"] > 0
    assert saved["inference_method"] == "eager"  # CUDA graphs only on CUDA
    assert "CPU" in saved["device"]
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
    # the CPU has no known peak: MFU is null, not a fraction of a GPU's peak
    assert saved["peak_tflops"] is None and all(r["mfu"] is None for r in saved["rows"])


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
    assert compact[1].split() == ["self", "ms/step", "share", "calls/step", "operator"]
    times = [float(line.split()[0]) for line in compact[2:7]]
    assert len(times) == 5 and times == sorted(times, reverse=True) and times[0] > 0
    assert "total self CPU time per step" in compact[-1]


def test_mfu_is_against_the_devices_known_peak_or_n_a(scripts, tmp_path, capsys):
    bench_train, _ = scripts
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert bench_train.known_peak_tflops(cuda, "NVIDIA H200") == 989.0
    assert bench_train.known_peak_tflops(cuda, "NVIDIA H100 80GB HBM3") == 989.0
    assert bench_train.known_peak_tflops(cuda, "NVIDIA H100 PCIe") == 756.0
    assert bench_train.known_peak_tflops(cuda, "Tesla T4") is None  # unlisted GPU: no guess
    assert bench_train.known_peak_tflops(cpu, "AMD EPYC (CPU), 2 torch thread(s)") is None
    assert bench_train.mfu_text(None) == "n/a" and bench_train.mfu_text(0.1234) == "12.34%"
    argv = ["--arch", "genlv-tiny", "--size", "32", "--batch", "1", "--steps", "1", "--warmup", "0",
            "--threads", "1", "--no-inference"]
    bench_train.main(argv + ["--json", str(tmp_path / "cpu.json")])
    row = [line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["1"]]
    assert len(row) == 1 and row[0].split()[5] == "n/a"
    given = bench_train.main(argv + ["--peak-tflops", "0.001", "--json", str(tmp_path / "given.json")])
    assert given["peak_tflops"] == 0.001 and given["rows"][0]["mfu"] > 0  # an explicit peak is used
    assert "%" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--batch", "0"], "--batch '0': every batch size must be >= 1"),
    (["--batch", "1,two"], "--batch '1,two': expected a comma list of whole numbers"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["--arch", "zzz"], "--arch zzz: unknown architecture; known: genlv-base, "),
    (["--arch", "genlv-tin"], "--arch genlv-tin: unknown architecture; did you mean 'genlv-tiny'?"),
    (["--device", "cpu:1"], "--device cpu:1: torch has one CPU device (cpu or cpu:0)"),
    (["--compile", "fast"], "argument --compile: invalid choice: 'fast'"),
    (["--size", "50"], "--size 50: genlv-tiny needs a size that is a multiple of 32"),
    (["--size", "0"], "--size must be >= 1, got 0"),
    (["--peak-tflops", "0"], "--peak-tflops must be > 0"),
    (["--device", "gpu0"], "--device 'gpu0' is not a device"),
])
def test_bench_train_bad_options_are_one_line_errors(scripts, tmp_path, capsys, argv, message):
    bench_train, _ = scripts
    out = tmp_path / "b.json"
    with pytest.raises(SystemExit) as exit_info:
        bench_train.main(["--arch", "genlv-tiny", "--size", "32", "--batch", "1", "--steps", "1", "--warmup", "0",
                          "--threads", "1", "--no-inference", "--json", str(out), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()  # nothing measured


def test_bench_train_reports_cpu_settings_as_off_and_takes_off_like_llvbench_train(scripts, tmp_path, capsys):
    # cuDNN autotuning exists only on CUDA: off in the printout, null in the JSON, on the CPU;
    # --compile off / --checkpointing off are accepted as llvbench train accepts them.
    bench_train, _ = scripts
    out = tmp_path / "b.json"
    result = bench_train.main(["--arch", "genlv-tiny", "--size", "32", "--batch", "1", "--steps", "1",
                               "--warmup", "0", "--threads", "1", "--compile", "off", "--checkpointing", "off",
                               "--json", str(out)])
    summary = capsys.readouterr().out.splitlines()[0]
    assert "compile=off," in summary and "checkpointing=off," in summary
    assert summary.endswith("cuDNN autotuning=off")
    saved = json.loads(out.read_text())
    assert saved["cudnn_autotune"] is None and result["cudnn_autotune"] is None
    assert saved["compile"] == "" and saved["checkpointing"] == ""  # "off" stored as before: empty
    assert saved["inference_method"] == "eager"  # "off" is not a compile mode


def test_cuda_settings_are_training_s_and_untouched_on_the_cpu(scripts):
    bench_train, _ = scripts
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.benchmark = cudnn.allow_tf32 = matmul.allow_tf32 = False
        assert bench_train.apply_cuda_settings(torch.device("cpu"), autotune=True) is None
        assert not cudnn.benchmark and not cudnn.allow_tf32 and not matmul.allow_tf32
        # only the flags are set, so this runs on a CPU build too
        assert bench_train.apply_cuda_settings(torch.device("cuda", 0), autotune=True) is True
        assert cudnn.benchmark and cudnn.allow_tf32 and matmul.allow_tf32
        assert bench_train.apply_cuda_settings(torch.device("cuda", 0), autotune=False, tf32=False) is False
        assert not cudnn.benchmark and not cudnn.allow_tf32 and not matmul.allow_tf32
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = before


def test_bench_train_help_says_where_the_json_goes(scripts, capsys):
    bench_train, _ = scripts
    with pytest.raises(SystemExit):
        bench_train.main(["--help"])
    assert "bench-train-ARCH-SIZE.json in the current directory" in " ".join(capsys.readouterr().out.split())


def test_profile_step_times_are_per_step(scripts):
    _, profile_step = scripts

    class Event:
        def __init__(self, key, us, count):
            self.key, self.self_cpu_time_total, self.count = key, us, count

    class Profile:
        def key_averages(self):
            return [Event("aten::mm", 3000.0, 4), Event("aten::add", 1000.0, 2)]

    lines = profile_step.compact_table(Profile(), torch.device("cpu"), rows=5, steps=2).splitlines()
    assert lines[0].split() == ["self", "ms/step", "share", "calls/step", "operator"]
    assert lines[1].split() == ["1.500", "75.0%", "2", "aten::mm"]  # 3 ms over 2 steps, 4 calls over 2
    assert lines[2].split() == ["0.500", "25.0%", "1", "aten::add"]
    assert lines[-1].split()[:2] == ["2.000", "total"] and "per step" in lines[-1]


def test_profile_step_defaults_to_training_s_cuda_settings(scripts, monkeypatch, tmp_path):
    _, profile_step = scripts
    args = profile_step.build_parser().parse_args([])
    assert args.cudnn_benchmark and args.tf32  # as model.train._train sets them
    off = profile_step.build_parser().parse_args(["--no-cudnn-benchmark", "--no-tf32"])
    assert not off.cudnn_benchmark and not off.tf32
    assert not profile_step.build_parser().parse_args(["--no-autotune"]).cudnn_benchmark  # bench_train's name
    calls = []
    monkeypatch.setattr(profile_step, "apply_cuda_settings",
                        lambda device, **settings: calls.append(settings) or None)
    profile_step.main(["--arch", "genlv-tiny", "--size", "32", "--batch", "1", "--warmup", "0", "--steps", "1",
                       "--rows", "1", "--threads", "1"])
    assert calls == [{"autotune": True, "tf32": True}]


def test_profile_step_takes_bench_train_s_compile_ema_and_threads(scripts):
    _, profile_step = scripts
    text = profile_step.main(["--arch", "genlv-tiny", "--size", "32", "--batch", "1", "--warmup", "0", "--steps", "1",
                              "--rows", "1", "--threads", "1", "--compile", "off", "--ema", "0.9",
                              "--checkpointing", "off"])
    header = text.splitlines()[0]
    assert "compile=off," in header and "ema=0.9," in header and "checkpointing=off," in header
    assert "cuDNN autotuning=off, TF32=off" in header  # neither exists on the CPU
    assert "1 torch thread(s)" in header


@pytest.mark.parametrize("argv, message", [
    (["--size", "33"], "--size 33: genlv-tiny needs a size that is a multiple of 32"),
    (["--arch", "genlv-tin"], "--arch genlv-tin: unknown architecture; did you mean 'genlv-tiny'?"),
    (["--batch", "0"], "--batch '0': every batch size must be >= 1"),
    (["--batch", "1,2"], "--batch '1,2': profile_step.py profiles one batch size"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--ema", "1"], "--ema is a decay in [0, 1) (0 = off), got 1.0"),
    (["--device", "cpu:1"], "--device cpu:1: torch has one CPU device"),
    (["--rows", "0"], "--rows must be >= 1, got 0"),
    pytest.param(["--device", "cuda"], "CUDA requested (--device cuda) but torch.cuda.is_available() is False",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
])
def test_profile_step_bad_options_are_bench_train_s_one_line_errors(scripts, tmp_path, capsys, argv, message):
    _, profile_step = scripts
    out = tmp_path / "p.txt"
    with pytest.raises(SystemExit) as exit_info:
        profile_step.main(["--arch", "genlv-tiny", "--size", "32", "--batch", "1", "--warmup", "0", "--steps", "1",
                           "--out", str(out), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
