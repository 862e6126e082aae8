"""Synthesis runs: same bytes whatever the workers, resume after a kill, clear failures, verify, CLI."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.synth import SynthError, configure, merge_task_roots, read_params, run_synth
from taskgen.registry import register_task, registered
from taskgen.sample import TaskFailure, make_sample
from taskgen.shards import JOURNAL_DIR, load_manifest, plan_shards, verify, write_shard
from taskgen.sources import build_source

REPO = Path(__file__).resolve().parents[1]


@register_task(name="_synth_noise", category="restoration", metric="psnr", target_domain="clean image",
               description="test-only: additive Gaussian noise with a drawn sigma")
def _noise(image, rng):
    sigma = float(rng.uniform(5, 20))
    noisy = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
    return noisy, image.copy(), {"sigma": sigma}


@register_task(name="_synth_invert", category="enhancement", metric="psnr", target_domain="negative",
               description="test-only: colour inversion with a drawn blend")
def _invert(image, rng):
    alpha = float(rng.uniform(0.5, 1.0))
    target = np.clip(alpha * (255 - image.astype(np.float32)) + (1 - alpha) * image, 0, 255).astype(np.uint8)
    return image.copy(), target, {"alpha": alpha}


def _fail(image, rng):
    if rng.random() < 0.25:
        raise ValueError("deliberate failure")
    return image.copy(), image.copy(), {}


@pytest.fixture(scope="module", autouse=True)
def _test_tasks():
    """The failing task exists for this module only; the two above are registered at import so that
    worker processes find them by importing this module, and leave the registry with it."""
    register_task(name="_synth_fail", category="restoration", metric="psnr", target_domain="clean image",
                  description="test-only: raises for about one sample in four")(_fail)
    yield
    for name in ("_synth_fail", "_synth_noise", "_synth_invert"):
        registered().pop(name, None)


TASKS = "_synth_noise,_synth_invert"


def _config(out, **overrides):
    params = read_params(None)
    params.update({"tasks": TASKS, "size": 32, "samples_per_shard": 3,
                   "counts": {"train": 7, "test": 4, "unseen": 0}, "per_task": {}})
    params.update(overrides.pop("params", {}))
    return configure(params, {"out": str(out), "summary": str(out) + ".summary.json", **overrides})


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_bytes_in_process_and_with_two_worker_processes(tmp_path):
    one = run_synth(_config(tmp_path / "one", workers=1), progress=False)
    two = run_synth(_config(tmp_path / "two", workers=2), progress=False)
    assert one["total"]["executor"] == "in-process"
    assert two["total"]["executor"] == "dask-local" and two["total"]["workers"] == 2
    a, b = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert a == b
    assert len([p for p in a if p.endswith(".tar")]) == 2 * (3 + 2)  # ceil(7/3) + ceil(4/3) per task
    summary = json.loads((tmp_path / "one.summary.json").read_text())
    assert summary["tasks"]["_synth_noise"]["pairs"] == 11
    assert set(summary["tasks"]["_synth_noise"]) >= {"pairs", "seconds", "ms_per_pair"}


def test_scheduler_address_gives_same_bytes_and_failures_name_the_sample(tmp_path):
    from distributed import LocalCluster

    run_synth(_config(tmp_path / "ref", workers=1), progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        run_synth(_config(tmp_path / "remote", scheduler=cluster.scheduler_address), progress=False)
        assert _tree(tmp_path / "ref") == _tree(tmp_path / "remote")
        with pytest.raises(SynthError) as info:
            run_synth(_config(tmp_path / "fail", scheduler=cluster.scheduler_address, tasks="_synth_fail", seed=7,
                              params={"counts": {"train": 12, "test": 0, "unseen": 0}}), progress=False)
    message = str(info.value)
    assert "task=_synth_fail split=train index=" in message and "seed=7" in message
    assert "deliberate failure" in message and not (tmp_path / "fail" / "manifest.json").exists()
    # The message is enough to reproduce the failure alone.
    index = int(message.split("index=")[1].split()[0])
    import taskgen

    with pytest.raises(TaskFailure, match="deliberate failure"):
        make_sample(taskgen.get_task("_synth_fail"), "train", index, seed=7, size=32,
                    source=build_source("deadleaves"))


def test_worker_with_other_software_refuses_before_writing(tmp_path, monkeypatch):
    """A cluster worker whose libraries or CPU kernels differ from the planner's would write other
    bytes, and the next run (which reuses shards of its own line only) would remake them all."""
    import threading

    from distributed import LocalCluster

    import pipelines.synth as synth

    real = synth.software_description
    planner = "numpy 0.0, opencv 0.0; x86_64 kernels: the planner's"
    # Dask runs tasks in worker threads here (processes=False): only the planning thread sees the fake line.
    monkeypatch.setattr(synth, "software_description",
                        lambda: planner if threading.current_thread() is threading.main_thread() else real())
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with pytest.raises(SynthError) as info:
            run_synth(_config(tmp_path / "out", scheduler=cluster.scheduler_address), progress=False)
    message = str(info.value)
    assert f"runs '{real()}', the process that planned the run '{planner}'" in message
    assert "LLVBENCH_CPU_PATHS=portable" in message and "constraints.txt" in message
    assert not list((tmp_path / "out").rglob("*.tar")) and not (tmp_path / "out" / "manifest.json").exists()


def test_worker_software_check_passes_an_equal_line():
    from pipelines.synth import WorkerSoftwareMismatch, check_worker_software

    check_worker_software("numpy 1; kernels a", "numpy 1; kernels a")
    with pytest.raises(WorkerSoftwareMismatch, match="runs 'numpy 1; kernels b'"):
        check_worker_software("numpy 1; kernels a", "numpy 1; kernels b")


def test_failure_in_process_is_a_synth_error_with_the_sample(tmp_path):
    config = _config(tmp_path / "fail", workers=1, tasks="_synth_fail", seed=7,
                     params={"counts": {"train": 12, "test": 0, "unseen": 0}})
    with pytest.raises(SynthError, match=r"shard train/_synth_fail-\d{5}\.tar failed: .*task=_synth_fail "
                                         r"split=train index=\d+ seed=7"):
        run_synth(config, progress=False)


def test_rerun_reuses_only_shards_that_verify(tmp_path):
    reference = tmp_path / "reference"
    run_synth(_config(reference, workers=1), progress=False)
    # State of a killed run: some shards finished (journal entries), one of them damaged since,
    # a temporary file of a shard being written, no manifest.
    out = tmp_path / "out"
    config = _config(out, workers=1)
    jobs = plan_shards(config.tasks, config.counts, seed=config.seed, size=config.size, sources=config.sources,
                       samples_per_shard=config.samples_per_shard)
    for job in jobs[:4]:
        write_shard(job, out)
    damaged = out / jobs[0].path
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    (out / "train" / ".x-00009.tar.abc.tmp").write_bytes(b"partial")
    summary = run_synth(config, progress=False)
    assert summary["total"]["reused_pairs"] == sum(job.count for job in jobs[1:4])
    assert _tree(out) == _tree(reference)
    assert not (out / JOURNAL_DIR).exists()


def test_rerun_with_nothing_changed_writes_nothing(tmp_path):
    run_synth(_config(tmp_path, workers=1), progress=False)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.tar")}
    summary = run_synth(_config(tmp_path, workers=1), progress=False)
    assert summary["total"]["written_pairs"] == 0
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.tar")}


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from taskgen.registry import register_task, registered
    from pipelines.synth import configure, read_params, run_synth

    @register_task(name="_synth_slow", category="restoration", metric="psnr", target_domain="clean image",
                   description="test-only: slow enough to be killed mid-run")
    def slow(image, rng):
        time.sleep(0.03)
        return np.clip(image + rng.normal(0, 9, image.shape), 0, 255).astype(np.uint8), image.copy(), {}

    if __name__ == "__main__":
        params = read_params(None)
        params.update({"tasks": "_synth_slow", "size": 32, "samples_per_shard": 4, "summary": None,
                       "counts": {"train": 24, "test": 0, "unseen": 0}})
        summary = run_synth(configure(params, {"out": sys.argv[1], "workers": 1}), progress=False)
        print("REUSED", summary["total"]["reused_pairs"])
""")


