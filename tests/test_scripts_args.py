"""Scripts' and benchmarks' argument errors and messages: bench_eval, export_checkpoint --continues,
passthrough_probe, llvbench preview."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from conftest import load_script

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- benchmarks/bench_eval.py

@pytest.fixture(scope="module")
def bench_eval():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_eval

    yield bench_eval
    sys.path.remove(str(REPO / "benchmarks"))


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),
    (["--n", "0"], "--n must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--size", "4"], "--size must be >= 8, got 4"),
    (["--threads", "-1"], "--threads must be >= 0, got -1"),
    (["--tasks", "jpg"], "--tasks jpg: unknown task 'jpg'; known tasks: "),
    (["--tasks", ","], "--tasks ',' names no task"),
    (["--tasks", "unseen"], "--tasks unseen: vignetting_removal, motion_deblur, sepia, emboss, colour_inversion, "
                            "gamma_change have no test split"),
    (["--tasks", "jpeg,sepia"], "--tasks jpeg,sepia: sepia has no test split"),
])
def test_bench_eval_bad_options_are_one_line_errors_before_synthesis(bench_eval, monkeypatch, capsys, argv, message):
    import pipelines.synth

    def synthesise(*args, **kwargs):
        raise AssertionError("synthesised despite a bad option")

    monkeypatch.setattr(pipelines.synth, "run_synth", synthesise)
    with pytest.raises(SystemExit) as exit_info:
        bench_eval.main(["--size", "32", "--n", "2", "--repeats", "1", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "\"" not in err.splitlines()[-1]


def test_bench_eval_takes_the_tasks_with_a_test_split_of_all_and_the_categories(bench_eval):
    parser = argparse.ArgumentParser()
    for tasks in ("all", "restoration", "stylization", "jpeg,canny"):  # held-out tasks in the first three
        bench_eval.check_arguments(parser, argparse.Namespace(tasks=tasks, size=32, n=1, batch_size=1, repeats=1,
                                                              threads=0))


# ----------------------------------------------------------------------------- export_checkpoint --continues

def _folder(path: Path, config: dict, steps: list[int], weights: float) -> Path:
    from model.checkpoints import write_safetensors

    path.mkdir(parents=True)
    write_safetensors(path / "model.safetensors", {"w": torch.full((2,), weights)}, {"train_step": str(steps[-1])})
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.csv").write_text("step,loss,lr,samples_per_s,elapsed,grad_norm\n" + "".join(
        f"{step},0.1,1e-4,10.0,{step / 10},1.0\n" for step in steps))
    return path


@pytest.mark.parametrize("shipped_step, logged, total", [
    (300, [100, 200, 300], 350),  # an ordinary export: its step is its total
    (380, [6000, 17920], 17970),  # an export continued before the total was kept: its curve knows better
])
def test_continues_keeps_the_checkpoint_name_and_records_the_total_step(tmp_path, shipped_step, logged, total):
    from taskgen.shards import file_sha256

    export = load_script("export_checkpoint")
    out = _folder(tmp_path / "genlv-tiny", {"arch": "genlv-tiny", "name": "genlv-tiny", "step": shipped_step},
                  logged, 1.0)
    run = _folder(tmp_path / "run2", {"arch": "genlv-tiny", "name": "run2", "step": 50,
                                      "init_sha256": file_sha256(out / "model.safetensors")}, [25, 50], 2.0)
    assert export.main([str(run), str(out), "--continues", "--dtype", "float32"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["name"] == "genlv-tiny"  # not the run folder's name
    assert config["step"] == total
    assert config["continued"] == {"previous_step": total - 50, "run_step": 50, "run_name": "run2"}
    steps = [int(line.split(",")[0]) for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == logged + [total - 25, total]  # the curve ends at the recorded step


def test_a_plain_export_keeps_the_runs_name_and_step(tmp_path):
    export = load_script("export_checkpoint")
    run = _folder(tmp_path / "run", {"arch": "genlv-tiny", "name": "genlv-s", "step": 40}, [20, 40], 1.0)
    assert export.main([str(run), str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["name"], config["step"]) == ("genlv-s", 40) and "continued" not in config


@pytest.mark.parametrize("killed", ["between the renames", "after the renames"])
def test_an_export_killed_mid_swap_is_finished_by_the_next_one(tmp_path, killed):
    import shutil

    export = load_script("export_checkpoint")
    out = _folder(tmp_path / "genlv-s", {"arch": "genlv-tiny", "name": "genlv-s", "step": 40}, [20, 40], 1.0)
    (out / "README.md").write_text("model card")
    old = tmp_path / ".genlv-s.old"
    if killed == "between the renames":  # the previous export moved aside, the new one never renamed in
        out.rename(old)
    else:  # the new export in place, the previous one not yet deleted
        shutil.copytree(out, old)
    run = _folder(tmp_path / "run", {"arch": "genlv-tiny", "name": "genlv-s", "step": 60}, [50, 60], 2.0)
    assert export.main([str(run), str(out)]) == 0
    assert not old.exists()
    assert (out / "README.md").read_text() == "model card"  # the card kept, as in an uninterrupted export
    assert json.loads((out / "config.json").read_text())["step"] == 60


def test_model_card_refuses_a_model_compared_with_itself(tmp_path, capsys):
    card = load_script("model_card")
    with pytest.raises(SystemExit):
        card.main([str(tmp_path), "identity", "--baseline", "identity"])
    assert "the model and --baseline are both 'identity'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- passthrough_probe

def test_passthrough_probe_names_an_unknown_task_plainly(tmp_path, capsys):
    import model
    from model import checkpoints
    from pipelines.synth import configure, read_params, run_synth

    shards = tmp_path / "shards"
    params = read_params(None)
    params.update({"tasks": ["gaussian_noise"], "size": 32, "samples_per_shard": 8, "summary": None,
                   "per_task": {}, "counts": {"train": 0, "test": 2, "unseen": 0}})
    run_synth(configure(params, {"out": str(shards), "workers": 1}), progress=False)
    checkpoints.save_model(model.build("genlv-tiny").eval(), tmp_path / "model.safetensors", arch="genlv-tiny")
    probe = load_script("passthrough_probe")
    assert probe.main([str(tmp_path), "--shards", str(shards), "--tasks", "nosuch", "--queries", "1",
                       "--threads", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("passthrough_probe: task 'nosuch' has no test samples in ")  # no KeyError quotes
    assert err.endswith("present: gaussian_noise")


# ----------------------------------------------------------------------------- llvbench preview

def test_preview_counts_one_task_in_the_singular(tmp_path, capsys):
    from pipelines.commands import preview

    parser = argparse.ArgumentParser()
    preview.add_arguments(parser)
    for tasks, count in (("jpeg", "1 task,"), ("jpeg,canny", "2 tasks,")):
        assert preview.run(parser.parse_args(["--tasks", tasks, "--size", "32", "--out",
                                              str(tmp_path / "sheet.png")])) == 0
        assert f"({count} " in capsys.readouterr().out
