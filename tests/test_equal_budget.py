"""scripts/equal_budget.py: its plans build, and the paper's claims are checked on real numbers."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    return load_script("equal_budget")


PLANS = yaml.safe_load((REPO / "scripts" / "equal_budget.yaml").read_text())["plans"]


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_every_model_of_a_plan_builds_at_the_plan_size(plan):
    from model.train import TrainConfig, build_network

    budget = PLANS[plan]["train"]
    names = [m["name"] for m in PLANS[plan]["models"]]
    assert len(names) == len(set(names))
    for entry in PLANS[plan]["models"]:
        config = TrainConfig(arch=entry["arch"], overrides=entry.get("overrides") or {}, size=budget["size"])
        net = build_network(config)
        assert sum(p.numel() for p in net.parameters()) > 0, entry["name"]
    assert {"steps", "batch", "size", "lr"} <= set(budget)


def _leaderboard(tmp_path, rows):
    frame = pd.DataFrame(rows, columns=["model", "task", "category", "metric", "mean"])
    frame["higher_is_better"] = frame["metric"] != "mae"
    frame["status"] = "ok"
    frame.to_parquet(tmp_path / "model_task.parquet")
    return tmp_path


def test_claims_are_decided_by_the_per_task_means(script, tmp_path):
    rows = []
    for i, task in enumerate(["gaussian_noise", "jpeg", "haze"]):
        rows += [("genlv-s", task, "restoration", "psnr", 25.0 + i), ("xrestormer-s", task, "restoration", "psnr", 24.0),
                 ("vit-vpip-s", task, "restoration", "psnr", 20.0), ("vit-s", task, "restoration", "psnr", 21.0)]
    rows += [("genlv-s", "canny", "edge", "mae", 0.10), ("xrestormer-s", "canny", "edge", "mae", 0.05),
             ("genlv-s", "canny", "edge", "psnr", 30.0)]  # an edge task's PSNR is not its headline
    table = "\n".join(script.claims_table(_leaderboard(tmp_path, rows)))
    assert "| VPIP beats the same backbone without prompt (GenLV vs X-Restormer) | 3 | 3/3 | +2.00 dB" in table
    assert "| VPIP beats the same backbone without prompt (ViT-VPIP vs ViT) | 3 | 0/3 | -1.00 dB (PSNR tasks) | no |" \
        in table
    assert "GenLV beats PromptGIP" not in table  # no PromptGIP in this run: no claim row
    assert "paired" not in table  # without the per-image results, no paired column


def test_a_failed_task_counts_as_lost_by_the_model_that_failed_it(script, tmp_path):
    nan = float("nan")
    rows = [("genlv-s", "jpeg", "restoration", "psnr", 25.0), ("promptgip-s", "jpeg", "restoration", "psnr", 20.0),
            ("genlv-s", "canny", "edge", "mae", nan), ("promptgip-s", "canny", "edge", "mae", 0.1),
            ("genlv-s", "pencil", "stylization", "psnr", 12.0), ("promptgip-s", "pencil", "stylization", "psnr", 13.0),
            ("genlv-s", "laplacian", "edge", "mae", 0.3), ("promptgip-s", "laplacian", "edge", "mae", nan),
            ("genlv-s", "rtv", "stylization", "psnr", nan), ("promptgip-s", "rtv", "stylization", "psnr", nan)]
    lb = _leaderboard(tmp_path, rows)
    table = pd.read_parquet(lb / "model_task.parquet")
    table.loc[table["mean"].isna(), "status"] = "failed"
    table.to_parquet(lb / "model_task.parquet")
    line = next(x for x in script.claims_table(lb) if x.startswith("| GenLV beats PromptGIP"))
    # rtv failed for both: left out; canny lost by GenLV, laplacian won; the mean Δ of jpeg and pencil
    assert line == "| GenLV beats PromptGIP on (almost) every task | 4 (2 failed) | 2/4 | +2.00 dB (PSNR tasks) | no |"


def test_claims_count_the_tasks_won_beyond_noise_with_the_per_image_results(script, tmp_path):
    from bench.evaluate import make_row

    rows, per_image = [], []
    # GN: GenLV better on every query by about 2 dB; JPEG: wins two queries, loses one by 5 dB (a mean of
    # -1 dB that 3 queries cannot tell from 0); haze: worse by about 1 dB on every query.
    for task, gaps in (("gaussian_noise", (2.0, 2.1, 1.9)), ("jpeg", (-5.0, 1.0, 1.0)), ("haze", (-1.0, -1.1, -0.9))):
        for model, values in (("genlv-s", [20.0 + g for g in gaps]), ("xrestormer-s", [20.0] * 3)):
            rows.append((model, task, "restoration", "psnr", sum(values) / 3))
            per_image += [make_row({"run_id": "r", "model": model, "checkpoint_sha256": "", "data_manifest_sha256": "m",
                                    "llvbench_version": "0", "device": "cpu"}, track="main", task=task,
                                   category="restoration", metric="psnr", value=v, sample_key=f"{task}/test/{i:06d}",
                                   prompt_key="p", prompt_task=task) for i, v in enumerate(values)]
    table = "\n".join(script.claims_table(_leaderboard(tmp_path, rows), pd.DataFrame(per_image)))
    assert "better / within noise / worse (paired 95 %) |" in table
    assert "| VPIP beats the same backbone without prompt (GenLV vs X-Restormer) | 3 | 1/3 |" in table
    assert table.rstrip().endswith("| 1 / 1 / 1 |")  # GN better, JPEG within noise, haze worse
    assert script.family("vit-vpip-tiny") == "vit-vpip" and script.family("vit-tiny") == "vit"


def test_commands_are_shown_relative_to_the_repository(script):
    import sys

    line = script.shown([sys.executable, "-m", "pipelines.cli", "train", "--out", f"{REPO}/out/x", "--name", "a b"])
    assert line == "python -m pipelines.cli train --out out/x --name 'a b'"


def test_a_plan_run_in_two_parts_is_summarised_from_the_work_folder(script, tmp_path):
    # One model per run (as one device lease each), then --summarise builds the comparison.
    from pipelines.synth import configure, read_params, run_synth

    shards = tmp_path / "shards"
    params = read_params(None)
    params.update({"tasks": ["gaussian_noise", "canny"], "size": 64, "samples_per_shard": 8, "summary": None,
                   "per_task": {}, "counts": {"train": 8, "test": 2, "unseen": 0}})
    run_synth(configure(params, {"out": str(shards), "workers": 1}), progress=False)
    plans = tmp_path / "plans.yaml"
    plans.write_text(yaml.safe_dump({"plans": {"tiny": {
        "description": "two tiny models", "references": ["identity"],
        "train": {"steps": 1, "batch": 2, "size": 64, "lr": 0.001, "warmup": 0, "seed": 0, "threads": 1,
                  "log_every": 1, "ckpt_every": 1},
        "eval": {"limit": 1, "tracks": ["main"], "batch_size": 2},
        "models": [{"name": "genlv-tiny", "arch": "genlv-tiny"},
                   {"name": "xrestormer-tiny", "arch": "xrestormer-s",
                    "overrides": {"dim": 12, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1}}]}}}))
    work, out = tmp_path / "work", tmp_path / "out"
    common = ["--plan", "tiny", "--plans", str(plans), "--shards", str(shards), "--work", str(work),
              "--out", str(out), "--device", "cpu"]
    assert script.main(common + ["--only", "genlv-tiny", "--train-only"]) == 0
    assert (work / "genlv-tiny" / "summary.json").exists()
    # The plan changed after that run (another lr): it is neither kept nor resumed under the new budget.
    changed = tmp_path / "changed.yaml"
    changed.write_text(plans.read_text().replace("lr: 0.001", "lr: 0.0003"))
    with pytest.raises(SystemExit, match=r"genlv-tiny was trained with lr 0.001 \(plan: 0.0003\)"):
        script.main(common + ["--plans", str(changed), "--only", "genlv-tiny", "--train-only"])
    assert not (work / "eval").exists() and not out.exists()  # trained, nothing evaluated
    with pytest.raises(SystemExit, match="xrestormer-tiny"):  # not trained yet: named, nothing written
        script.main(common + ["--summarise"])
    with pytest.raises(SystemExit):  # a missing notes file is an argument error, not a traceback
        script.main(common + ["--summarise", "--notes", str(tmp_path / "absent.md")])
    # --finished-only: the trained model is evaluated; the other is neither trained nor evaluated
    assert script.main(common + ["--finished-only"]) == 0
    assert not (work / "xrestormer-tiny" / "summary.json").exists()
    assert set(pd.read_parquet(out / "model_task.parquet")["model"]) == {"identity", "genlv-tiny"}
    assert script.main(common) == 0  # genlv-tiny kept, xrestormer-tiny trained, both evaluated
    (out / "README.md").unlink()
    notes = tmp_path / "notes.md"
    notes.write_text("Trained in two leases; xrestormer-tiny second.\n")
    assert script.main(common + ["--summarise", "--notes", str(notes)]) == 0
    readme = (out / "README.md").read_text()
    assert "training on cpu" in readme and "genlv-tiny" in readme and "xrestormer-tiny" in readme
    # provenance from the models' own files: their shards, the --device they trained with, the commit
    # equal_budget stamped when it trained them; this checkout's HEAD only as "summarised at"
    assert f"- **Data:** `{shards}` (train split" in readme
    assert "(`--device cpu`), evaluation on cpu" in readme
    assert re.search(r"- \*\*Commit:\*\* trained at [0-9a-f]{7,}[^;]*\(summary\.json\); summarised at ", readme)
    assert f"--shards {shards} --device cpu`" in readme
    assert "## Notes\n\nTrained in two leases; xrestormer-tiny second.\n" in readme
    assert "| samples/s (steady) |" in readme
    for chart in ("category_means.png", "training_curves.png"):  # drawn and shown
        assert (out / chart).stat().st_size > 0 and f"]({chart})" in readme
    board = pd.read_parquet(out / "model_task.parquet")
    assert {"identity", "genlv-tiny", "xrestormer-tiny"} <= set(board["model"])
    # Summarised under another budget than the models trained with: refused, the README left alone
    before = readme
    with pytest.raises(SystemExit, match=r"not the plan's budget: .*genlv-tiny trained with step 1 \(plan: 5\)"):
        script.main(common + ["--summarise", "--steps", "5"])
    with pytest.raises(SystemExit, match=r"genlv-tiny trained with lr 0.001 \(plan: 0.0003\)"):
        script.main(common + ["--plans", str(changed), "--summarise"])
    assert (out / "README.md").read_text() == before
    assert yaml.safe_load((work / "params.yaml").read_text())["train"]["steps"] == 1


def test_the_steady_rate_leaves_out_the_first_logged_window(script, tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("step,loss,lr,samples_per_s,elapsed,grad_norm\n"
                       "50,0.2,1e-4,19.5,90.5,1\n100,0.1,1e-4,145.0,101.5,1\n150,0.1,1e-4,143.0,112,1\n"
                       "200,0.1,1e-4,146.0,123,1\n")
    assert script.steady_rate(metrics) == 145.0
    assert script.steady_rate(tmp_path / "missing.csv") != script.steady_rate(tmp_path / "missing.csv")  # NaN


def test_the_commit_line_ignores_the_output_folder_only(script, tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "table.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.setattr(script, "REPO", tmp_path)
    (tmp_path / "out" / "table.md").write_text("new\n")  # what the run itself just wrote
    assert "uncommitted" not in script.git_commit(tmp_path / "out")
    assert "uncommitted" in script.git_commit()
    (tmp_path / "code.py").write_text("x = 2\n")  # a real change elsewhere still shows
    assert "uncommitted" in script.git_commit(tmp_path / "out")


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--size", "0"], "--size must be >= 1, got 0"),
    (["--size", "-64"], "--size must be >= 1, got -64"),
    (["--plans", "/nonexistent/plans.yaml"], "--plans /nonexistent/plans.yaml: cannot read it"),
])
def test_bad_options_are_one_line_errors_before_anything_starts(script, tmp_path, capsys, argv, message):
    work = tmp_path / "work"
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--plan", "cpu", "--work", str(work), "--out", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not work.exists()  # refused before the plan's work folder is made, let alone training


def test_a_plans_file_that_is_not_a_plans_mapping_is_an_argument_error(script, tmp_path, capsys):
    for text, message in (("plans: [1\n", "not valid YAML"), ("x: 1\n", "expected a 'plans' mapping"),
                          ("plans: {cpu: {train: {}}}\n", "expected a 'plans' mapping")):
        plans = tmp_path / "plans.yaml"
        plans.write_text(text)
        with pytest.raises(SystemExit):
            script.main(["--plan", "cpu", "--plans", str(plans), "--work", str(tmp_path / "w")])
        assert message in capsys.readouterr().err


def _trained_elsewhere(work, name, shards, device, gpu, commit=None, eval_device="cuda (NVIDIA H200)"):
    """A model folder as one trained on another machine leaves it: config.json, summary.json, eval run.json."""
    import json

    (work / name).mkdir(parents=True)
    (work / name / "config.json").write_text(json.dumps({"name": name, "train": {"shards": shards, "device": device}}))
    summary = {"status": "completed", "device": gpu}
    if commit:
        summary["equal_budget"] = {"commit": commit}
    (work / name / "summary.json").write_text(json.dumps(summary))
    (work / "eval" / name).mkdir(parents=True)
    (work / "eval" / name / "run.json").write_text(json.dumps(
        {"provenance": {"device": eval_device, "llvbench_version": "0+unknown"}}))


def _summarise_args(script, argv):
    import argparse

    args = argparse.Namespace(plan="gpu-lease", plans=str(script.PLANS), shards="data/shards", device=None,
                              steps=None, size=None, summarise=True)
    for key, value in argv.items():
        setattr(args, key, value)
    return args


def test_summarise_reports_the_data_device_and_commit_the_models_record(script, tmp_path, monkeypatch):
    monkeypatch.setattr(script, "git_commit", lambda out=None: "feed123")  # this checkout's HEAD
    plan = PLANS["gpu-lease"]
    models = plan["models"][:2]
    work = tmp_path / "work"
    for model in models:
        _trained_elsewhere(work, model["name"], "/tmp/session/shards", "cuda", "NVIDIA H200")
    # summarised without --shards or --device: the records, not the defaults, are reported
    lines = script.provenance_lines(_summarise_args(script, {}), plan, models, work, tmp_path / "out")
    text = "\n".join(lines)
    assert lines[0].startswith("- **Data:** `/tmp/session/shards` (train split")
    assert "data/shards" not in text
    assert lines[1] == ("- **Device:** training on NVIDIA H200 (`--device cuda`), evaluation on cuda (NVIDIA H200) "
                        "(from the models' summary.json, config.json and eval run.json).")
    assert lines[2].startswith("- **Commit:** not recorded by the models") and lines[2].endswith(
        "; summarised at feed123.")
    names = ",".join(m["name"] for m in models)
    assert lines[3] == (f"- **Rerun:** `python scripts/equal_budget.py --plan gpu-lease --only {names} "
                        "--shards /tmp/session/shards --device cuda`")


def test_summarise_lists_the_records_when_the_models_differ(script, tmp_path, monkeypatch):
    monkeypatch.setattr(script, "git_commit", lambda out=None: "feed123")
    plan = PLANS["gpu-lease"]
    first, second, third = (m["name"] for m in plan["models"][:3])
    work = tmp_path / "work"
    _trained_elsewhere(work, first, "/tmp/a", "cuda", "NVIDIA H200", commit="50f0aa1")
    _trained_elsewhere(work, second, "/tmp/a", "cuda", "NVIDIA H200", commit="50f0aa1")
    _trained_elsewhere(work, third, "/tmp/b", "cpu", "cpu (2 threads)", commit="804c820", eval_device="cpu")
    lines = script.provenance_lines(_summarise_args(script, {"shards": "/ignored"}), plan, plan["models"][:3],
                                    work, tmp_path / "out")
    assert lines[0].startswith(f"- **Data:** `/tmp/a` ({first}, {second}); `/tmp/b` ({third}) (train split")
    assert f"training on NVIDIA H200 ({first}, {second}); cpu (2 threads) ({third})" in lines[1]
    assert f"evaluation on cuda (NVIDIA H200) ({first}, {second}); cpu ({third})" in lines[1]
    assert lines[2] == (f"- **Commit:** trained at 50f0aa1 ({first}, {second}); 804c820 ({third}) (summary.json); "
                        "summarised at feed123.")
    assert f"`python scripts/equal_budget.py --plan gpu-lease --only {first},{second} --shards /tmp/a --device cuda`" \
        in lines[3]
    assert f"`python scripts/equal_budget.py --plan gpu-lease --only {third} --shards /tmp/b --device cpu`" in lines[3]
    assert "/ignored" not in "\n".join(lines)


def test_training_stamps_the_commit_into_the_summary(script, tmp_path, monkeypatch):
    import json

    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"status": "completed", "step": 3}))
    monkeypatch.setattr(script, "git_commit", lambda out=None: "unknown")  # no git (a device copy): nothing
    script.stamp_commit(summary)
    assert "equal_budget" not in json.loads(summary.read_text())
    monkeypatch.setattr(script, "git_commit", lambda out=None: "abc1234 (with uncommitted changes)")
    script.stamp_commit(summary)
    assert json.loads(summary.read_text()) == {"status": "completed", "step": 3,
                                               "equal_budget": {"commit": "abc1234 (with uncommitted changes)"}}
    script.stamp_commit(tmp_path / "absent.json")  # a run that wrote no summary: nothing to stamp
    assert not (tmp_path / "absent.json").exists()


def test_a_tree_without_git_takes_its_commit_from_the_environment(script, tmp_path, monkeypatch):
    monkeypatch.setattr(script, "REPO", tmp_path)  # not a git repository, like the device machine's copy
    monkeypatch.delenv("LLVBENCH_COMMIT", raising=False)
    assert script.git_commit() == "unknown"
    monkeypatch.setenv("LLVBENCH_COMMIT", "abc1234")
    assert script.git_commit() == "abc1234"


def _per_image(model, task, values, manifest="m", metric="psnr", category="restoration"):
    from bench.evaluate import make_row

    return [make_row({"run_id": "r", "model": model, "checkpoint_sha256": model, "data_manifest_sha256": manifest,
                      "llvbench_version": "0", "device": "cpu"}, track="main", task=task, category=category,
                     metric=metric, value=v, sample_key=f"{task}/test/{i:06d}", prompt_key="p", prompt_task=task)
            for i, v in enumerate(values)]


def test_against_compares_each_model_with_its_namesake_query_by_query(script, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "params.yaml").write_text(yaml.safe_dump({"train": {"steps": 600, "batch": 8, "size": 64}}))
    models = [{"name": "genlv-tiny"}, {"name": "vit-tiny"}, {"name": "new-model"}]
    # GN better by about 2 dB on every query; JPEG -1 dB on average, which 3 queries cannot tell from 0;
    # canny (MAE, lower is better) better on every query; vit-tiny's queries worse by 1 dB.
    here = (_per_image("genlv-tiny", "gaussian_noise", [22.0, 22.1, 21.9]) + _per_image("genlv-tiny", "jpeg", [15.0, 21.0, 21.0])
            + _per_image("genlv-tiny", "canny", [0.1, 0.1, 0.11], metric="mae", category="edge")
            + _per_image("vit-tiny", "gaussian_noise", [19.0, 19.1, 18.9]) + _per_image("new-model", "jpeg", [30.0] * 3))
    there = (_per_image("genlv-tiny", "gaussian_noise", [20.0] * 3) + _per_image("genlv-tiny", "jpeg", [20.0] * 3)
             + _per_image("genlv-tiny", "canny", [0.2, 0.21, 0.2], metric="mae", category="edge")
             + _per_image("vit-tiny", "gaussian_noise", [20.0] * 3) + _per_image("painter-tiny", "jpeg", [9.0] * 3))
    lines = script.against_table(models, pd.DataFrame(here), other, pd.DataFrame(there))
    text = "\n".join(lines)
    assert "(600 steps × batch 8 = 4,800 samples at 64 px)" in text
    assert "Caution" not in text  # the same data manifest
    # mean Δ over the PSNR tasks only: (+2 - 1) / 2; canny counts in the wins and the paired verdicts
    assert "| genlv-tiny | 3 | 2/3 | +0.50 dB | 2 / 1 / 0 |" in lines
    assert "| vit-tiny | 1 | 0/1 | -1.00 dB | 0 / 0 / 1 |" in lines
    assert "new-model" not in text and "painter-tiny" not in text  # only in one of the runs

    moved = pd.DataFrame(there).assign(data_manifest_sha256="abcdef0123")
    text = "\n".join(script.against_table(models, pd.DataFrame(here), other, moved))
    assert "**Caution:** the two runs scored data of other manifests (abcdef01 there, m here)" in text


def test_against_names_the_models_it_cannot_pair(script, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    models = [{"name": "genlv-tiny"}, {"name": "vit-tiny"}]
    here = _per_image("genlv-tiny", "gaussian_noise", [22.0] * 3) + _per_image("vit-tiny", "gaussian_noise", [19.0] * 3)
    # genlv-tiny was retrained there and evaluated again: two checkpoints under one name
    there = (_per_image("genlv-tiny", "gaussian_noise", [20.0] * 3)
             + [dict(row, checkpoint_sha256="retrained") for row in _per_image("genlv-tiny", "jpeg", [20.0] * 3)]
             + _per_image("vit-tiny", "gaussian_noise", [18.0] * 3))
    lines = script.against_table(models, pd.DataFrame(here), other, pd.DataFrame(there))
    assert "| vit-tiny | 1 | 1/1 | +1.00 dB | 1 / 0 / 0 |" in lines
    assert not any(line.startswith("| genlv-tiny") for line in lines)
    assert lines[-1] == ("Not compared: genlv-tiny (there: results of several checkpoints under this name; "
                         "evaluate the one to compare into a fresh eval folder).")
    assert "not compared: genlv-tiny (there: results of several checkpoints" in capsys.readouterr().err

    only_genlv = pd.DataFrame(there)[lambda df: df["model"] == "genlv-tiny"]
    lines = script.against_table(models[:1], pd.DataFrame(here), other, only_genlv)
    assert lines == ["Not compared: genlv-tiny (there: results of several checkpoints under this name; "
                     "evaluate the one to compare into a fresh eval folder)."]


def test_against_needs_a_work_folder_with_results(script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        script.main(["--plan", "cpu", "--summarise", "--against", str(tmp_path)])
    assert f"--against {tmp_path}: no eval/ folder there" in capsys.readouterr().err
