"""Portable CPU kernels for synthesis (pipelines.cpu_paths): the shards' bytes do not depend on which
SIMD features the host has, and each shard entry says which kernels and libraries made it."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

import pytest

from pipelines.cli import command_name
from pipelines.cpu_paths import (MODE_ENV, apply_portable_opencv, portable_environment,
                                 use_portable_cpu_paths)

x86_64_only = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                 reason="the simulated older CPU switches x86 SIMD features off")

TASKS = "retouch,rtv,sepia,local_laplacian"
# This host with fewer SIMD features, as far as each library lets one switch them off. With the
# native kernels (and the pinned library versions) each switch changes these tasks' shards:
#   numpy without its AVX2/FMA kernels (X86_V3)  -> test/retouch (float32 power and exp)
#   OpenBLAS with Sandy Bridge kernels            -> unseen/sepia, train+test/rtv (matrix products)
#   Intel IPP's SSE4.2 code inside OpenCV         -> test/local_laplacian (pyramids)
OLDER_CPU = {"NPY_DISABLE_CPU_FEATURES": "X86_V3", "OPENBLAS_CORETYPE": "Sandybridge",
             "OPENCV_IPP": "sse42", "OPENCV_CPU_DISABLE": "AVX,FP16,AVX2", "OPENCV_LOG_LEVEL": "ERROR"}
SENSITIVE = {"test/retouch-00000.tar", "unseen/sepia-00000.tar", "test/local_laplacian-00000.tar"}
PORTABLE_KERNELS = "x86_64 kernels: numpy baseline, opencv baseline, openblas Nehalem"


def _synth(out, **env) -> dict[str, tuple[str, str]]:
    """``llvbench synth`` in a fresh process (numpy not imported yet); shard path -> (sha256, software)."""
    clean = {k: v for k, v in os.environ.items() if k not in OLDER_CPU and k not in portable_environment("x86_64")}
    # Run in the output's parent: no params.yaml there, so the built-in synthesis defaults apply.
    subprocess.run([sys.executable, "-m", "pipelines.cli", "synth", "--tasks", TASKS, "--out", str(out),
                    "--n-train", "4", "--n-test", "4", "--n-unseen", "4", "--size", "64", "--no-progress",
                    "--summary", ""], env={**clean, **env}, cwd=out.parent, check=True, capture_output=True,
                   text=True)
    manifest = json.loads((out / "manifest.json").read_text())
    return {e["path"]: (e["sha256"], e["software"]) for e in manifest["shards"]}


@x86_64_only
def test_synthesis_writes_the_same_bytes_on_a_cpu_with_fewer_simd_features(tmp_path):
    here = _synth(tmp_path / "here")
    older = _synth(tmp_path / "older", **OLDER_CPU)
    assert {p: sha for p, (sha, _) in here.items()} == {p: sha for p, (sha, _) in older.items()}
    assert {software for _, software in here.values()} == {software for _, software in older.values()}
    software = next(iter(here.values()))[1]
    assert software.endswith(PORTABLE_KERNELS) and software.startswith("numpy ") and "opencv " in software


@x86_64_only
def test_with_native_kernels_the_older_cpu_changes_bytes_and_the_entries_say_so(tmp_path):
    # The control: the simulated CPU does change what the native kernels compute, task by task.
    here = _synth(tmp_path / "here", **{MODE_ENV: "native"})
    older = _synth(tmp_path / "older", **{MODE_ENV: "native"}, **OLDER_CPU)
    changed = {p for p in here if here[p][0] != older[p][0]}
    assert SENSITIVE <= changed, f"shards changed by the older CPU: {sorted(changed)}"
    older_software = next(iter(older.values()))[1]
    assert "numpy baseline" in older_software and "openblas Sandybridge" in older_software
    assert "ipp" in older_software and "SSE4.2 (y8)" in older_software
    assert "numpy X86_V3" in next(iter(here.values()))[1] or "numpy X86_V4" in next(iter(here.values()))[1]


def test_portable_environment_per_architecture():
    x86 = portable_environment("x86_64")
    assert x86 == {MODE_ENV: "portable", "OPENBLAS_NUM_THREADS": "1", "NPY_ENABLE_CPU_FEATURES": "SSE2",
                   "OPENBLAS_CORETYPE": "Nehalem"}
    assert portable_environment("AMD64") == x86
    assert portable_environment("aarch64") == {MODE_ENV: "portable", "OPENBLAS_NUM_THREADS": "1"}


def test_use_portable_cpu_paths_sets_the_variables_unless_native_was_asked_for():
    environ = {"NPY_DISABLE_CPU_FEATURES": "AVX512F", "PATH": "/bin"}
    assert use_portable_cpu_paths(environ)
    # numpy refuses to import with both NPY_ENABLE_ and NPY_DISABLE_CPU_FEATURES set
    assert "NPY_DISABLE_CPU_FEATURES" not in environ and environ["PATH"] == "/bin"
    assert environ[MODE_ENV] == "portable" and environ["OPENBLAS_NUM_THREADS"] == "1"
    native = {MODE_ENV: "Native", "NPY_DISABLE_CPU_FEATURES": "AVX512F"}
    assert not use_portable_cpu_paths(native)
    assert native == {MODE_ENV: "Native", "NPY_DISABLE_CPU_FEATURES": "AVX512F"}


def test_a_process_that_imported_numpy_keeps_its_kernels(monkeypatch):
    # Pinning after numpy's import would give workers other kernels than this process.
    import numpy  # noqa: F401

    monkeypatch.delenv(MODE_ENV, raising=False)
    before = dict(os.environ)
    assert not use_portable_cpu_paths()
    assert dict(os.environ) == before


def test_opencv_is_switched_to_its_baseline_only_in_a_portable_run(monkeypatch):
    import cv2

    monkeypatch.delenv(MODE_ENV, raising=False)
    assert not apply_portable_opencv() and cv2.useOptimized()
    monkeypatch.setenv(MODE_ENV, "portable")
    try:
        assert apply_portable_opencv()
        assert not cv2.useOptimized() and not cv2.ipp.useIPP()
    finally:
        cv2.setUseOptimized(True)  # the rest of the test session runs as before


@pytest.mark.parametrize("argv, name", [(["synth", "--tasks", "jpeg"], "synth"), (["-v", "preview"], "preview"),
                                        (["--verbose", "eval", "x"], "eval"), (["-h"], None), ([], None)])
def test_command_name_is_the_first_word_that_is_not_an_option(argv, name):
    assert command_name(argv) == name


def test_a_shard_made_with_other_software_is_written_again(tmp_path):
    from pipelines.synth import configure, read_params, run_synth
    from taskgen.shards import load_manifest, write_manifest

    params = read_params(None)
    params.update({"tasks": "gaussian_noise", "size": 16, "counts": {"train": 2, "test": 0, "unseen": 0},
                   "per_task": {}})
    config = configure(params, {"out": str(tmp_path / "out"), "summary": ""})
    assert run_synth(config, progress=False)["total"]["reused_pairs"] == 0
    assert run_synth(config, progress=False)["total"]["reused_pairs"] == 2
    manifest = load_manifest(config.out)
    manifest["shards"][0]["software"] = "numpy 1.0; x86_64 kernels: numpy AVX512_SPR"
    write_manifest(config.out, manifest)
    assert run_synth(config, progress=False)["total"]["reused_pairs"] == 0
    assert load_manifest(config.out)["shards"][0]["software"] != "numpy 1.0; x86_64 kernels: numpy AVX512_SPR"


def test_verify_counts_the_shards_of_each_software_line_and_notes_a_mix(tmp_path, capsys):
    from pipelines.commands import verify as verify_cmd
    from pipelines.synth import configure, read_params, run_synth
    from taskgen.shards import UNRECORDED_SOFTWARE, load_manifest, write_manifest

    params = read_params(None)
    params.update({"tasks": "gaussian_noise", "size": 16, "samples_per_shard": 1,
                   "counts": {"train": 3, "test": 0, "unseen": 0}, "per_task": {}})
    config = configure(params, {"out": str(tmp_path), "summary": ""})
    run_synth(config, progress=False)
    here = load_manifest(tmp_path)["shards"][0]["software"]
    args = argparse.Namespace(dir=str(tmp_path), json=False)
    assert verify_cmd.run(args) == 0
    out = capsys.readouterr().out
    assert f"made with {here}: 3 shard(s)" in out and "note:" not in out
    manifest = load_manifest(tmp_path)
    del manifest["shards"][0]["software"]  # a manifest from before the line existed
    write_manifest(tmp_path, manifest)
    assert verify_cmd.run(args) == 0
    out = capsys.readouterr().out
    assert f"made with {here}: 2 shard(s)" in out and f"made with {UNRECORDED_SOFTWARE}: 1 shard(s)" in out
    assert "note: the shards were made with 2 different" in out
    assert verify_cmd.run(argparse.Namespace(dir=str(tmp_path), json=True)) == 0
    assert json.loads(capsys.readouterr().out)["software"] == {here: 2, UNRECORDED_SOFTWARE: 1}