def test_killed_run_then_rerun_finishes_with_the_same_bytes(tmp_path):
    script = tmp_path / "slow_synth.py"
    script.write_text(_KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, str(script), str(tmp_path / "clean")], check=True, env=env,
                   capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / JOURNAL_DIR).glob("*.json"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    rerun = subprocess.run([sys.executable, str(script), str(out)], check=True, env=env, capture_output=True,
                           text=True)
    assert int(rerun.stdout.split("REUSED")[1]) >= 2 * 4
    assert _tree(out) == _tree(tmp_path / "clean")


def test_fewer_samples_removes_the_parts_no_longer_planned(tmp_path):
    run_synth(_config(tmp_path, workers=1), progress=False)
    assert (tmp_path / "train/_synth_noise-00002.tar").exists()
    run_synth(_config(tmp_path, workers=1, n_train=3), progress=False)
    assert not (tmp_path / "train/_synth_noise-00002.tar").exists()
    assert verify(tmp_path).passed
    assert load_manifest(tmp_path)["tasks"]["_synth_noise"]["counts"] == {"train": 3, "test": 4}


def test_unreachable_scheduler_is_one_error_naming_its_address(tmp_path):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(SynthError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1 .*: "
                                             r"Timed out trying to connect"):
            run_synth(_config(tmp_path / "out", scheduler="tcp://127.0.0.1:1"), progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "shards").write_text("not a folder")
    config = _config(tmp_path / "shards", workers=1)
    message = r"synth out .*shards is a file; --out \(synth\.out\) names the shards folder"
    with pytest.raises(SynthError, match=message):
        run_synth(config, progress=False)
    with pytest.raises(SynthError, match=message):
        merge_task_roots(config)


def _cli(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def test_cli_reads_params_and_flags_override_them(tmp_path, capsys):
    from pipelines.commands import synth

    params = tmp_path / "params.yaml"
    params.write_text(textwrap.dedent(f"""
        synth:
          out: {tmp_path / 'from_params'}
          size: 32
          seed: 3
          samples_per_shard: 8
          summary: {tmp_path / 'summary.json'}
          counts: {{train: 5, test: 2}}
          per_task:
            _synth_noise: {{train: 4, test: 3}}
    """))
    assert _cli(synth, ["--params", str(params), "--tasks", TASKS, "--n-test", "1", "--no-progress"]) == 0
    manifest = load_manifest(tmp_path / "from_params")
    assert manifest["params"]["seed"] == 3 and manifest["params"]["size"] == 32
    assert manifest["tasks"]["_synth_noise"]["counts"] == {"train": 4, "test": 1}
    assert manifest["tasks"]["_synth_invert"]["counts"] == {"train": 5, "test": 1}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tasks"]["_synth_invert"]["pairs"] == 6
    out = capsys.readouterr().out
    assert "_synth_noise" in out and "ms/pair" in out


def test_params_typos_are_rejected(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("synth:\n  per_task:\n    _synth_noise: {trian: 4}\n")
    with pytest.raises(ValueError, match="trian"):
        configure(read_params(params), {"tasks": "_synth_noise"})
    params.write_text("synth:\n  sizes: 4\n")
    with pytest.raises(ValueError, match="sizes"):
        read_params(params)


@pytest.mark.parametrize("workers", [0, -2])
def test_worker_counts_below_one_are_errors(tmp_path, workers):
    # 0 used to run in this process as if it were 1; neither 0 nor a negative count means anything
    with pytest.raises(ValueError, match=rf"synth.workers \(--workers\) must be >= 1 or auto, got {workers}"):
        _config(tmp_path, workers=workers)
    assert _config(tmp_path, params={"workers": "auto"}).workers is None


def test_verify_command_names_problems_and_fails(tmp_path, capsys):
    from pipelines.commands import verify as verify_cmd

    run_synth(_config(tmp_path, workers=1), progress=False)
    assert _cli(verify_cmd, [str(tmp_path)]) == 0
    (tmp_path / "test/_synth_invert-00001.tar").unlink()
    shard = tmp_path / "train/_synth_noise-00000.tar"
    shard.write_bytes(shard.read_bytes()[:-1])
    (tmp_path / "train/old-00000.tar").write_bytes(b"")
    capsys.readouterr()
    assert _cli(verify_cmd, [str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "CORRUPT  train/_synth_noise-00000.tar" in out
    assert "MISSING  test/_synth_invert-00001.tar" in out
    assert "EXTRA    train/old-00000.tar" in out


def test_per_task_roots_merge_into_one_manifest(tmp_path):
    # What the per-task DVC stages and the final `synth --merge` stage do.
    root = tmp_path / "shards"
    per_task = {"_synth_noise": {"train": 4, "test": 2}, "_synth_invert": {"train": 3, "test": 2}}
    for task in per_task:
        run_synth(_config(root / "tasks" / task, workers=1, tasks=task, summary=str(tmp_path / "m" / f"{task}.json"),
                          params={"per_task": per_task}), progress=False)
    config = _config(root, summary=str(tmp_path / "m.json"), params={"per_task": per_task})
    summary = merge_task_roots(config)
    manifest = load_manifest(root)
    assert set(manifest["tasks"]) == set(per_task)
    assert all(e["path"].startswith(f"tasks/{e['task']}/") for e in manifest["shards"])
    assert verify(root).passed
    assert summary["tasks"]["_synth_invert"]["pairs"] == 5 and summary["total"]["pairs"] == 11


def test_the_merge_keeps_every_per_task_root_whatever_synth_tasks_says(tmp_path):
    # synth.tasks narrowed in params.yaml: the synth_task stages' --tasks overrides it, so each
    # per_task root exists; the merge must list them all, not delete the others.
    root = tmp_path / "shards"
    per_task = {"_synth_noise": {"train": 3, "test": 2}, "_synth_invert": {"train": 3, "test": 2}}
    for task in per_task:
        run_synth(_config(root / "tasks" / task, workers=1, tasks=task, params={"per_task": per_task}),
                  progress=False)
    merge_task_roots(_config(root, tasks="_synth_noise", params={"per_task": per_task}))
    assert set(load_manifest(root)["tasks"]) == set(per_task)
    assert sorted(p.name for p in (root / "tasks").iterdir() if p.is_dir()) == sorted(per_task)


def test_a_task_without_pairs_names_its_counts(tmp_path):
    config = _config(tmp_path / "out", tasks="_synth_noise", params={"counts": {"train": 0, "test": 0, "unseen": 0}})
    with pytest.raises(SynthError, match=r"pairs per split: _synth_noise train 0, test 0\. Raise synth\.counts"):
        run_synth(config, progress=False)


def test_png_compression_is_a_zlib_level():
    with pytest.raises(ValueError, match="synth png_compression must be a zlib level from 0 to 9, got 12"):
        _config("out", params={"png_compression": 12})
    with pytest.raises(ValueError, match="synth png_compression must be >= 0, got -1"):
        _config("out", params={"png_compression": -1})


def test_a_source_that_is_not_a_spec_is_named():
    with pytest.raises(ValueError, match=r"synth\.sources\.train must be a source spec .* got 5"):
        _config("out", params={"sources": {"train": 5, "test": "deadleaves", "unseen": "deadleaves"}})


def test_outputs_under_a_file_are_refused_before_any_shard_is_written(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for out, summary, option in ((tmp_path / "out", afile / "s.json", "--summary"),
                                 (afile / "out", tmp_path / "s.json", "--out")):
        with pytest.raises(SynthError, match=rf"{option} .*: {afile} is a file, not a folder"):
            run_synth(_config(out, workers=1, summary=str(summary)), progress=False)
    assert not (tmp_path / "out").exists() and afile.read_text() == "keep"


def _image_folder(folder: Path) -> Path:
    """Three usable 40-px images and three unusable files (zero-byte, not an image, truncated)."""
    import cv2

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"good{i}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (folder / "bad0.png").write_bytes(b"")
    (folder / "bad1.jpg").write_bytes(b"not an image")
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (folder / "bad2.jpg").write_bytes(buf.tobytes()[:200])
    return folder


def _skip_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "skipping" in r.getMessage()]


@pytest.mark.parametrize("n_test", [7, 1])
def test_folder_is_scanned_once_each_bad_file_logged_once_and_counted_in_the_summary(tmp_path, caplog, n_test):
    # 7 samples in 3-sample shards reach every file from several shards (each used to log them
    # again); 1 sample reaches no bad file at all (they used to go unreported).
    folder = _image_folder(tmp_path / "photos")
    config = _config(tmp_path / "out", workers=1, splits="test", n_test=n_test, test_dir=str(folder))
    with caplog.at_level("WARNING", logger="taskgen.sources"):
        summary = run_synth(config, progress=False)
    warnings = _skip_warnings(caplog)
    assert sorted(w.split(": ")[0] for w in warnings) == [f"skipping {folder}/bad{i}.{ext}"
                                                          for i, ext in enumerate(("png", "jpg", "jpg"))]
    report = summary["folders"][f"folder:{folder}"]
    # Sample 0 searches past the three bad files (sorted first) to good0: all are reached either way.
    assert report["files"] == 6 and report["reached"] == min(n_test, 6) and report["splits"] == ["test"]
    assert report["skipped"]["zero-byte file"] == 1 and report["skipped"]["not an image"] == 1
    assert sum(report["skipped"].values()) == 3
    assert json.loads(config.summary.read_text())["folders"] == summary["folders"]
    from pipelines.synth import format_summary

    assert f"folder:{folder} (test): 6 files, {min(n_test, 6)} reached; skipped 3: " in format_summary(summary)
    assert "folders" not in load_manifest(tmp_path / "out")  # the manifest's bytes do not depend on it


def test_a_paired_datasets_unmatched_files_are_logged_once_not_once_per_shard(tmp_path, caplog):
    import cv2

    rng = np.random.default_rng(1)
    data = tmp_path / "pairs"
    for side in ("input", "target"):
        (data / side).mkdir(parents=True)
    for i in range(3):
        image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        cv2.imwrite(str(data / "input" / f"{i}.png"), image)
        cv2.imwrite(str(data / "target" / f"{i}.png"), 255 - image)
    cv2.imwrite(str(data / "input" / "lonely.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    per_task = {"_synth_noise": {"paired": {"test": f"paired:{data / 'input'},{data / 'target'}"}}}
    config = _config(tmp_path / "out", workers=1, splits="test", n_test=7, params={"per_task": per_task})
    with caplog.at_level("WARNING", logger="taskgen.paired"):
        run_synth(config, progress=False)  # 7 samples in 3-sample shards: three shards read the dataset
    lonely = [r.getMessage() for r in caplog.records if "lonely.png" in r.getMessage()]
    assert len(lonely) == 1 and lonely[0].endswith("skipping " + str(data / "input" / "lonely.png")
                                                   + ": no target partner (files are matched by name)")


def test_per_task_folder_reports_merge_into_one(tmp_path, caplog):
    folder = _image_folder(tmp_path / "photos")
    root = tmp_path / "shards"
    per_task = {"_synth_noise": {"train": 2, "test": 2}, "_synth_invert": {"train": 2, "test": 2}}
    for task in per_task:
        run_synth(_config(root / "tasks" / task, workers=1, tasks=task, test_dir=str(folder),
                          summary=str(tmp_path / "m" / f"{task}.json"), params={"per_task": per_task}),
                  progress=False)
    summary = merge_task_roots(_config(root, summary=str(tmp_path / "m.json"), params={"per_task": per_task}))
    assert list(summary["folders"]) == [f"folder:{folder}"]
    assert summary["folders"][f"folder:{folder}"]["reached"] == 2
    assert json.loads((tmp_path / "m.json").read_text())["folders"] == summary["folders"]


def test_clean_runs_keep_their_summary_keys(tmp_path):
    # A built-in task: this module's own tasks come from outside taskgen, which the summary names.
    summary = run_synth(_config(tmp_path / "out", workers=1, params={"tasks": "salt_pepper"}), progress=False)
    assert set(summary) == {"tasks", "total"}  # metrics/synth.json of the default pipeline is unchanged
    plugins = run_synth(_config(tmp_path / "plug", workers=1), progress=False)
    assert plugins["third_party_tasks"] == {"_synth_noise": __name__, "_synth_invert": __name__}


def test_default_summary_follows_the_out_folder_however_it_was_set(tmp_path, monkeypatch, capsys):
    from pipelines.commands import synth

    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    params = tmp_path / "p.yaml"
    params.write_text(f"synth:\n  out: {elsewhere}\n  size: 32\n  counts: {{train: 2, test: 1}}\n")
    # The audit's case: out moved by the params file, no summary given: nothing lands in ./metrics.
    assert _cli(synth, ["--params", str(params), "--tasks", "_synth_noise", "--no-progress"]) == 0
    assert load_manifest(elsewhere)["tasks"]["_synth_noise"]["counts"] == {"train": 2, "test": 1}
    assert not (tmp_path / "metrics").exists()
    assert "no summary file" in capsys.readouterr().out
    resolve = lambda values, overrides: configure({**read_params(None), **values}, overrides).summary  # noqa: E731
    assert resolve({}, {}) == Path("metrics/synth.json")                                   # default out
    assert resolve({"out": str(tmp_path / "data/shards")}, {}) == Path("metrics/synth.json")  # same folder
    assert resolve({"out": str(elsewhere)}, {}) is None                                     # synth.out
    assert resolve({}, {"out": str(elsewhere)}) is None                                     # --out
    mine = str(tmp_path / "mine.json")
    assert resolve({"out": str(elsewhere), "summary": mine}, {}) == Path(mine)  # its own summary
    assert resolve({"out": str(elsewhere), "summary": mine}, {"out": "other"}) is None
    # dvc.yaml's stages name their summaries explicitly.
    assert resolve({}, {"out": "data/shards/tasks/jpeg", "summary": "metrics/synth/jpeg.json"}) == \
        Path("metrics/synth/jpeg.json")
    assert resolve({}, {"out": "data/shards", "summary": "metrics/synth.json"}) == Path("metrics/synth.json")


@pytest.mark.parametrize("overrides,params,message", [
    ({"size": 0}, {}, r"synth --size must be >= 8, got 0"),
    ({"size": -64}, {}, r"synth --size must be >= 8, got -64"),
    ({}, {"size": 0}, r"synth\.size must be >= 8, got 0"),
    ({"seed": -1}, {}, r"synth --seed must be >= 0, got -1"),
])
def test_size_and_seed_out_of_range_are_refused_naming_the_option(tmp_path, overrides, params, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path / "out", params=params, **overrides)


def test_size_zero_in_a_params_file_is_one_clear_error(tmp_path):
    from pipelines.commands import synth

    params = tmp_path / "p.yaml"
    params.write_text(f"synth:\n  out: {tmp_path / 'out'}\n  size: 0\n")
    with pytest.raises(ValueError, match=r"synth\.size must be >= 8, got 0"):
        _cli(synth, ["--params", str(params), "--tasks", "_synth_noise", "--no-progress"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case,message", [
    ({"params": {"sources": {"train": "foldr:/x", "test": "photos", "unseen": "photos"}}},
     r"^synth\.sources\.train \(foldr:/x\): unknown source 'foldr'"),
    ({"params": {"sources": {"train": "deadleaves", "test": "photos:astronot", "unseen": "photos"}}},
     r"^synth\.sources\.test \(photos:astronot\): unknown packaged photo 'astronot'"),
    ({"train_dir": "{tmp}/missing"}, r"^--train-dir \(folder:.*missing\): image folder .*missing does not exist"),
    ({"test_dir": "{tmp}/allbad"}, r"^--test-dir \(folder:.*allbad\): image folder .*allbad has no usable image "
                                   r"for 32px crops \(.*zero-byte file: 1"),
    ({"params": {"per_task": {"_synth_noise": {"paired": {"test": "lool:/x"}}}}},
     r"^synth\.per_task\._synth_noise\.paired\.test \(lool:/x\): unknown paired dataset 'lool'"),
])
def test_bad_sources_fail_once_before_any_work_naming_the_option(tmp_path, case, message):
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "zero.png").write_bytes(b"")
    overrides = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in case.items()}
    config = _config(tmp_path / "out", workers=1, **overrides)
    with pytest.raises(SynthError, match=message):
        run_synth(config, progress=False)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- llvbench preview

@pytest.mark.parametrize("argv,message", [
    (["--per-row", "0"], r"--per-row must be >= 1, got 0"),
    (["--per-row", "-1"], r"--per-row must be >= 1, got -1"),
    (["--seed", "-1"], r"--seed must be >= 0, got -1"),
    (["--size", "-64"], r"--size must be >= 8, got -64"),
    (["--tasks", ""], r"--tasks '' names no task"),
    (["--photo", "astronot"], r"--photo 'astronot' is neither a packaged photo \(astronaut, .*\) nor 'deadleaves'"),
])
def test_preview_options_out_of_range_are_errors_naming_them(tmp_path, argv, message):
    from pipelines.commands import preview

    with pytest.raises(ValueError, match=message):
        _cli(preview, ["--tasks", "_synth_noise", "--size", "32", "--out", str(tmp_path / "sheet.png"), *argv])
    assert not (tmp_path / "sheet.png").exists()


def test_preview_out_that_is_a_folder_is_refused_and_a_file_is_written(tmp_path, capsys):
    from pipelines.commands import preview
    from taskgen.preview import contact_sheet

    with pytest.raises(ValueError, match=r"--out .* is a folder; give the PNG file to write"):
        _cli(preview, ["--tasks", "_synth_noise", "--size", "32", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="ending in .png"):
        _cli(preview, ["--tasks", "_synth_noise", "--size", "32", "--out", str(tmp_path / "sheet.txt")])
    assert _cli(preview, ["--tasks", "_synth_noise,_synth_invert", "--size", "32", "--per-row", "1",
                          "--out", str(tmp_path / "sheet.png")]) == 0
    assert (tmp_path / "sheet.png").stat().st_size > 0 and "2 tasks" in capsys.readouterr().out
    with pytest.raises(ValueError, match="per_row and tile must be >= 1"):
        contact_sheet([], 32, per_row=0)


def test_an_empty_summary_override_asks_for_no_summary_file(tmp_path):
    from pipelines.synth import configure, read_params

    assert configure(read_params(None), {"out": str(tmp_path), "summary": ""}).summary is None
    assert configure(read_params(None), {"out": str(tmp_path), "summary": "s.json"}).summary == Path("s.json")


@pytest.mark.parametrize("entry,message", [
    ("_synth_nois: {}", r"synth\.per_task\._synth_nois: unknown task '_synth_nois'; did you mean '_synth_noise'\?"),
    ("_synth_noise: 16", r"synth\.per_task\._synth_noise must be a mapping of per-split counts .*; got 16"),
    ("_synth_noise: {tran: 5}", r"synth\.per_task\._synth_noise: unknown key\(s\) tran; did you mean 'train'\?"),
    ("_synth_noise: {train: many}", r"synth\.per_task\._synth_noise\.train must be a whole number, got 'many'"),
    ("_synth_noise: {paired: {tset: 'lol:/x'}}", r"synth\.per_task\._synth_noise\.paired: unknown split 'tset'"),
])
def test_per_task_mistakes_are_one_line_naming_the_file_before_any_work(tmp_path, capsys, entry, message):
    from pipelines import cli

    params = tmp_path / "p-x.yaml"
    params.write_text(f"synth:\n  out: {tmp_path / 'out'}\n  size: 32\n  per_task:\n    _synth_invert: {{}}\n"
                      f"    {entry}\n")
    with pytest.raises(ValueError, match=rf"^{params}: {message}"):
        read_params(params)
    # Every synth command refuses the file, also a DVC stage's `--tasks OTHER` and the merge stage.
    for extra in ([], ["--tasks", "_synth_invert"], ["--merge"]):
        assert cli.main(["synth", "--params", str(params), "--no-progress", *extra]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"llvbench synth: error: {params}: synth.per_task._synth_no") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_merge_refuses_the_options_it_would_ignore(tmp_path, capsys):
    from pipelines import cli

    params = tmp_path / "params.yaml"
    params.write_text(f"synth:\n  out: {tmp_path / 'out'}\n  per_task:\n    _synth_noise: {{}}\n")
    assert cli.main(["synth", "--params", str(params), "--merge", "--tasks", "_synth_noise", "--size", "32"]) == 1
    err = capsys.readouterr().err
    assert "--tasks, --size would be ignored (only --params, --out and --summary apply)" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["splits", "tasks"])
def test_splits_or_tasks_that_are_neither_a_string_nor_a_list_are_one_line(tmp_path, capsys, key):
    from pipelines import cli

    params = tmp_path / "params.yaml"
    params.write_text(f"synth:\n  out: {tmp_path / 'out'}\n  size: 32\n  tasks: _synth_noise\n  {key}: 5\n")
    assert cli.main(["synth", "--params", str(params), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"synth.{key} (--{key}) must be a comma string or a list of names, got 5" in err and err.count("\n") == 1


def test_valid_per_task_entries_still_configure_each_dvc_stage(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("synth:\n  per_task:\n    _synth_noise: {train: 2, paired: null}\n    _synth_invert:\n")
    values = read_params(params)
    for task, counts in (("_synth_noise", {"train": 2, "test": 16}), ("_synth_invert", {"train": 64, "test": 16})):
        config = configure(values, {"tasks": task, "out": str(tmp_path / "tasks" / task)})  # as synth_task@TASK
        assert config.counts == {task: counts} and config.paired == {task: {}}
    with pytest.raises(ValueError, match=r"^synth per_task\._synth_noise must be a mapping"):  # dict callers too
        configure({**values, "per_task": {"_synth_noise": 16}}, {"tasks": "_synth_noise"})


def test_preview_labels_are_shortened_to_fit_their_cell():
    from PIL import Image, ImageDraw, ImageFont

    from taskgen.preview import fitted_text

    draw, font = ImageDraw.Draw(Image.new("RGB", (8, 8))), ImageFont.load_default()
    candidates = ["vignetting_removal (restoration)   source | input | target", "vignetting_removal (restoration)",
                  "vignetting_removal"]
    widths = [draw.textlength(text, font=font) for text in candidates]
    assert fitted_text(draw, font, candidates, widths[0]) == candidates[0]
    assert fitted_text(draw, font, candidates, widths[0] - 1) == candidates[1]
    assert fitted_text(draw, font, candidates, widths[2]) == candidates[2]
    cut = fitted_text(draw, font, candidates, widths[2] - 1)
    assert cut.endswith("…") and candidates[2].startswith(cut[:-1]) and draw.textlength(cut, font=font) <= widths[2] - 1
