"""Training loop: schedule, overfitting, exact resume, NaN stop, safe checkpoint files, CLI over
params.yaml, worker/resume-independent data order, and DDP on two CPU processes (gloo)."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import model  # noqa: E402
from model.checkpoints import load_model, read_safetensors, save_model  # noqa: E402
from model.data import TrainStream  # noqa: E402
from model.train import (EMA, Distributed, MetricsLog, NonFiniteLossError, Trainer,  # noqa: E402
                         TrainConfig, TrainStateError, build_network, learning_rate, make_step_loader,
                         make_stream, param_groups, train)
from pipelines.synth import configure as synth_configure  # noqa: E402
from pipelines.synth import read_params as synth_params  # noqa: E402
from pipelines.synth import run_synth  # noqa: E402

SIZE = 32  # GenLV's smallest query size (windows of 8 at 1, 1/2 and 1/4 scale)
TASKS = "gaussian_noise,canny"
N_TRAIN = 6  # per task: 12 train samples, an epoch that 1 and 2 ranks split evenly


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "shards"
    params = synth_params(None)
    params.update({"tasks": TASKS, "size": SIZE, "samples_per_shard": 8, "summary": None, "per_task": {},
                   "counts": {"train": N_TRAIN, "test": 0, "unseen": 0}})
    run_synth(synth_configure(params, {"out": str(out), "workers": 1}), progress=False)
    return out


@pytest.fixture
def one_thread():
    # Two shared cores: one torch thread per process is faster than two fighting ones.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_config(shards, out, **changes) -> TrainConfig:
    settings = dict(shards=str(shards), out=str(out), steps=6, batch=2, size=SIZE, lr=1e-3, warmup=2,
                    log_every=1, ckpt_every=3, threads=1, ema=0.9)
    settings.update(changes)
    return TrainConfig(**settings)


def loss_curve(out) -> tuple[list[int], np.ndarray]:
    rows = MetricsLog.read(Path(out) / "metrics.csv")
    return [int(r["step"]) for r in rows], np.array([float(r["loss"]) for r in rows])


@pytest.fixture(scope="module")
def full_run(shards, tmp_path_factory):
    """Six uninterrupted steps with EMA: the reference for resume, DDP and the checkpoint files."""
    out = tmp_path_factory.mktemp("full") / "run"
    summary = train(make_config(shards, out), progress=False)
    return out, summary


# ----------------------------------------------------------------------------- pieces

def test_learning_rate_warms_up_linearly_then_decays_on_a_cosine_to_the_floor():
    lr = [learning_rate(s, peak=1.0, warmup=4, total=14, floor=0.1) for s in range(16)]
    assert lr[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr[4] == pytest.approx(1.0)
    assert lr[9] == pytest.approx(0.55)  # halfway through the cosine: mean of peak and floor
    assert all(a > b for a, b in zip(lr[4:14], lr[5:14]))
    assert lr[13] > 0.1 and lr[14] == pytest.approx(0.1) and lr[15] == pytest.approx(0.1)


def test_weight_decay_applies_to_weights_but_not_to_biases_and_norm_scales():
    net = model.build("genlv-tiny")
    decay, no_decay = param_groups(net, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} | {id(p) for p in no_decay["params"]} == {id(p) for p in net.parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all(p.ndim <= 1 for p in no_decay["params"]) and no_decay["params"]


def test_ema_follows_the_weights_with_a_decay_that_warms_up():
    net = torch.nn.Linear(2, 2, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = EMA(net, decay=0.9)
    torch.nn.init.ones_(net.weight)
    ema.update(net)  # decay min(0.9, 1/10): mostly the new weights
    assert torch.allclose(ema.shadow["weight"], torch.full((2, 2), 0.9))
    ema.update(net)  # decay min(0.9, 2/11)
    assert torch.allclose(ema.shadow["weight"], torch.full((2, 2), 0.9 * 2 / 11 + 9 / 11))
    for _ in range(200):
        ema.update(net)
    assert torch.allclose(ema.shadow["weight"], torch.ones(2, 2), atol=1e-6)


def test_step_batches_follow_the_stream_whatever_the_workers_and_start(shards):
    def keys(loader):
        return [k for batch in loader for k in batch["key"]]

    for rank, world in ((0, 1), (1, 2)):
        stream = TrainStream(shards, SIZE, seed=5, rank=rank, world_size=world, raw=True)
        # The stream's own order (epoch after epoch) is what the batches must deal out.
        reference = [s["key"] for s, _ in zip(stream, range(20))]
        assert keys(make_step_loader(stream, 2, 0, 10)) == reference
        assert keys(make_step_loader(stream, 2, 4, 10)) == reference[8:]
    stream = TrainStream(shards, SIZE, seed=5, raw=True)
    batches = list(make_step_loader(stream, 3, 1, 7, workers=2))
    assert [b["step"] for b in batches] == list(range(1, 7))
    assert [k for b in batches for k in b["key"]] == keys(make_step_loader(stream, 3, 1, 7))
    first = batches[0]
    assert first["query"].shape == first["prompt_target"].shape == (3, 3, SIZE, SIZE)
    assert first["query"].dtype == torch.uint8  # integers between processes, floats on the device


def test_step_loader_workers_start_after_the_parent_used_opencv_threads(shards):
    # The fork server preloads the loader's module (torch, OpenCV); its workers must still start
    # when this process has run OpenCV's thread pool (a plain fork hung there).
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        cv2.GaussianBlur(np.random.default_rng(0).random((512, 512), dtype=np.float32), (0, 0), 5)
        stream = TrainStream(shards, SIZE, seed=5, raw=True)
        batches = list(make_step_loader(stream, 2, 0, 4, workers=2))
        assert [b["step"] for b in batches] == [0, 1, 2, 3]
    finally:
        cv2.setNumThreads(threads)


def test_loss_decreases_when_overfitting_one_batch(shards, tmp_path, one_thread):
    config = make_config(shards, tmp_path, steps=10_000, warmup=0, lr=2e-3, grad_clip=0.0, ema=0.0)
    trainer = Trainer(build_network(config), config, torch.device("cpu"))
    batch = next(iter(make_step_loader(make_stream(config, Distributed()), 2, 0, 1)))
    losses = [trainer.step(batch).loss for _ in range(30)]
    assert trainer.step_count == 30
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses


# ----------------------------------------------------------------------------- runs and checkpoints

def test_resume_continues_with_the_same_data_and_loss_curve(shards, full_run, tmp_path):
    full_out, full_summary = full_run
    out = tmp_path / "run"
    first = train(make_config(shards, out, stop_at=3), progress=False)
    assert first["status"] == "stopped" and first["checkpoint_step"] == 3
    with pytest.raises(TrainStateError, match="--resume"):
        train(make_config(shards, out), progress=False)  # never overwrite a run by accident
    with pytest.raises(TrainStateError, match="batch"):
        train(make_config(shards, out, batch=4, resume=True), progress=False)
    with pytest.raises(TrainStateError, match="identity_rate"):
        train(make_config(shards, out, identity_rate=0.5, resume=True), progress=False)
    # A run saved before a setting existed resumes with that setting's default.
    info_path = out / "state" / "trainer.json"
    info = json.loads(info_path.read_text())
    del info["config"]["identity_rate"]
    info_path.write_text(json.dumps(info))
    second = train(make_config(shards, out, resume=True), progress=False)

    assert second["status"] == "completed" and second["start_step"] == 3 and second["step"] == 6
    steps, losses = loss_curve(out)
    full_steps, full_losses = loss_curve(full_out)
    assert steps == full_steps == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(losses, full_losses, rtol=1e-5)
    assert len(set(losses.round(6))) > 1  # a real curve, not a constant
    assert second["ranks"][0]["keys_sha256"] != full_summary["ranks"][0]["keys_sha256"]  # only steps 4-6
    for name in ("model.safetensors", "state/weights.safetensors", "state/ema.safetensors"):
        resumed, reference = read_safetensors(out / name)[0], read_safetensors(full_out / name)[0]
        for key in reference:
            torch.testing.assert_close(resumed[key], reference[key], rtol=1e-4, atol=1e-6)


def test_checkpoint_files_load_without_unpickling_and_bench_reads_the_folder(full_run):
    out, summary = full_run
    assert summary["status"] == "completed" and summary["checkpoint_step"] == 6
    assert summary["compile"] == "off"  # the mode, not just on/off
    startup = summary["startup_s"]  # where a run's first seconds went, in order
    assert 0 <= startup["setup_s"] <= startup["first_batch_s"] <= startup["first_step_s"] <= summary["elapsed"]
    optimizer = torch.load(out / "state" / "optimizer.pt", weights_only=True)
    assert optimizer["state"] and all(int(s["step"]) == 6 for s in optimizer["state"].values())
    info = json.loads((out / "state" / "trainer.json").read_text())
    assert info["step"] == 6 and info["config"]["arch"] == "genlv-tiny"
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "genlv-tiny" and config["weights"] == "ema" and config["step"] == 6

    # The eval weights are the EMA, not the training weights.
    net = load_model(out / "model.safetensors")
    ema = read_safetensors(out / "state" / "ema.safetensors")[0]
    raw = read_safetensors(out / "state" / "weights.safetensors")[0]
    key = next(k for k, v in raw.items() if v.ndim >= 2)
    torch.testing.assert_close(net.state_dict()[key], ema[key])
    initial = build_network(TrainConfig(**{k: v for k, v in info["config"].items()}))
    assert not torch.equal(ema[key], raw[key]) and not torch.equal(ema[key], initial.state_dict()[key])

    import bench

    generalist = bench.load_generalist("checkpoint", checkpoint=str(out), device="cpu")
    query = torch.rand(1, 3, 40, 48)
    output = generalist.predict(query, torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert output.shape == query.shape and torch.isfinite(output).all()
    assert generalist.info()["arch"] == "genlv-tiny"


def test_resume_after_a_crash_in_the_middle_of_a_checkpoint_swap(shards, full_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(full_run[0], out)
    # Crash between the two renames: only state.old holds the checkpoint; a half-written temp folder.
    os.replace(out / "state", out / "state.old")
    (out / ".state.abc.tmp").mkdir()
    (out / ".state.abc.tmp" / "optimizer.pt").write_bytes(b"partial")
    summary = train(make_config(shards, out, steps=7, resume=True), progress=False)
    assert summary["start_step"] == 6 and summary["step"] == 7
    assert json.loads((out / "state" / "trainer.json").read_text())["step"] == 7
    assert not (out / "state.old").exists() and not (out / ".state.abc.tmp").exists()


@pytest.mark.parametrize("damage,message", [
    ("state/trainer.json", r"state/trainer\.json: not readable JSON .*checkpoint in .* is damaged.*fresh --out"),
    ("state/optimizer.pt", r"state/optimizer\.pt: cannot be read \(.*PytorchStreamReader.*is damaged"),
    ("state/weights.safetensors", r"state/weights\.safetensors: not a safetensors file.*is damaged"),
])
def test_resume_from_a_damaged_checkpoint_names_the_file(shards, full_run, tmp_path, damage, message):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(full_run[0], out)
    path = out / damage
    path.write_bytes(b"garbage" if path.suffix == ".json" else path.read_bytes()[:100])
    with pytest.raises(TrainStateError, match=message):
        train(make_config(shards, out, steps=7, resume=True), progress=False)


def test_resume_of_a_finished_run_rewrites_damaged_eval_weights(shards, full_run, tmp_path, caplog):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(full_run[0], out)
    (out / "model.safetensors").write_bytes(b"")
    with caplog.at_level("WARNING", logger="model.train"):
        summary = train(make_config(shards, out, resume=True), progress=False)
    assert summary["step"] == summary["checkpoint_step"] == 6
    assert "writing both again from the training state at step 6" in caplog.text
    rewritten = read_safetensors(out / "model.safetensors")
    shipped = read_safetensors(full_run[0] / "model.safetensors")
    assert rewritten[1] == shipped[1]
    for key, value in shipped[0].items():
        assert torch.equal(rewritten[0][key], value), key


def test_a_folder_holding_a_model_without_training_state_is_never_trained_over(shards, full_run, tmp_path):
    import shutil

    shipped = tmp_path / "shipped"  # like checkpoints/genlv-s: config.json + model.safetensors, no state/
    shipped.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(full_run[0] / name, shipped / name)
    before = (shipped / "model.safetensors").read_bytes()
    for resume in (False, True):
        with pytest.raises(TrainStateError, match=f"{shipped} holds a model .* but no training state to continue: "
                                                  f"train into another --out, with --init {shipped}"):
            train(make_config(shards, shipped, resume=resume), progress=False)
    assert (shipped / "model.safetensors").read_bytes() == before


def test_a_resume_with_another_recipe_trains_with_it(shards, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(make_config(shards, out, stop_at=3), progress=False)
    used = []
    step = Trainer.step

    def spy(self, batch):
        used.append([(g["weight_decay"], tuple(g["betas"])) for g in self.optimizer.param_groups])
        return step(self, batch)

    monkeypatch.setattr(Trainer, "step", spy)
    train(make_config(shards, out, resume=True, weight_decay=0.5, betas=(0.8, 0.9)), progress=False)
    assert used and all(groups == [(0.5, (0.8, 0.9)), (0.0, (0.8, 0.9))] for groups in used)


def test_uniform_task_weights_resume_a_run_that_named_none(shards, tmp_path):
    out = tmp_path / "run"
    train(make_config(shards, out, stop_at=3), progress=False)
    summary = train(make_config(shards, out, resume=True, task_weights="uniform"), progress=False)
    assert summary["step"] == 6


def test_the_init_record_survives_a_run_split_into_jobs(shards, full_run, tmp_path):
    import json

    out = tmp_path / "run"
    train(make_config(shards, out, init=str(full_run[0]), stop_at=3), progress=False)
    first = json.loads((out / "config.json").read_text())["init_sha256"]
    train(make_config(shards, out, init=str(full_run[0]), resume=True), progress=False)
    exported = json.loads((out / "config.json").read_text())
    assert exported["step"] == 6 and exported["init_sha256"] == first


@pytest.mark.parametrize("changes, message", [
    ({"seed": -1}, "seed must be >= 0, got -1"),
    ({"grad_clip": math.nan}, "must be finite numbers: grad_clip (nan)"),
    ({"lr": math.inf}, "must be finite numbers: lr (inf)"),
])
def test_settings_no_generator_or_update_can_use_are_refused_before_anything_is_written(shards, tmp_path, changes,
                                                                                         message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=re.escape(message)):
        train(make_config(shards, out, **changes), progress=False)
    assert not out.exists()


def test_an_out_inside_a_file_is_refused_by_name(shards, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for out in (afile, afile / "sub"):
        with pytest.raises(ValueError, match=re.escape(f"--out {out}: {afile} is a file, not a folder")):
            train(make_config(shards, out), progress=False)
    assert afile.read_text() == "keep"


def test_a_run_killed_between_its_last_state_and_its_export_is_exported_on_resume(shards, full_run, tmp_path):
    import json
    import shutil

    # The last checkpoint's state was swapped in, then the process died before model.safetensors and
    # config.json were written and before the summary: they are still the previous checkpoint's.
    out = tmp_path / "run"
    shutil.copytree(full_run[0], out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(dict(config, step=3)))
    save_model(build_network(make_config(shards, out)), out / "model.safetensors", "genlv-tiny", train_step="3")
    (out / "summary.json").unlink()
    train(make_config(shards, out, resume=True), progress=False)
    assert read_safetensors(out / "model.safetensors")[1]["train_step"] == "6"
    exported = json.loads((out / "config.json").read_text())
    assert exported["step"] == 6  # the train section records this job's own settings (resume: true)
    assert {k: v for k, v in exported.items() if k != "train"} == {k: v for k, v in config.items() if k != "train"}


@pytest.mark.parametrize("overrides,message", [
    ({"dimm": 16}, r"genlv-tiny with --override \(train\.overrides\) dimm=16: unknown GenLV config field"),
    ({"dim": "abc"}, r"dim=\"abc\": GenLV config field dim must be a whole number >= 1, got 'abc'"),
    ({"dim": -4}, r"dim=-4: GenLV config field dim must be a whole number >= 1, got -4"),
    ({"heads": [1, 2, 0, 4]}, r"heads must be a list of whole numbers >= 1"),
])
def test_bad_architecture_overrides_are_errors_naming_them(overrides, message):
    from model.train import network_overrides

    with pytest.raises(ValueError, match=message):
        network_overrides(TrainConfig(overrides=overrides))
    with pytest.raises(TypeError):  # the registry's error stays a TypeError too (and a ValueError)
        model.build("genlv-tiny", **overrides)


def test_cuda_on_a_machine_without_it_is_a_clear_error(monkeypatch):
    from model.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"CUDA requested \(--device cuda:0\) but torch\.cuda\.is_available\(\) "
                                         r"is False"):
        resolve_device("cuda:0")
    with pytest.raises(ValueError, match="--device 'tpu' is not a device"):
        resolve_device("tpu")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("changes,message", [
    ({"epoch_length": 0}, "epoch_length must be >= 1"),
    ({"epoch_length": -5}, "epoch_length must be >= 1"),
    ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"betas": ("a", 0.99)}, r"betas must be two numbers in \[0, 1\)"),
    ({"betas": (0.9,)}, r"betas must be two numbers in \[0, 1\)"),
    ({"task_weights": {"jpeg": "a"}}, "task_weights must map tasks to numbers >= 0, got jpeg: 'a'"),
    ({"task_weights": {"jpeg": -1, "canny": 1}}, "task_weights must map tasks to numbers >= 0, got jpeg: -1"),
])
def test_settings_out_of_range_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes).validate()


def test_init_from_a_config_json_says_what_init_expects(tmp_path):
    (tmp_path / "config.json").write_text('{"arch": "genlv-tiny"}\n')
    (tmp_path / "weights").write_text('{"arch": "genlv-tiny"}\n')  # JSON under another name: sniffed
    for init in (tmp_path / "config.json", tmp_path / "weights"):
        with pytest.raises(ValueError, match=r"init: .* is a text file, not weights; expected a checkpoint folder "
                                             r"with model\.safetensors, or a \.safetensors file"):
            TrainConfig(init=str(init)).validate()


def _nan_from_call(n: int):
    """A builder whose network returns NaN from its n-th forward call on (a diverged run)."""
    def builder(arch, **overrides):
        net = model.build(arch, **overrides)
        calls = [0]

        def poison(_module, _inputs, output):
            calls[0] += 1
            return output * float("nan") if calls[0] >= n else output

        net.register_forward_hook(poison)
        return net
    return builder


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(shards, tmp_path):
    out = tmp_path / "run"
    config = make_config(shards, out, steps=8, ckpt_every=2)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 5 .*last good checkpoint .* is step 4"):
        train(config, builder=_nan_from_call(5), progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "nonfinite" and summary["step"] == 4 and "step 5" in summary["message"]
    assert json.loads((out / "state" / "trainer.json").read_text())["step"] == 4
    for name in ("model.safetensors", "state/weights.safetensors"):
        assert all(torch.isfinite(t).all() for t in read_safetensors(out / name)[0].values())
    assert max(s for s, _ in zip(*loss_curve(out))) == 4  # the NaN step was never logged as a result
    assert issubclass(NonFiniteLossError, RuntimeError)  # `llvbench` exits 1 with the message


def test_cli_values_override_params_yaml(shards, tmp_path):
    from pipelines.commands import train as command
    from pipelines.train import read_params

    params = tmp_path / "params.yaml"
    params.write_text(f"synth: {{size: 32}}\ntrain:\n  arch: genlv-tiny\n  steps: 50\n  batch: 2\n"
                      f"  size: {SIZE}\n  lr: 0.0005\n  threads: 1\n  log_every: 1\n  shards: {shards}\n"
                      f"  out: {tmp_path / 'from-params'}\n")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "from-cli"
    args = parser.parse_args(["--params", str(params), "--steps", "2", "--out", str(out), "--ema",
                              "--identity-rate", "0.25", "--no-progress"])
    assert command.run(args) == 0
    config = json.loads((out / "config.json").read_text())["train"]
    assert config["steps"] == 2 and config["ema"] == 0.999       # from the command line
    assert config["identity_rate"] == 0.25
    assert config["lr"] == 0.0005 and config["batch"] == 2        # from params.yaml
    assert loss_curve(out)[0] == [1, 2] and not (tmp_path / "from-params").exists()

    params.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ValueError, match="stepz"):
        read_params(params)


def test_task_weights_come_as_names_json_objects_or_json_files(tmp_path):
    from pipelines.train import parse_task_weights

    assert parse_task_weights("genlv") == "genlv" and parse_task_weights(None) is None
    assert parse_task_weights('{"jpeg": 3, "canny": 1}') == {"jpeg": 3, "canny": 1}
    weights = tmp_path / "weights.json"
    weights.write_text('{"jpeg": 3, "canny": 1}\n')
    assert parse_task_weights(str(weights)) == {"jpeg": 3, "canny": 1}
    with pytest.raises(ValueError, match="missing.json"):
        parse_task_weights(str(tmp_path / "missing.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json.*JSON object"):
        parse_task_weights(str(tmp_path / "list.json"))


# ----------------------------------------------------------------------------- DDP

_DDP_SCRIPT = ("import json, sys\nfrom model.train import TrainConfig, train\n"
               "train(TrainConfig(**json.loads(sys.argv[1])), progress=False)\n")


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is needed")
def test_ddp_on_two_cpu_processes_splits_each_global_batch_and_matches_one_process(shards, full_run, tmp_path):
    full_out, full_summary = full_run
    out = tmp_path / "ddp"
    config = make_config(shards, out).as_dict()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--no-python", sys.executable, "-c", _DDP_SCRIPT, json.dumps(config)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    ranks = summary["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["samples"] == 6 for r in ranks)
    assert ranks[0]["keys_sha256"] != ranks[1]["keys_sha256"]
    # Global batch 2 = one sample per rank: together they are the one-process run's first batch.
    assert sorted(ranks[0]["first_keys"] + ranks[1]["first_keys"]) == sorted(full_summary["ranks"][0]["first_keys"])
    # Averaged gradients of the same global batches: the same loss curve as one process.
    np.testing.assert_allclose(loss_curve(out)[1], loss_curve(full_out)[1], rtol=1e-4)


def test_time_budget_stops_with_a_checkpoint_that_resumes_to_the_end(shards, tmp_path, monkeypatch):
    import model.train as T

    clock = iter(range(0, 10**6, 30))  # every reading of the clock advances 30 s
    monkeypatch.setattr(T.time, "perf_counter", lambda: float(next(clock)))
    out = tmp_path / "run"
    first = train(make_config(shards, out, max_minutes=1.0, log_every=2), progress=False)
    assert first["status"] == "stopped" and 2 <= first["checkpoint_step"] < 6
    assert "1-minute budget ran out" in first["message"] and "--resume" in first["message"]
    monkeypatch.undo()
    second = train(make_config(shards, out, resume=True), progress=False)
    assert second["status"] == "completed" and second["step"] == 6
    with pytest.raises(ValueError, match="max_minutes must be > 0"):
        make_config(shards, out, max_minutes=0).validate()


def test_init_starts_a_new_run_from_given_weights(shards, full_run, tmp_path, caplog):
    full_out, _ = full_run
    out = tmp_path / "finetune"
    # lr ~0: after one update the weights are still the ones --init gave
    with caplog.at_level("WARNING", logger="model.train"):
        train(make_config(shards, out, init=str(full_out), steps=1, lr=1e-12, min_lr=0.0, warmup=0, ema=0.0,
                          weight_decay=0.0), progress=False)
    assert "carries the network overrides" not in caplog.text  # same network function as the init's
    started, given = read_safetensors(out / "model.safetensors")[0], read_safetensors(full_out / "model.safetensors")[0]
    for key in given:
        torch.testing.assert_close(started[key], given[key], rtol=0, atol=1e-9)
    config = json.loads((out / "config.json").read_text())
    assert len(config["init_sha256"]) == 64
    with pytest.raises(ValueError, match="init: no weights at"):
        make_config(shards, tmp_path / "x", init=str(tmp_path / "missing")).validate()
    with pytest.raises(ValueError, match="--init .*does not fit"):
        train(make_config(shards, tmp_path / "other", init=str(full_out), overrides={"dim": 16}), progress=False)
    # Same weights, another function of them: allowed (a deliberate change) but said.
    with caplog.at_level("WARNING", logger="model.train"):
        train(make_config(shards, tmp_path / "offset", init=str(full_out), steps=1, overrides={"input_offset": 0.02}),
              progress=False)
    assert 'overrides {} (its config.json), this run builds the network with {"input_offset": 0.02}' in caplog.text


def test_bf16_export_is_a_checkpoint_the_bench_and_init_read(shards, full_run, tmp_path):
    import bench
    from conftest import load_script

    export_main = load_script("export_checkpoint").main

    full_out, _ = full_run
    out = tmp_path / "shipped"
    out.mkdir()
    (out / "README.md").write_text("model card")
    assert export_main([str(full_out), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "metrics.csv", "model.safetensors",
                                                      "summary.json"]  # the card stays, no optimizer state
    exported, fp32 = read_safetensors(out / "model.safetensors")[0], read_safetensors(full_out / "model.safetensors")[0]
    assert all(exported[k].dtype == torch.bfloat16 and exported[k].shape == v.shape for k, v in fp32.items())
    assert json.loads((out / "config.json").read_text())["stored_dtype"] == "bfloat16"

    images = [torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    outputs = [bench.load_generalist("checkpoint", checkpoint=str(folder), device="cpu").predict(*images)
               for folder in (full_out, out)]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0.05)  # bf16 weights: close, not equal
    assert not torch.equal(outputs[1], outputs[0])

    train(make_config(shards, tmp_path / "continued", init=str(out), steps=2, log_every=1), progress=False)
    assert export_main([str(tmp_path / "no-run"), str(tmp_path / "x")]) == 2

    # --continues: the shipped curve grows by the continuation's rows, steps and time shifted past its end
    earlier = pd.read_csv(out / "metrics.csv")
    assert export_main([str(tmp_path / "continued"), str(out), "--continues"]) == 0
    chained, later = pd.read_csv(out / "metrics.csv"), pd.read_csv(tmp_path / "continued" / "metrics.csv")
    assert len(chained) == len(earlier) + len(later) and list(chained.columns) == list(earlier.columns)
    assert chained["step"].tolist() == earlier["step"].tolist() + (later["step"] + earlier["step"].iloc[-1]).tolist()
    assert chained["elapsed"].is_monotonic_increasing
    assert (out / "README.md").read_text() == "model card"
    assert export_main([str(tmp_path / "continued"), str(tmp_path / "fresh"), "--continues"]) == 2
    assert export_main([str(tmp_path / "continued"), str(out), "--continues"]) == 2  # out holds other weights now
    assert export_main([str(full_out), str(out), "--continues"]) == 2  # not started from out at all
    assert len(pd.read_csv(out / "metrics.csv")) == len(chained)  # refused exports leave it whole


def test_export_interpolates_between_the_run_and_its_base(shards, full_run, tmp_path):
    from conftest import load_script

    export_main = load_script("export_checkpoint").main
    full_out, _ = full_run
    base = tmp_path / "base"
    train(make_config(shards, base, steps=2, seed=3), progress=False)  # other weights, same architecture

    def weights(folder):
        return read_safetensors(folder / "model.safetensors")[0]

    for ratio in ("0", "0.25", "1"):
        out = tmp_path / f"mix{ratio}"
        assert export_main([str(full_out), str(out), "--dtype", "float32", "--interpolate", str(base),
                            "--ratio", ratio]) == 0
        mixed, run, start = weights(out), weights(full_out), weights(base)
        r = float(ratio)
        for key, value in run.items():
            expected = start[key] + r * (value - start[key]) if value.is_floating_point() else value
            torch.testing.assert_close(mixed[key], expected, rtol=1e-6, atol=1e-7)
        recorded = json.loads((out / "config.json").read_text())["interpolated"]
        assert recorded["ratio"] == r and len(recorded["base_sha256"]) == 64
    # a base of another architecture, a ratio outside [0, 1], --ratio alone: clear refusals
    train(make_config(shards, tmp_path / "wider", steps=1, overrides={"dim": 16}), progress=False)
    assert export_main([str(full_out), str(tmp_path / "x"), "--interpolate", str(tmp_path / "wider"),
                        "--ratio", "0.5"]) == 2
    assert export_main([str(full_out), str(tmp_path / "x"), "--interpolate", str(base), "--ratio", "1.5"]) == 2
    with pytest.raises(SystemExit):
        export_main([str(full_out), str(tmp_path / "x"), "--ratio", "0.5"])
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- torch.compile modes

def test_compile_setting_accepts_booleans_and_mode_names_and_rejects_others():
    from model.train import compile_mode

    assert [compile_mode(v) for v in (False, None, "off", "", True, "regional", "full")] == \
        ["", "", "", "", "regional", "regional", "full"]
    assert TrainConfig(compile=True).compile == "regional"
    with pytest.raises(ValueError, match="compile must be one of"):
        compile_mode("max-autotune")


def test_regional_compile_compiles_each_repeated_genlv_block_in_place(monkeypatch):
    # Compiling for real takes a minute on two cores: record which modules would be compiled.
    from model.genlv import DualAttentionBlock, PromptCrossAttentionBlock, ResidualBlock
    from model.train import compile_network

    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append((type(self), kw)))
    net = model.build("genlv-tiny")
    keys = list(net.state_dict())
    assert compile_network(net, "regional") is net  # in place: no wrapper, state_dict names unchanged
    assert list(net.state_dict()) == keys
    counts = {cls: sum(1 for c, _ in compiled if c is cls)
              for cls in (DualAttentionBlock, PromptCrossAttentionBlock, ResidualBlock)}
    expected = {cls: sum(1 for m in net.modules() if type(m) is cls) for cls in counts}
    # The prompt encoder's residual blocks stay eager: nothing to fuse between their convolutions.
    assert counts == {**expected, ResidualBlock: 0} and all(expected.values())
    assert all(kw == {"dynamic": False} for _, kw in compiled)


def test_regional_compile_falls_back_to_whole_network_compile_without_declared_regions(monkeypatch):
    from model.train import compile_network

    calls = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: calls.append(m) or m)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1))
    assert compile_network(net, "regional") is net and calls == [net]
    assert compile_network(net, "") is net and calls == [net]  # off: untouched


def _loss_and_grads(net, images):
    net.zero_grad(set_to_none=True)
    loss = net(*images[:3]).sub(images[3]).abs().mean()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("level", ["sublayer", "block"])
def test_activation_checkpointing_and_channels_last_leave_loss_and_gradients_unchanged(level):
    from model.genlv import DualAttentionBlock
    from model.train import enable_activation_checkpointing

    generator = torch.Generator().manual_seed(3)
    images = [torch.rand(2, 3, 32, 32, generator=generator) for _ in range(4)]
    net = model.build("genlv-tiny")
    ref_loss, ref_grads = _loss_and_grads(net, images)
    assert enable_activation_checkpointing(net, level) > 0
    assert all(m.checkpointed == level for m in net.modules() if isinstance(m, DualAttentionBlock))
    for variant in ("checkpointed", "checkpointed + channels_last"):
        if variant.endswith("channels_last"):
            net.to(memory_format=torch.channels_last)
            images = [t.contiguous(memory_format=torch.channels_last) for t in images]
        loss, grads = _loss_and_grads(net, images)
        assert loss == pytest.approx(ref_loss, rel=1e-5), variant
        assert grads.keys() == ref_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=f"{variant}: {name}")


def test_checkpointing_levels_store_fewer_activations():
    # What autograd keeps for backward, counted by storage, at each level (block < sublayer < off).
    from model.train import enable_activation_checkpointing

    def saved_bytes(level):
        net = model.build("genlv-tiny")
        if level:
            enable_activation_checkpointing(net, level)
        seen, total = set(), [0]

        def pack(t):
            if t.untyped_storage().data_ptr() not in seen:
                seen.add(t.untyped_storage().data_ptr())
                total[0] += t.untyped_storage().nbytes()
            return t

        images = [torch.rand(1, 3, 32, 32) for _ in range(3)]
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(*images)
        return total[0]

    off, sublayer, block = saved_bytes(""), saved_bytes("sublayer"), saved_bytes("block")
    assert block < sublayer < off / 3


def test_checkpointing_setting_accepts_booleans_and_levels():
    from model.train import checkpointing_level

    assert [checkpointing_level(v) for v in (False, "off", True, "sublayer", "block")] == \
        ["", "", "sublayer", "sublayer", "block"]
    with pytest.raises(ValueError, match="checkpointing must be one of"):
        TrainConfig(checkpointing="layer")


def test_activation_checkpointing_names_an_architecture_without_checkpointable_blocks():
    from model.train import enable_activation_checkpointing

    with pytest.raises(ValueError, match="Sequential has no blocks"):
        enable_activation_checkpointing(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)))


def test_trainer_steps_with_channels_last_and_checkpointing():
    config = TrainConfig(arch="genlv-tiny", batch=2, size=32, steps=2, warmup=0,
                         channels_last=True, checkpointing="block")
    trainer = Trainer(build_network(config), config, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    batch = {k: torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=generator)
             for k in ("prompt_input", "prompt_target", "query", "target")}
    result = trainer.step(batch)
    assert np.isfinite(result.loss) and np.isfinite(result.grad_norm)
    conv = next(m for m in trainer.net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_passthrough_probe_scores_a_trained_model_on_its_shards(shards, tmp_path, capsys):
    from conftest import load_script
    from model import checkpoints

    probe = load_script("passthrough_probe")
    net = model.build("genlv-tiny").eval()
    # a head scaled 100x puts outputs tens of units outside [0, 1] whatever the random init: the
    # bench's output check must reject it, as the leaderboard does (an untrained head alone is
    # rejected under some inits and not others)
    raw = tmp_path / "raw"
    raw.mkdir()
    head = net.output.weight.detach().clone()
    with torch.no_grad():
        net.output.weight.mul_(100.0)
    checkpoints.save_model(net, raw / "model.safetensors", arch="genlv-tiny")
    assert probe.main([str(raw), "--shards", str(shards), "--split", "train", "--tasks", "gaussian_noise",
                       "--queries", "1", "--threads", "1"]) == 2
    assert "predict() values span" in capsys.readouterr().err
    with torch.no_grad():
        net.output.weight.copy_(head * 0.01)  # outputs near 0: inside the range the bench accepts
    checkpoints.save_model(net, tmp_path / "model.safetensors", arch="genlv-tiny")
    assert probe.main([str(tmp_path), "--shards", str(shards), "--split", "train", "--tasks", TASKS,
                       "--queries", "3", "--threads", "1", "--per-query"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| task | model | identity | pass-through | pass-through, colour offset removed | floor cost |"
    per_query = lines[lines.index("") + 3:]
    assert len(lines[:lines.index("")]) == 2 + 2 + 1 and len(per_query) == 2 * 3
    samples = probe.task_samples(shards, "train", "gaussian_noise", 4)
    from bench.builtins import CheckpointGeneralist

    row = probe.probe(CheckpointGeneralist(tmp_path, device="cpu"), samples)
    assert [line.split(" | ")[1:] for line in lines if line.startswith("| gaussian_noise |")] == \
        [[f"{row['model']:.2f}", f"{row['identity']:.2f}", f"{row['pass_through']:.2f}",
          f"{row['pass_through_no_offset']:.2f}", f"{row['floor_cost']:.2f} |"]]
    # taking each image's mean colour error out can only lower the squared error
    assert row["pass_through_no_offset"] >= row["pass_through"] - 1e-9
    queries = probe.probe_queries(CheckpointGeneralist(tmp_path, device="cpu"), samples)
    assert [query["key"] for query in queries] == [sample.key for sample in samples[1:]]
    assert row["pass_through"] == pytest.approx(np.mean([query["pass_through"] for query in queries]))
    # floor cost: identity's MSE plus the pass-through MSE, in dB below identity (here from per-query MSEs)
    for query, sample in zip(queries, samples[1:]):
        mse = np.mean((sample.input.astype(float) - sample.target.astype(float)) ** 2)
        pass_mse = 255.0 ** 2 * 10 ** (-query["pass_through"] / 10)
        assert query["floor_cost"] == pytest.approx(10 * np.log10((mse + pass_mse) / mse), rel=1e-6)
    assert probe.floor_cost_db(30.0, 30.0) == pytest.approx(10 * np.log10(2))  # equal errors: 3 dB
    assert probe.floor_cost_db(20.0, 100.0) < 1e-6 and np.isnan(probe.floor_cost_db(float("nan"), 30.0))
    # outputs near 0 (the head scaled down above): the pass-through output is dark whatever the query
    assert all(query["pass_through_brightness"] < 0.1 < query["brightness"] for query in queries)
    assert per_query[0].startswith(f"| {samples[1].key} | {queries[0]['brightness']:.2f} | {queries[0]['model']:.2f} |")
    # identity here is the real PSNR of the noisy input, well below the cap
    assert 10 < row["identity"] < 40 and row["model"] > 0
    # too few samples for the probe: a clear error, exit status 2
    assert probe.main([str(tmp_path), "--shards", str(shards), "--split", "train", "--tasks", "canny",
                       "--queries", str(N_TRAIN)]) == 2
    assert f"task 'canny' has {N_TRAIN} samples" in capsys.readouterr().err


def test_passthrough_probe_error_map_draws_the_amplified_difference(shards, tmp_path, capsys):
    from conftest import load_script

    probe = load_script("passthrough_probe")
    target = np.full((4, 4, 3), 100, np.uint8)
    assert (probe.error_image(target, target) == 128).all()  # no error: mid-grey
    brighter = target.copy()
    brighter[0, 0] = [101, 99, 140]
    drawn = probe.error_image(brighter, target, gain=8)
    assert drawn.dtype == np.uint8 and drawn[0, 0].tolist() == [136, 120, 255] and (drawn[1:] == 128).all()
    # a uint16 (HDR) pair is put on the 0-255 scale first: 257 uint16 levels are one 8-bit level
    wide = np.full((2, 2, 3), 30000, np.uint16)
    assert (probe.error_image(wide + 257, wide, gain=8) == 136).all()
    from taskgen.preview import display_uint8  # what the map draws an HDR query and output with

    assert display_uint8(wide)[0, 0, 0] == 30000 >> 8 and display_uint8(target) is target
    with pytest.raises(ValueError, match="differ"):
        probe.error_image(wide.astype(np.uint8), wide)
    from model import checkpoints

    net = model.build("genlv-tiny").eval()
    with torch.no_grad():
        net.output.weight.mul_(0.01)  # outputs near 0: inside the range the bench accepts
    checkpoints.save_model(net, tmp_path / "model.safetensors", arch="genlv-tiny")
    stem = tmp_path / "maps" / "errors"
    stem.parent.mkdir()
    assert probe.main([str(tmp_path), "--shards", str(shards), "--split", "train", "--tasks", TASKS,
                       "--queries", "1", "--threads", "1", "--error-map", str(stem)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"error map: {stem}.png"
    assert (stem.parent / "errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in stem.parent.iterdir()) == ["errors.png"]  # no temp file left


def test_passthrough_probe_flat_block_errors_measure_the_error_inside_the_block(shards, tmp_path, capsys):
    from conftest import load_script

    from bench.builtins import IdentityGeneralist

    probe = load_script("passthrough_probe")
    samples = probe.task_samples(shards, "train", "gaussian_noise", 3)

    class Halving(IdentityGeneralist):
        name = "halving"

        def predict(self, query, prompt_input, prompt_target):
            return query * 0.5

    assert probe.flat_block_errors(IdentityGeneralist(), samples, [0, 2, 255]) == {0: 0.0, 2: 0.0, 255: 0.0}
    with pytest.raises(ValueError, match="at least one query"):
        probe.flat_block_errors(IdentityGeneralist(), samples[:1], [0])
    # halving a flat block at v leaves v/2 inside it (quantised to the 8-bit grid: 255 -> 127.5 -> 128)
    assert probe.flat_block_errors(Halving(), samples, [0, 8, 255]) == pytest.approx({0: 0.0, 8: 4.0, 255: 127.0})
    # the option prints one row per task and a mean row; bad levels are a usage error
    table, generalist = _probe_option_table(probe, shards, tmp_path, capsys, "--flat-levels", "0,255",
                                            "| task | error in a flat 0 block | error in a flat 255 block |")
    errors = probe.flat_block_errors(generalist, probe.task_samples(shards, "train", "gaussian_noise", 2), [0, 255])
    assert table[2] == f"| gaussian_noise | {errors[0]:.1f} | {errors[255]:.1f} |"


def _probe_option_table(probe, shards, tmp_path, capsys, option: str, value: str, header: str):
    """Run the probe's CLI with ``option value`` on a tiny checkpoint over TASKS (one query each); return
    the printed table from ``header`` on (checked: a row per task and a mean row) and the checkpoint's
    generalist. Two malformed level lists must be usage errors."""
    from bench.builtins import CheckpointGeneralist
    from model import checkpoints

    net = model.build("genlv-tiny").eval()
    with torch.no_grad():
        net.output.weight.mul_(0.01)  # outputs near 0: inside the range the bench accepts
    checkpoints.save_model(net, tmp_path / "model.safetensors", arch="genlv-tiny")
    assert probe.main([str(tmp_path), "--shards", str(shards), "--split", "train", "--tasks", TASKS,
                       "--queries", "1", "--threads", "1", option, value]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(header):]
    assert [line.split(" | ")[0] for line in table[2:]] == ["| gaussian_noise", "| canny", "| mean"]
    for bad in ("0,x", "256"):
        with pytest.raises(SystemExit):
            probe.main([str(tmp_path), "--shards", str(shards), "--tasks", "canny", option, bad])
    return table, CheckpointGeneralist(tmp_path, device="cpu")


def test_passthrough_probe_flat_prompts_score_the_queries_under_a_uniform_prompt(shards, tmp_path, capsys):
    from conftest import load_script

    from bench.builtins import IdentityGeneralist
    from bench.metrics import PSNR_CAP_DB, psnr

    probe = load_script("passthrough_probe")
    samples = probe.task_samples(shards, "train", "gaussian_noise", 3)

    class CopiesPrompt(IdentityGeneralist):
        name = "copies-prompt"

        def predict(self, query, prompt_input, prompt_target):
            return prompt_target.clone()

    # a model that follows the (v, v) prompt leaves every query alone: the PSNR cap at every level
    followed = probe.flat_prompt_passthrough(IdentityGeneralist(), samples, [16, 200])
    assert followed == {16: PSNR_CAP_DB, 200: PSNR_CAP_DB}
    # one that paints the prompt scores each query against the flat image
    copied = probe.flat_prompt_passthrough(CopiesPrompt(), samples, [16, 200])
    for level in (16, 200):
        expected = np.mean([float(np.mean(psnr(np.full_like(q.target, level), q.target))) for q in samples[1:]])
        assert copied[level] == pytest.approx(expected)
    assert copied[16] < 20 and copied[200] < 20
    with pytest.raises(ValueError, match="at least one query"):
        probe.flat_prompt_passthrough(IdentityGeneralist(), samples[:1], [16])
    # the option prints one row per task and a mean row; bad levels are a usage error
    table, generalist = _probe_option_table(probe, shards, tmp_path, capsys, "--flat-prompts", "16,128",
                                            "| task | pass-through, flat 16 prompt | pass-through, flat 128 prompt |")
    scores = probe.flat_prompt_passthrough(generalist, probe.task_samples(shards, "train", "gaussian_noise", 2),
                                           [16, 128])
    assert table[2] == f"| gaussian_noise | {scores[16]:.2f} | {scores[128]:.2f} |"


# ----------------------------------------------------------------------------- resume bookkeeping, idle resumes

def _crash_at_call(n: int):
    """A builder whose network raises from its n-th forward call (a run killed in the middle)."""
    def builder(arch, **overrides):
        net = model.build(arch, **overrides)
        calls = [0]

        def crash(_module, _inputs, _output):
            calls[0] += 1
            if calls[0] >= n:
                raise RuntimeError("simulated crash")

        net.register_forward_hook(crash)
        return net
    return builder


def _loss_summary(summary: dict) -> list:
    return [summary[k] for k in ("first_loss", "final_loss", "mean_loss_last_10")]


def test_resume_reports_the_metrics_and_summary_of_an_uninterrupted_run(shards, tmp_path):
    # log_every 4 against checkpoints at step 3: the window of row 4 straddles every resume below.
    reference = train(make_config(shards, tmp_path / "ref", log_every=4), progress=False)
    ref_steps, ref_losses = loss_curve(tmp_path / "ref")
    assert ref_steps == [4, 6]

    stopped = tmp_path / "stopped"  # --stop-at 3, then --resume
    train(make_config(shards, stopped, log_every=4, stop_at=3), progress=False)
    assert loss_curve(stopped)[0] == [3]  # the stopped run shows its last loss ...
    resumed = train(make_config(shards, stopped, log_every=4, resume=True), progress=False)
    steps, losses = loss_curve(stopped)
    assert steps == [4, 6]  # ... and the resumed run logs that window whole, in its place
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    np.testing.assert_allclose(_loss_summary(resumed), _loss_summary(reference), rtol=1e-5)

    crashed = tmp_path / "crashed"  # checkpoint at 3, row 4 logged, killed in step 5, then --resume
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(make_config(shards, crashed, log_every=4), builder=_crash_at_call(5), progress=False)
    failed = json.loads((crashed / "summary.json").read_text())
    assert failed["status"] == "failed" and failed["message"] == "simulated crash"
    old_state = tmp_path / "old-state"
    import shutil

    shutil.copytree(crashed, old_state)
    resumed = train(make_config(shards, crashed, log_every=4, resume=True), progress=False)
    steps, losses = loss_curve(crashed)
    assert steps == [4, 6]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    np.testing.assert_allclose(_loss_summary(resumed), _loss_summary(reference), rtol=1e-5)

    # A checkpoint written before the loss history was kept still resumes, reporting its own steps.
    info_path = old_state / "state" / "trainer.json"
    info = json.loads(info_path.read_text())
    del info["losses"]
    info_path.write_text(json.dumps(info))
    resumed = train(make_config(shards, old_state, log_every=4, resume=True), progress=False)
    assert resumed["status"] == "completed" and resumed["step"] == 6
    assert resumed["first_loss"] != pytest.approx(reference["first_loss"], rel=1e-5)  # step 4's, not step 1's


def test_an_idle_resume_without_the_summary_keeps_every_metrics_row(shards, tmp_path):
    out = tmp_path / "run"
    train(make_config(shards, out, log_every=4), progress=False)  # rows at 4 and at 6, a window left open
    (out / "summary.json").unlink()  # so the resume cannot answer from it and opens the metrics log
    before = loss_curve(out)
    assert before[0] == [4, 6]
    train(make_config(shards, out, log_every=4, resume=True), progress=False)
    steps, losses = loss_curve(out)
    assert steps == [4, 6] and np.array_equal(losses, before[1])  # the open window's row too


def test_metrics_and_summary_paths_are_checked_before_the_run(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    for changes, message in (({"summary": str(tmp_path / "folder")}, "--summary .*folder is a folder"),
                             ({"metrics": str(tmp_path / "file" / "m.csv")}, "--metrics .*file is a file, not a folder")):
        with pytest.raises(ValueError, match=message):
            make_config(tmp_path / "shards", tmp_path / "out", **changes).validate()


def test_an_explicit_gpu_under_torchrun_must_be_the_rank_s_own(monkeypatch):
    from model.train import resolve_device

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match=r"--device cuda:0 under torchrun \(2 ranks\) would put rank 1 on GPU 0"):
        resolve_device("cuda:0")


def test_resume_of_a_finished_run_says_nothing_was_trained_and_names_the_current_folder(shards, full_run, tmp_path):
    import shutil

    from pipelines.train import format_summary

    moved = tmp_path / "moved"
    shutil.copytree(full_run[0], moved)  # the saved summary still names the old folder
    saved = (moved / "summary.json").read_bytes()
    for changes, limit in (({}, "--steps 6"), ({"stop_at": 4}, "--stop-at 4")):
        summary = train(make_config(shards, moved, resume=True, **changes), progress=False)
        assert summary["nothing_trained"] and summary["out"] == str(moved) and summary["step"] == 6
        assert summary["message"] == (f"nothing trained: {moved} is already at step 6 and {limit} ends the run "
                                      "there; raise it to train further")
        lines = format_summary(summary).splitlines()
        assert lines[0] == summary["message"] and lines[1].startswith("saved run completed:")
        assert lines[2].endswith(f"in {moved}") and str(full_run[0]) not in format_summary(summary)
    assert (moved / "summary.json").read_bytes() == saved  # the run's record is left as it was


def test_a_warmup_as_long_as_the_run_is_warned_about_once(shards, tmp_path, caplog):
    from model.train import warmup_problem

    assert warmup_problem(TrainConfig(steps=6, warmup=5)) == ""
    assert "--warmup 6 is not shorter than --steps 6" in warmup_problem(TrainConfig(steps=6, warmup=6, lr=1e-3))
    assert "to 0.00075 at the last step (peak 0.001)" in warmup_problem(TrainConfig(steps=6, warmup=8, lr=1e-3))
    with caplog.at_level("WARNING", logger="model.train"):
        train(make_config(shards, tmp_path / "run", steps=2, warmup=4, ema=0.0), progress=False)
    assert [r.getMessage() for r in caplog.records].count(warmup_problem(make_config(shards, "x", steps=2,
                                                                                     warmup=4))) == 1


def test_an_out_folder_of_its_own_is_labelled_with_its_name_unless_name_is_given(tmp_path):
    from pipelines.train import configure, read_params

    params = {**read_params(None), "arch": "genlv-tiny", "name": "genlv-tiny", "out": "checkpoints/pipeline"}
    assert configure(params, {}).name == "genlv-tiny"  # the pipeline's own run
    assert configure(params, {"out": "checkpoints/pipeline/"}).name == "genlv-tiny"  # the same folder
    assert configure(params, {"out": str(tmp_path / "sim_ck")}).name == ""  # -> config.json "sim_ck"
    assert configure(params, {"out": str(tmp_path / "sim_ck"), "name": "mine"}).name == "mine"
    assert configure(params, {"arch": "genlv-s"}).name == ""


# ----------------------------------------------------------------------------- loader workers

def test_worker_errors_get_their_original_one_line_message():
    from model.train import worker_error_message
    from taskgen.shards import ShardError

    try:
        try:
            raise KeyError("inner")
        except KeyError:
            raise ShardError("a.tar: sample t/train/000002: target.png is not a decodable PNG") from None
    except ShardError:
        import traceback

        wrapped = ShardError("Caught ShardError in DataLoader worker process 0.\nOriginal " +
                             traceback.format_exc())
    assert worker_error_message(wrapped) == "a.tar: sample t/train/000002: target.png is not a decodable PNG"
    assert worker_error_message(ValueError("Caught ValueError in DataLoader worker process 3.\nOriginal "
                                           "Traceback (most recent call last):\n  ...\nValueError: bad\nvalue")) \
        == "bad\nvalue"
    assert worker_error_message(ShardError("a.tar: broken")) is None  # not from a worker: left alone


@pytest.mark.parametrize("workers", [0, 1])
def test_an_undecodable_image_stops_training_with_one_line_naming_shard_and_sample(shards, tmp_path, workers):
    import re
    import shutil

    from taskgen.shards import ShardError, index_shard

    root = shutil.copytree(shards, tmp_path / "shards")
    path = root / "train" / "canny-00000.tar"
    span = index_shard(path)["canny/train/000002"]["target.png"]
    data = bytearray(path.read_bytes())
    data[span.offset + span.size // 2] ^= 0xFF  # every sample is read in the first epoch (steps 1-6)
    path.write_bytes(bytes(data))
    expected = f"{path}: sample canny/train/000002: target.png is not a decodable PNG"
    out = tmp_path / "run"
    with pytest.raises(ShardError, match=f"^{re.escape(expected)}$"):
        train(make_config(shards=root, out=out, workers=workers), progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["message"] == expected


_ORPHAN_SCRIPT = """
import os, sys, time
from model.data import TrainStream
from model.train import make_step_loader
batches = iter(make_step_loader(TrainStream(sys.argv[1], 32, raw=True), 2, 0, 10**6, workers=1))
next(batches)
print(os.getpid(), flush=True)
time.sleep(300)
"""


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process /proc lists."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended while listing
            table[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def _descendants(pid: int) -> dict[int, str]:
    """pid -> start time of every process below ``pid``."""
    table, found, todo = _processes(), {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, _state, started) in table.items():
            if ppid == parent and child not in found:
                found[child] = started
                todo.append(child)
    return found


def _alive(processes: dict[int, str]) -> list[int]:
    """Which of these (pid -> start time) still run: a zombie or a reused pid does not count."""
    table = _processes()
    return [pid for pid, started in processes.items()
            if pid in table and table[pid][2] == started and table[pid][1] != "Z"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_trainer_takes_its_loader_workers_and_fork_server_along(shards):
    import signal
    import time

    trainer = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, str(shards)], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    helpers: dict[int, str] = {}
    try:
        assert int(trainer.stdout.readline()) == trainer.pid  # the first batch came from a worker
        helpers = _descendants(trainer.pid)  # fork server, its worker, resource tracker
        assert len(helpers) >= 2, helpers
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(helpers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(helpers), f"still running after the trainer was killed: {_alive(helpers)}"
    finally:
        if trainer.poll() is None:
            trainer.kill()
        for pid in _alive(helpers):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_sigterm_ends_training_with_a_summary_a_resume_hint_and_no_workers_left(shards, tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    trainer = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "train", "--arch", "genlv-tiny", "--shards", str(shards), "--out", str(out), "--steps", "100000",
         "--batch", "2", "--size", str(SIZE), "--log-every", "1", "--ckpt-every", "2", "--workers", "1",
         "--threads", "1", "--no-progress"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,  # no params.yaml there: built-in defaults
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    helpers: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        metrics = out / "metrics.csv"
        while time.monotonic() < deadline and trainer.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) > 4:  # header + 4 steps: one checkpoint
                break
            time.sleep(0.2)
        assert trainer.poll() is None, trainer.stderr.read()
        helpers = _descendants(trainer.pid)
        trainer.send_signal(signal.SIGTERM)
        _, stderr = trainer.communicate(timeout=60)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 128 + signal.SIGTERM, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["message"].startswith("Terminated: SIGTERM at step ")
    assert "continue with --resume from the checkpoint at step " in summary["message"]
    assert f"llvbench train: interrupted: {summary['message']}" in stderr
    assert not list(out.glob("**/*.tmp*")), "a half-written file was left behind"
    deadline = time.monotonic() + 15
    while _alive(helpers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(helpers), f"still running after the trainer ended: {_alive(helpers)}"


def test_a_signal_during_a_checkpoint_waits_until_it_is_written(shards, tmp_path, monkeypatch):
    # A SIGTERM raised inside torch.save's writer broke the archive ("unexpected pos"): exit 1, no checkpoint.
    import signal

    from model.train import Terminated, read_trainer_info

    out = tmp_path / "run"
    save_state = Trainer.save_state

    def signalled(self, folder):
        os.kill(os.getpid(), signal.SIGTERM)
        save_state(self, folder)

    monkeypatch.setattr(Trainer, "save_state", signalled)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        train(make_config(shards, out), progress=False)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert read_trainer_info(out)["step"] == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["message"] == "Terminated: SIGTERM at step 3; continue with --resume from the checkpoint at step 3"
    assert not list(out.glob("**/*.tmp*"))


def test_a_signal_while_the_summary_is_written_waits_for_it(shards, tmp_path, monkeypatch):
    # torchrun SIGTERMs the other ranks once one fails: rank 0 must still leave its summary.json.
    import signal

    from model.train import Terminated, _RunRecord

    out = tmp_path / "run"
    summary = _RunRecord.summary

    def signalled(self, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return summary(self, **kwargs)

    monkeypatch.setattr(_RunRecord, "summary", signalled)
    with pytest.raises(Terminated):
        train(make_config(shards, out), progress=False)
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


def test_ranks_after_the_first_log_errors_only():
    import logging

    from model.train import RanksAfterTheFirstQuiet

    def record(level):
        return logging.LogRecord("model.train", level, __file__, 1, "msg", None, None)

    assert RanksAfterTheFirstQuiet(0).filter(record(logging.INFO))
    assert not RanksAfterTheFirstQuiet(1).filter(record(logging.INFO))
    assert not RanksAfterTheFirstQuiet(3).filter(record(logging.WARNING))
    assert RanksAfterTheFirstQuiet(1).filter(record(logging.ERROR))


def test_resuming_on_another_number_of_ranks_warns_only_when_the_data_order_changes(full_run, caplog):
    from model.train import Distributed, _prepare_out, read_trainer_info

    out, _ = full_run
    info = read_trainer_info(out)
    config = make_config(info["config"]["shards"], out, resume=True)
    sha = info["data_manifest_sha256"]
    with caplog.at_level("WARNING", logger="model.train"):
        _prepare_out(config, Distributed(rank=0, world_size=2), sha, epoch_length=12)
    assert "rank run on" not in caplog.text  # 12 splits evenly over 1 and 2 ranks: the same order
    with caplog.at_level("WARNING", logger="model.train"):
        _prepare_out(config, Distributed(rank=0, world_size=2), sha, epoch_length=13)
    assert "resuming a 1-rank run on 2 ranks: the data order changes, since the epoch of 13 samples" in caplog.text


def test_a_resume_may_spell_out_the_default_epoch_length(shards, tmp_path):
    # epoch_length None means every train sample once: 2 tasks x N_TRAIN here, the same plan spelled out.
    for first, resumed in ((None, 2 * N_TRAIN), (2 * N_TRAIN, None)):
        out = tmp_path / f"run-{first}"
        train(make_config(shards, out, stop_at=3, epoch_length=first), progress=False)
        with pytest.raises(TrainStateError, match=rf"cannot resume with different epoch_length \({2 * N_TRAIN} -> 10\)"):
            train(make_config(shards, out, resume=True, epoch_length=10), progress=False)
        assert train(make_config(shards, out, resume=True, epoch_length=resumed), progress=False)["step"] == 6


def test_a_batch_the_ranks_cannot_share_fails_before_the_out_folder_is_made(shards, tmp_path, monkeypatch):
    from model import train as train_module

    monkeypatch.setattr(train_module.Distributed, "from_env",
                        classmethod(lambda cls, device: cls(rank=0, world_size=2)))
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"--batch 3 \(global\) is not divisible by the 2 ranks"):
        train(make_config(shards, out, batch=3), progress=False)
    assert not out.exists()


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is needed")
def test_ddp_trains_a_network_with_parameters_its_forward_never_uses(shards, tmp_path):
    # PromptIR keeps six 1x1 convs the official forward never calls (for a strict load of its weights)
    out = tmp_path / "ddp"
    config = make_config(shards, out, arch="promptir-s", overrides={"dead_convs": True}, steps=2, ckpt_every=2,
                         ema=0.0).as_dict()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--no-python", sys.executable, "-c", _DDP_SCRIPT, json.dumps(config)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is needed")
def test_under_ddp_the_summary_names_the_rank_that_failed_first_and_its_error(shards, full_run, tmp_path):
    import shutil

    from taskgen.shards import index_shard

    _, full_summary = full_run
    rank1_key = full_summary["ranks"][0]["first_keys"][1]  # global batch 2: its second sample is rank 1's
    task = rank1_key.split("/")[0]
    root = shutil.copytree(shards, tmp_path / "shards")
    [path] = [p for p in (root / "train").glob(f"{task}-*.tar") if rank1_key in index_shard(p)]
    span = index_shard(path)[rank1_key]["input.png"]
    data = bytearray(path.read_bytes())
    data[span.offset + span.size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    out = tmp_path / "ddp"
    config = make_config(root, out).as_dict()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--no-python", sys.executable, "-c", _DDP_SCRIPT, json.dumps(config)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_rank"] == 1, summary["message"]
    assert summary["message"] == f"{path}: sample {rank1_key}: input.png is not a decodable PNG"
