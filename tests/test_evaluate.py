"""bench.evaluate on a tiny synthesized test split: scores, provenance, tracks, bad plug-ins, resume."""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from torch import nn

import bench
from bench import metrics as M
from bench.evaluate import EvalConfig, evaluate, evaluate_spec
from bench.results import NOT_MEASURED, read_results
from taskgen.testset import TestSplit

TASKS = "gaussian_noise,gaussian_blur,canny,sdr_to_hdr"
MISMATCH = (("gaussian_blur", "clean"), ("canny", "gaussian_noise"))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from pipelines.synth import configure, read_params, run_synth

    out = tmp_path_factory.mktemp("shards")
    config = configure(read_params(None), {"out": str(out), "tasks": TASKS, "splits": "test", "n_test": 4,
                                           "size": 64, "workers": 1, "summary": ""})
    run_synth(config, progress=False)
    return TestSplit(out)


def rows_of(out, **where):
    df = read_results([out])
    for key, value in where.items():
        df = df[df[key] == value]
    return df


class Identity:
    name = "plain-identity"

    def predict(self, query, prompt_input, prompt_target):
        return query.clone()


class FailsFirstCall(Identity):
    name = "flaky"

    def __init__(self):
        self.calls = 0

    def predict(self, query, prompt_input, prompt_target):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return query


class InterruptAt(Identity):
    def __init__(self, call):
        self.call, self.calls = call, 0

    def predict(self, query, prompt_input, prompt_target):
        self.calls += 1
        if self.calls == self.call:
            raise KeyboardInterrupt
        return query


class Returns(Identity):
    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def predict(self, query, prompt_input, prompt_target):
        return self.fn(query)


def test_identity_scores_equal_direct_metrics_and_rows_carry_provenance(split, tmp_path):
    outcomes = evaluate(bench.load_generalist("identity"), split, tmp_path, EvalConfig(), run_id="run-1")
    assert [o.status for o in outcomes] == ["done"] * len(split.tasks)
    df = read_results([tmp_path])
    assert set(df["task"]) == set(split.tasks) and (df["status"] == "ok").all()
    for task in ("gaussian_noise", "gaussian_blur"):
        pairs = {p.key: p for p in split.pairs(task)}
        got = df[(df["task"] == task)].set_index(["sample_key", "metric"])["value"]
        for key, p in pairs.items():
            assert got[(key, "psnr")] == pytest.approx(float(M.psnr(p.input, p.target)), abs=1e-9)
            assert got[(key, "ssim")] == pytest.approx(float(M.ssim(p.input, p.target)), abs=1e-9)
    canny = df[df["task"] == "canny"]
    assert set(canny["metric"]) == {"mae", "psnr"} and not canny[canny["metric"] == "mae"]["higher_is_better"].any()
    # HDR target: the 8-bit query is scored on the uint16 scale (x/255 -> rint(x/255*65535) = 257x).
    hdr = df[(df["task"] == "sdr_to_hdr") & (df["metric"] == "psnr")].set_index("sample_key")["value"]
    for p in split.pairs("sdr_to_hdr"):
        assert p.target.dtype == np.uint16
        expected = M.psnr(p.input.astype(np.uint16) * 257, p.target)
        assert hdr[p.key] == pytest.approx(float(expected), abs=1e-9)
    assert df[df["task"] == "sdr_to_hdr"]["convention"].str.contains("uint16").all()
    row = df.iloc[0]
    assert row["model"] == "identity" and row["run_id"] == "run-1" and row["device"] == "cpu"
    assert row["data_manifest_sha256"] == split.manifest_sha256 and row["llvbench_version"]
    assert row["prompt_rule"].startswith("next-other-source") and row["prompt_key"] != row["sample_key"]
    assert (tmp_path / "identity" / "run.json").is_file()


def test_a_failing_plugin_is_recorded_and_the_run_goes_on(split, tmp_path):
    outcomes = evaluate(FailsFirstCall(), split, tmp_path, EvalConfig())
    status = {o.unit: o.status for o in outcomes}
    first = split.tasks[0]
    assert status[first] == "failed" and all(status[t] == "done" for t in split.tasks[1:])
    failed = rows_of(tmp_path, task=first)
    assert len(failed) == 1 and failed["status"].iloc[0] == "failed" and math.isnan(failed["value"].iloc[0])
    assert failed["convention"].iloc[0] == NOT_MEASURED  # every row states its convention
    assert "predict() raised RuntimeError: CUDA out of memory (simulated)" in failed["error"].iloc[0]
    # and where: the plug-in's own line, to start looking from
    assert re.search(r"\(at .*test_evaluate\.py:\d+ in predict\)$", failed["error"].iloc[0])


def test_a_failed_unit_logs_its_traceback_only_when_verbose(split, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="bench"):
        evaluate(FailsFirstCall(), split, tmp_path / "quiet", EvalConfig())
    assert "Traceback" not in caplog.text and "failed: " in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="bench"):
        evaluate(FailsFirstCall(), split, tmp_path / "verbose", EvalConfig())
    assert "Traceback (most recent call last)" in caplog.text and "CUDA out of memory (simulated)" in caplog.text


@pytest.mark.parametrize("name, fn, message", [
    ("wrong-shape", lambda q: q[..., :-1], "shape"),
    ("nan", lambda q: q * float("nan"), "NaN"),
    ("scale-255", lambda q: q * 255, "0-255"),
    ("numpy", lambda q: q.numpy(), "torch.Tensor"),
])
def test_bad_outputs_fail_every_unit_without_a_score(split, tmp_path, name, fn, message):
    outcomes = evaluate(Returns(name, fn), split, tmp_path, EvalConfig(tasks=("gaussian_noise", "canny")))
    assert [o.status for o in outcomes] == ["failed", "failed"]
    df = read_results([tmp_path])
    assert (df["status"] == "failed").all() and df["value"].isna().all()
    assert df["error"].str.contains(message).all()


def test_failed_units_are_retried_on_the_next_run(split, tmp_path):
    config = EvalConfig(tasks=("gaussian_noise", "canny"))
    first = evaluate(FailsFirstCall(), split, tmp_path, config)
    assert [o.status for o in first] == ["failed", "done"]
    fixed = FailsFirstCall()
    fixed.calls = 1  # the same model, now working (say the GPU has memory again)
    second = evaluate(fixed, split, tmp_path, config)
    assert [o.status for o in second] == ["done", "skipped"]
    assert (read_results([tmp_path])["status"] == "ok").all()


def test_load_failures_are_recorded_and_cleared_by_a_later_load(split, tmp_path):
    outcomes = evaluate_spec("no_such_module_abc:Model", {}, split, tmp_path)
    assert outcomes[0].status == "failed" and "no module named 'no_such_module_abc'" in outcomes[0].error
    df = read_results([tmp_path])
    assert list(df["track"]) == ["load"] and df["error"].iloc[0].startswith("cannot load generalist")
    assert evaluate_spec("identity", {"colour": "red"}, split, tmp_path)[0].status == "failed"
    assert (tmp_path / "identity" / "load.parquet").is_file()
    ok = evaluate_spec("identity", {}, split, tmp_path, EvalConfig(tasks=("canny",)))
    assert ok[0].status == "done" and not (tmp_path / "identity" / "load.parquet").exists()


def test_a_killed_run_resumes_where_it_stopped(split, tmp_path):
    config = EvalConfig(tasks=("gaussian_noise", "gaussian_blur", "canny"))
    with pytest.raises(KeyboardInterrupt):
        evaluate(InterruptAt(call=2), split, tmp_path, config)  # dies in the second task
    done = sorted(p.name for p in (tmp_path / "plain-identity" / "main").glob("*.parquet"))
    assert done == ["gaussian_noise.parquet"]
    before = (tmp_path / "plain-identity" / "main" / "gaussian_noise.parquet").stat().st_mtime_ns
    outcomes = evaluate(InterruptAt(call=0), split, tmp_path, config)  # the same model, not interrupted
    assert [(o.unit, o.status) for o in outcomes] == [
        ("gaussian_noise", "skipped"), ("gaussian_blur", "done"), ("canny", "done")]
    assert (tmp_path / "plain-identity" / "main" / "gaussian_noise.parquet").stat().st_mtime_ns == before
    # Other settings answer another question: the unit is evaluated again.
    again = evaluate(InterruptAt(call=0), split, tmp_path, EvalConfig(tasks=("gaussian_noise",), limit=2))
    assert again[0].status == "done" and len(rows_of(tmp_path, task="gaussian_noise")) == 2 * 2


def test_robustness_uses_the_same_queries_for_every_prompt(split, tmp_path):
    config = EvalConfig(tracks=("robustness",), tasks=("gaussian_noise",), robustness_prompts=2)
    evaluate(bench.load_generalist("identity"), split, tmp_path, config)
    evaluate(bench.load_generalist("prompt-target"), split, tmp_path, config)
    df = read_results([tmp_path])
    photo = {p.key: p.source_image for p in split.pairs("gaussian_noise")}
    for model, group in df.groupby("model"):
        prompts = set(group["prompt_key"])
        queries = [set(g["sample_key"]) for _, g in group.groupby("prompt_key")]
        assert len(prompts) == 2 and all(q == queries[0] for q in queries) and queries[0]
        assert not {photo[k] for k in prompts} & {photo[k] for k in queries[0]}  # no shared photo
        assert set(group["metric"]) == {"psnr"}
    per_prompt = df.groupby(["model", "prompt_key"])["value"].mean()
    assert per_prompt["identity"].std() == 0.0  # ignores the prompt
    assert per_prompt["prompt-target"].std() > 0.0  # copies it


def test_robustness_plan_separates_photos_and_caps_k():
    from types import SimpleNamespace

    from bench.tracks import robustness_plan

    photos = ["a", "b", "c", "d", "e", "f", "g"]
    pairs = [SimpleNamespace(key=f"t/test/{i:06d}", source_image=photos[i % 7]) for i in range(16)]
    prompts, queries, _ = robustness_plan(pairs, k=20, seed=0, task_index=3, limit=None)
    assert 0 < len(prompts) < 16 and len({p.key for p in prompts}) == len(prompts)
    assert queries and not {p.source_image for p in prompts} & {q.source_image for q in queries}
    assert robustness_plan(pairs, 20, 0, 3, None) == (prompts, queries, _)  # seeded
    one_photo = [SimpleNamespace(key=str(i), source_image="x") for i in range(5)]
    prompts, queries, note = robustness_plan(one_photo, k=20, seed=0, task_index=3, limit=None)
    assert len(prompts) == 3 and len(queries) == 2 and not {p.key for p in prompts} & {q.key for q in queries}
    assert "one source photo" in note and "3 prompts, not 20: the prompt half holds only 3 pairs" in note
    assert "prompts, not" not in robustness_plan(one_photo, k=3, seed=0, task_index=3, limit=None)[2]


def test_robustness_refuses_a_single_prompt_rather_than_report_a_spread_of_0():
    from types import SimpleNamespace

    from bench.tracks import TrackError, robustness_plan

    # 3 pairs of 2 photos: one photo's single pair would be every prompt there is
    pairs = [SimpleNamespace(key=f"t/test/{i}", source_image=photo) for i, photo in enumerate("aab")]
    for seed in range(6):
        try:
            prompts, _, _ = robustness_plan(pairs, k=5, seed=seed, task_index=0, limit=None)
        except TrackError as error:
            assert "at least 2 prompts" in str(error) and "holds 1" in str(error) and "2 source photos" in str(error)
        else:
            assert len(prompts) == 2


def test_mismatch_measures_keeping_the_query_and_applying_the_prompt(split, tmp_path):
    config = EvalConfig(tracks=("mismatch",), mismatch_pairs=MISMATCH + (("jpeg", "gaussian_noise"),))
    outcomes = evaluate(bench.load_generalist("identity"), split, tmp_path, config)
    assert sorted(o.unit for o in outcomes) == ["canny__on__gaussian_noise", "gaussian_blur__on__clean"]  # no jpeg
    df = read_results([tmp_path])
    keeps = df[df["metric"] == "psnr_to_query"]
    assert (keeps["value"] == M.PSNR_CAP_DB).all()  # identity keeps every query exactly
    clean = df[df["task"] == "clean"]
    # A deblurring prompt's reference on a clean image is the image itself: both numbers agree.
    assert set(clean["prompt_task"]) == {"gaussian_blur"} and (clean["value"] == M.PSNR_CAP_DB).all()
    edges = df[(df["prompt_task"] == "canny") & (df["metric"] == "psnr_to_prompt_task")]
    assert len(edges) > 0 and (edges["value"] < 20).all()  # an unchanged photo is far from its edge map
    prompt_keys = set(df["prompt_key"])
    assert not prompt_keys & set(df["sample_key"])


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        nn.init.dirac_(self.conv.weight)

    def forward(self, x):
        return self.conv(x)


class ConvGeneralist:
    name = "conv"

    def __init__(self):
        self.network = Conv()

    def predict(self, query, prompt_input, prompt_target):
        return self.network(query)


def test_efficiency_counts_parameters_flops_and_latency(split, tmp_path):
    config = EvalConfig(tracks=("efficiency",), latency_repeats=3, latency_warmup=1)
    evaluate(ConvGeneralist(), split, tmp_path, config)
    values = rows_of(tmp_path).set_index("metric")["value"]
    assert values["params"] == 81
    assert values["flops_256"] == 2 * 3 * 3 * 9 * 256 * 256  # one 3x3 conv, 3->3 channels, 256x256
    assert 0 < values["latency_ms"] < 1000 and math.isnan(values["peak_memory_mib"])
    assert "official_latency_ms" not in values  # no official code measured for this network


def test_efficiency_is_measured_again_when_its_warm_up_query_size_or_cpu_changes(split, tmp_path, monkeypatch):
    import torch

    from bench import tracks

    def status(**kwargs):
        config = EvalConfig(tracks=("efficiency",), latency_repeats=1, latency_warmup=0)
        return [o.status for o in evaluate(ConvGeneralist(), split, tmp_path, replace(config, **kwargs))]

    assert status() == ["done"] and status() == ["skipped"]
    assert status(latency_warmup=2) == ["done"]                        # another warm-up
    assert status(latency_warmup=2, tasks=("canny",)) == ["skipped"]   # the same size of query
    monkeypatch.setattr(tracks, "cpu_name", lambda: "Another CPU")
    assert status(latency_warmup=2) == ["done"]
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    assert status(latency_warmup=2) == ["done"]
    monkeypatch.setattr(tracks, "latency_pair", lambda ctx: None)      # timed on a flops_size square
    assert status(latency_warmup=2) == ["done"]
    assert tracks.cpu_name()


class PainterLikeGeneralist(ConvGeneralist):
    name = "painter-reimplementation"

    def info(self):
        return {"arch": "painter"}


def test_efficiency_reports_the_official_codes_latency_next_to_ours(split, tmp_path):
    from bench.leaderboard import build_leaderboards, to_markdown
    from bench.peers import PEERS

    evaluate(PainterLikeGeneralist(), split, tmp_path, EvalConfig(tracks=("efficiency",), latency_repeats=1))
    rows = rows_of(tmp_path).set_index("metric")
    assert rows.loc["official_latency_ms", "value"] == PEERS["painter"].inference_ms_b1
    assert "H200" in rows.loc["official_latency_ms", "convention"]
    text = to_markdown(build_leaderboards(read_results([tmp_path])))
    assert "official code (ms/image, H200)" in text and f"| {PEERS['painter'].inference_ms_b1:.1f} |" in text


def test_eval_command_writes_results_and_leaderboards(split, tmp_path, capsys, monkeypatch):
    from pipelines.commands import eval as eval_cmd

    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    (tmp_path / "broken_plugin.py").write_text("def Model(**options):\n    raise OSError('weights file missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = parser.parse_args(["--model", "identity", "--model", "broken_plugin:Model", "--shards", str(split.root),
                              "--tasks", "restoration", "--limit", "2", "--out", str(tmp_path / "res"),
                              "--leaderboard", str(tmp_path / "lb"), "--strict"])
    assert eval_cmd.run(args) == 1  # --strict: the plug-in that fails to load makes the run fail
    assert "identity: 2 done" in capsys.readouterr().out
    df = read_results([tmp_path / "res"])
    assert set(df[df["model"] == "identity"]["task"]) == {"gaussian_noise", "gaussian_blur"}
    assert (tmp_path / "lb" / "leaderboard.md").is_file() and (tmp_path / "lb" / "metrics.json").is_file()
    with pytest.raises(ValueError, match="not in the test split"):
        eval_cmd.run(parser.parse_args(["--model", "identity", "--shards", str(split.root), "--tasks", "jpeg",
                                        "--out", str(tmp_path / "res2")]))
    with pytest.raises(ValueError, match="'sepia' is not in the test split .*; it is a task of the unseen split: "
                                         "--split unseen"):
        eval_cmd.run(parser.parse_args(["--model", "identity", "--shards", str(split.root), "--tasks", "sepia",
                                        "--out", str(tmp_path / "res2")]))
    # A spec that names nothing is a usage error before any model runs: nothing is written.
    with pytest.raises(bench.GeneralistNotFound, match="no module named 'typo_plugn'"):
        eval_cmd.run(parser.parse_args(["--model", "identity", "--model", "typo_plugn:Model", "--shards",
                                        str(split.root), "--out", str(tmp_path / "res3")]))
    assert not (tmp_path / "res3").exists()


def test_eval_command_resolves_the_device_once(tmp_path):
    import torch

    from pipelines.commands import eval as eval_cmd

    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    base = ["--model", "identity", "--out", str(tmp_path)]
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert eval_cmd.model_options(parser.parse_args(base + ["--device", "auto"]))["device"] == expected
    assert eval_cmd.model_options(parser.parse_args(base + ["-o", "device=auto"]))["device"] == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' asked for, but CUDA is not available"):
            eval_cmd.model_options(parser.parse_args(base + ["--device", "cuda"]))


SCALED_PLUGIN = '''
class Scaled:
    """Multiplies the query by the number in its checkpoint file, times gain; hashes nothing itself."""

    def __init__(self, checkpoint, gain=1.0, device="cpu"):
        self.name = "scaled"
        self.factor = float(open(checkpoint).read()) * gain
        self.device = device

    def info(self):
        return {"device": self.device}

    def predict(self, query, prompt_input, prompt_target):
        return (query * self.factor).clamp(0, 1)
'''


def test_checkpoint_contents_and_options_decide_whether_a_unit_is_reused(split, tmp_path, monkeypatch, caplog):
    import hashlib

    (tmp_path / "scaled_plugin.py").write_text(SCALED_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "copy").mkdir()
    for name, text in (("a.txt", "1.0"), ("b.txt", "0.5"), ("copy/a.txt", "1.0")):
        (tmp_path / name).write_text(text)
    out, config = tmp_path / "res", EvalConfig(tasks=("gaussian_noise",), limit=2)

    def statuses(checkpoint, force=False, **options):
        return [o.status for o in evaluate_spec("scaled_plugin:Scaled", {"checkpoint": str(tmp_path / checkpoint),
                                                                         **options}, split, out, config, force=force)]

    assert statuses("a.txt") == ["done"]
    assert statuses("copy/a.txt", device="cpu") == ["skipped"]  # the same weights under another path
    with caplog.at_level("WARNING", logger="bench.evaluate"):
        assert statuses("b.txt") == ["done"]                     # other weights: scored again ...
    assert "came from checkpoint " + hashlib.sha256(b"1.0").hexdigest()[:12] in caplog.text  # ... and said so
    assert statuses("b.txt", gain=2.0) == ["done"]               # another option: scored again
    assert statuses("b.txt", gain=2.0) == ["skipped"]
    assert statuses("b.txt", force=True, gain=2.0) == ["done"]   # --force: after the plug-in's code changed
    df = read_results([out])
    assert set(df["checkpoint_sha256"]) == {hashlib.sha256(b"0.5").hexdigest()}  # hashed by the bench


def test_a_stale_load_failure_neither_relabels_nor_outlives_a_good_load(split, tmp_path, monkeypatch):
    from bench.leaderboard import build_leaderboards

    (tmp_path / "named_plugin.py").write_text(
        "class Named:\n    name = 'named-model'\n\n    def predict(self, query, prompt_input, prompt_target):\n"
        "        return query\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out, config = tmp_path / "res", EvalConfig(tasks=("gaussian_noise",), limit=2)
    assert evaluate_spec("named_plugin:Named", {}, split, out, config)[0].status == "done"
    # Asking for the model by its name alone (say, the checkpoint option forgotten) fails to load ...
    assert evaluate_spec("named-model", {}, split, out, config)[0].status == "failed"
    assert (out / "named-model" / "load.parquet").is_file()
    lb = build_leaderboards(read_results([out]))
    assert set(lb.model_task["model"]) == {"named-model"}  # ... and does not count as a second checkpoint
    assert list(lb.failures["track"]) == ["load"]
    assert evaluate_spec("named_plugin:Named", {}, split, out, config)[0].status == "skipped"
    assert not (out / "named-model" / "load.parquet").exists()  # the good load clears the stale failure


def test_two_names_for_one_results_folder_are_refused(split, tmp_path):
    config = EvalConfig(tasks=("gaussian_noise",), limit=1)
    assert evaluate(Returns("my net", lambda q: q), split, tmp_path, config)[0].status == "done"
    with pytest.raises(ValueError, match="holds the results of model 'my net', and 'my_net' maps to the same"):
        evaluate(Returns("my_net", lambda q: q), split, tmp_path, config)


def test_dvc_stage_refuses_two_models_of_one_name_before_any_work(split, tmp_path, monkeypatch):
    from pipelines.evaluate import read_params, run_stage

    module = tmp_path / "twins_stage.py"
    module.write_text("import torch\n"
                      "class First:\n    name = 'twin'\n    def predict(self, q, pi, pt):\n        return q\n"
                      "class Second(First):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(f"""eval:
  shards: {split.root}
  out: {tmp_path / 'eval'}
  leaderboard: {tmp_path / 'lb'}
  models: ["twins_stage:First", "twins_stage:Second"]
  tasks: canny
  tracks: main
""")
    with pytest.raises(ValueError, match=r"eval.models: twins_stage:First and eval.models: twins_stage:Second "
                                         r"both build the model 'twin'"):
        run_stage(read_params(params_file))
    assert not (tmp_path / "eval").exists()


def test_dvc_stage_reads_params_and_writes_leaderboards(split, tmp_path):
    from pipelines.evaluate import read_params, run_stage

    params_file = tmp_path / "params.yaml"
    params_file.write_text(f"""eval:
  shards: {split.root}
  out: {tmp_path / 'eval'}
  leaderboard: {tmp_path / 'lb'}
  models: [identity, {{spec: prompt-target}}]
  tasks: canny,gaussian_noise
  tracks: main,robustness
  robustness_prompts: 2
""")
    outcomes = run_stage(read_params(params_file))
    assert {(o.model, o.track) for o in outcomes} == {(m, t) for m in ("identity", "prompt-target")
                                                      for t in ("main", "robustness")}
    assert all(o.status == "done" for o in outcomes) and (tmp_path / "lb" / "metrics.json").is_file()

    # Dropping a model and a task: their results leave the persisted folder and the leaderboard.
    params_file.write_text(params_file.read_text().replace("models: [identity, {spec: prompt-target}]",
                                                           "models: [identity]").replace("canny,", ""))
    outcomes = run_stage(read_params(params_file))
    assert {o.status for o in outcomes} == {"skipped"}  # kept units are reused, not recomputed
    assert not (tmp_path / "eval" / "prompt-target").exists()
    assert sorted(p.name for p in (tmp_path / "eval" / "identity").rglob("*.parquet")) == \
        ["gaussian_noise.parquet", "gaussian_noise.parquet"]  # main + robustness
    models = set(pd.read_parquet(tmp_path / "lb" / "model_task.parquet")["model"])
    assert models == {"identity"}

    # A model's own tracks narrow the stage's: prompt-target gets the main track only.
    params_file.write_text(params_file.read_text().replace(
        "models: [identity]", "models: [identity, {spec: prompt-target, tracks: [main, mismatch]}]"))
    outcomes = run_stage(read_params(params_file))
    assert {(o.model, o.track) for o in outcomes if o.status == "done"} == {("prompt-target", "main")}
    for bad in ("{spec: identity, tracks: [mian]}", "{spec: identity, track: [main]}", "{checkpoint: x}"):
        params_file.write_text(params_file.read_text().replace(
            "{spec: prompt-target, tracks: [main, mismatch]}", bad))
        with pytest.raises(ValueError, match="eval.models entry"):
            run_stage(read_params(params_file))
        params_file.write_text(params_file.read_text().replace(bad, "{spec: prompt-target, tracks: [main, mismatch]}"))

    params_file.write_text(params_file.read_text().replace("{spec: prompt-target, tracks: [main, mismatch]}",
                                                           "{spec: promt-target}"))
    with pytest.raises(KeyError, match="unknown generalist 'promt-target'"):
        run_stage(read_params(params_file))

    params_file.write_text("eval:\n  modles: [identity]\n")
    with pytest.raises(ValueError, match="unknown eval setting"):
        read_params(params_file)


def test_eval_command_rejects_empty_or_wrong_selections_before_loading_anything(split, tmp_path, capsys):
    from pipelines.commands import eval as eval_cmd

    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    (tmp_path / "r.sh").write_text("#!/bin/sh\n")
    base = ["--model", "no_such_module_abc:M", "--shards", str(split.root), "--out", str(tmp_path / "res")]
    cases = [
        (["--split", "unseen"], f"the unseen split of {split.root} is empty: it has no tasks"),
        (["--split", "unseen", "--tasks", "jpeg"], "the unseen split of .* is empty"),
        (["--tasks", "stylization"], "category 'stylization' has no task in the test split"),
        (["--tasks", "jpeg"], "task 'jpeg' is not in the test split of .*; it has: gaussian_noise"),
        (["--tasks", ""], "--tasks '' names no task"),
        (["--tasks", " , "], "names no task"),
        (["--tracks", ""], "--tracks '' names no track"),
        (["--robustness-prompts", "0"], r"robustness_prompts \(--robustness-prompts\) must be at least 2"),
        (["--robustness-prompts", "-3"], "must be at least 2"),
        (["--latency-repeats", "0"], r"latency_repeats \(--latency-repeats\) must be positive, got 0"),
        (["--latency-repeats", "-1"], "must be positive, got -1"),
        (["--seed", "-1"], r"seed \(--seed\) must be 0 or more, got -1"),
        (["--mismatch", "jpeg:hazee"], "--mismatch jpeg:hazee: unknown task 'hazee'; did you mean 'haze'"),
        (["--mismatch", "jpge:clean"], "unknown task 'jpge'"),
        (["--out", str(tmp_path / "r.sh")], "--out .*r.sh must be a folder, but it is a file"),
        (["--leaderboard", str(tmp_path / "r.sh" / "lb")], "--leaderboard .* must be a folder.*r.sh is a file"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            eval_cmd.run(parser.parse_args(base + extra))
    assert not (tmp_path / "res").exists()  # nothing was loaded or written
    assert eval_cmd.parse_mismatch("gaussian_blur:clean,canny:gaussian_noise") == MISMATCH
    with pytest.raises(ValueError, match="no track"):
        EvalConfig(tracks=())
    with pytest.raises(ValueError, match="names no task"):
        EvalConfig(tasks=())


def _stage_params(split, tmp_path, models: str, **extra):
    path = tmp_path / "p-x.yaml"
    lines = [f"eval:", f"  shards: {split.root}", f"  out: {tmp_path / 'eval'}", f"  leaderboard: {tmp_path / 'lb'}",
             f"  models: {models}", "  tasks: gaussian_noise", "  tracks: main", "  limit: 2"]
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_model_that_fails_to_load_keeps_its_results_and_fails_the_stage(split, tmp_path, monkeypatch, capsys, caplog):
    from pipelines.evaluate import main

    (tmp_path / "scaled_plugin.py").write_text(SCALED_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = tmp_path / "model.txt"
    weights.write_text("1.0")
    params = _stage_params(split, tmp_path, f"[identity, {{spec: 'scaled_plugin:Scaled', checkpoint: {weights}}}]")
    assert main(["--params", str(params)]) == 0
    kept = sorted((tmp_path / "eval" / "scaled").rglob("*.parquet"))
    assert kept

    weights.write_text("1.0 truncated")  # a damaged checkpoint: the model no longer loads
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="pipelines.evaluate"):
        assert main(["--params", str(params)]) == 1  # dvc repro stops here instead of recording success
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"llvbench eval stage: error: {params}: eval.models: scaled_plugin:Scaled ({weights}) failed "
                       "to load (above); its earlier results were kept, not pruned, and the leaderboards written")
    assert "kept the earlier results" in caplog.text and "scaled_plugin:Scaled" in caplog.text
    assert sorted((tmp_path / "eval" / "scaled").rglob("*.parquet")) == kept  # nothing pruned
    models = set(pd.read_parquet(tmp_path / "lb" / "model_task.parquet")["model"])
    assert models == {"identity", "scaled"}  # the leaderboard still has the model

    weights.write_text("1.0")  # loads again: the stage succeeds and its stale load failure goes
    assert main(["--params", str(params)]) == 0
    assert sorted((tmp_path / "eval" / "scaled").rglob("*.parquet")) == kept


def test_failed_units_end_the_stage_with_how_to_try_them_again(split, tmp_path, monkeypatch, capsys):
    from pipelines.evaluate import main

    (tmp_path / "scaled_plugin.py").write_text(SCALED_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = tmp_path / "model.txt"
    weights.write_text("nan")  # every output NaN: each unit fails its output check
    params = _stage_params(split, tmp_path, f"[identity, {{spec: 'scaled_plugin:Scaled', checkpoint: {weights}}}]")
    capsys.readouterr()
    assert main(["--params", str(params)]) == 0  # the leaderboard and report still come, with a Failures table
    err = capsys.readouterr().err
    assert "FAILED scaled main/gaussian_noise" in err
    assert err.strip().splitlines()[-1] == ("llvbench eval stage: 1 unit(s) failed (above; the leaderboard's Failures "
                                            "table lists them). `dvc repro --force eval` tries them again and keeps "
                                            "every finished unit.")
    weights.write_text("1.0")
    assert main(["--params", str(params)]) == 0 and "failed" not in capsys.readouterr().err


def test_eval_stage_params_mistakes_are_one_line_naming_the_file_and_key(split, tmp_path, capsys):
    from pipelines.evaluate import main

    good = "[identity, {spec: prompt-target}]"
    cases = [
        ({"limit": "eight"}, good, "eval.limit must be a whole number, got 'eight'"),
        ({"save_samples": -1}, good, "eval.save_samples must be >= 0, got -1"),
        ({"robustness_prompts": 1}, good, "eval.robustness_prompts must be >= 2, got 1"),
        ({"tracks": "[main, robustnes]"}, good, "eval.tracks: unknown track 'robustnes'; did you mean 'robustness'?"),
        ({"tasks": "[gaussian_nosie]"}, good, "eval.tasks: unknown task 'gaussian_nosie'; did you mean "
                                              "'gaussian_noise'?"),
        ({"tasks": "jpeg"}, good, "eval.tasks: task 'jpeg' is not in the test split of "),
        ({"splits": "[test, unsen]"}, good, "eval.splits: unknown split 'unsen'; did you mean 'unseen'?"),
        ({"mismatch_pairs": "[jpeg:hazee]"}, good, "eval.mismatch_pairs item 'jpeg:hazee': unknown task 'hazee'; "
                                                   "did you mean 'haze'?"),
        ({}, "[identity, {spec: promt-target}]", "eval.models entry promt-target: unknown generalist "
                                                 "'promt-target'; did you mean 'prompt-target'?"),
        ({}, "[{spec: identity, trcks: [main]}]", "eval.models entry {'spec': 'identity', 'trcks': ['main']}: "
                                                  "unknown key(s) trcks; did you mean 'tracks'?"),
        ({}, "[{spec: identity, tracks: [mian]}]", "eval.models entry identity: tracks ['mian']: unknown track "
                                                   "'mian'; did you mean 'main'?"),
        ({}, f"[{{spec: checkpoint, checkpoint: {tmp_path / 'nope'}}}]",
         f"eval.models entry checkpoint ({tmp_path / 'nope'}): no such checkpoint file or folder"),
        ({}, "[]", "eval.models lists no model"),
    ]
    for extra, models, message in cases:
        params = _stage_params(split, tmp_path, models, **extra)
        assert main(["--params", str(params)]) == 1, message
        err = capsys.readouterr().err
        assert err.startswith(f"llvbench eval stage: error: {params}: {message}"), (message, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not (tmp_path / "eval").exists() and not (tmp_path / "lb").exists()  # checked before any work

    params.write_text("eval:\n  limit: 2\nevall:\n  limit: 2\n")
    assert main(["--params", str(params)]) == 1
    assert capsys.readouterr().err == f"llvbench eval stage: error: {params}: unknown top-level key(s) evall; " \
                                      "known: profile, synth, train, eval, report\n"
    assert main(["--params", str(tmp_path / "missing.yaml")]) == 1  # a named file must exist (no silent defaults)
    assert "missing.yaml does not exist" in capsys.readouterr().err
    params.write_text("eval:\n  limit: eight\n")
    with pytest.raises(ValueError, match="eval.limit must be a whole number"):
        main(["--params", str(params), "--verbose"])  # --verbose keeps the traceback


# ----------------------------------------------------------------------------- one name, one model

TWINS_PLUGIN = '''
class First:
    name = "twin"

    def predict(self, query, prompt_input, prompt_target):
        return query


class Second(First):
    def predict(self, query, prompt_input, prompt_target):
        return (query * 0.5).clamp(0, 1)


class IdentityClash(First):
    name = "identity"


class OnMissingGpu(First):
    name = "gpu-only"

    def info(self):
        return {"device": "cuda:99"}
'''


@pytest.fixture
def twins(tmp_path, monkeypatch):
    (tmp_path / "twins_plugin.py").write_text(TWINS_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "twins_plugin"


def test_results_of_another_implementation_under_the_same_name_are_refused_unless_forced(split, tmp_path, twins,
                                                                                         caplog):
    import json

    from bench.results import read_fingerprint

    out, config = tmp_path / "res", EvalConfig(tasks=("gaussian_noise",), limit=1)
    assert [o.status for o in evaluate_spec(f"{twins}:First", {}, split, out, config)] == ["done"]
    assert json.loads((out / "twin" / "run.json").read_text())["implementation"] == f"{twins}.First"
    assert read_fingerprint(out / "twin" / "main" / "gaussian_noise.parquet")[0]["implementation"] == f"{twins}.First"
    with pytest.raises(ValueError, match=rf"holds the results of {twins}\.First under the model name 'twin', which "
                                         rf"{twins}\.Second also has"):
        evaluate_spec(f"{twins}:Second", {}, split, out, config)
    with caplog.at_level("WARNING", logger="bench.evaluate"):
        assert [o.status for o in evaluate_spec(f"{twins}:Second", {}, split, out, config, force=True)] == ["done"]
    assert "--force: they are replaced" in caplog.text
    assert [o.status for o in evaluate_spec(f"{twins}:Second", {}, split, out, config)] == ["skipped"]
    # A built-in records its class in run.json only: its units keep the fingerprints of earlier results.
    evaluate_spec("identity", {}, split, out, config)
    run = json.loads((out / "identity" / "run.json").read_text())
    assert run["implementation"] == "bench.builtins.IdentityGeneralist"
    fingerprint = read_fingerprint(out / "identity" / "main" / "gaussian_noise.parquet")[0]
    assert set(fingerprint) == {"format", "model", "checkpoint_sha256", "data_manifest_sha256", "device", "track",
                                "unit", "settings"}


def test_a_plugin_with_a_builtin_name_is_refused_at_load(split, tmp_path, twins):
    with pytest.raises(bench.GeneralistError, match=r"builds a generalist named 'identity' \(twins_plugin\."
                                                    r"IdentityClash\), the name of the built-in 'identity'"):
        bench.load_generalist(f"{twins}:IdentityClash")
    # in an evaluation, a load failure: the built-in's results in --out are neither reused nor replaced
    out, config = tmp_path / "res", EvalConfig(tasks=("gaussian_noise",), limit=1)
    evaluate_spec("identity", {}, split, out, config)
    outcome, = evaluate_spec(f"{twins}:IdentityClash", {}, split, out, config, force=True)
    assert outcome.track == "load" and "the name of the built-in 'identity'" in outcome.error
    assert [o.status for o in evaluate_spec("identity", {}, split, out, config)] == ["skipped"]


def test_an_entry_point_named_like_a_builtin_is_warned_about(twins, monkeypatch, caplog):
    from importlib import metadata

    from bench import registry

    ep = metadata.EntryPoint(name="identity", value=f"{twins}:IdentityClash", group=registry.ENTRY_POINT_GROUP)
    real = metadata.entry_points
    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == registry.ENTRY_POINT_GROUP else real(**kw))
    assert registry.shadowed_entry_points() == {"identity": f"{twins}:IdentityClash"}
    with caplog.at_level("WARNING", logger="bench.registry"):
        assert bench.available_generalists()["identity"].startswith("returns the query")
        assert type(bench.load_generalist("identity")).__name__ == "IdentityGeneralist"
    assert caplog.text.count(f"entry point 'identity' ({twins}:IdentityClash) has the name of a built-in") == 2
    from bench.catalog import entry_point_entries

    [listed] = entry_point_entries()  # llvbench models: marked, with the route that reaches it
    assert listed.description.startswith("SHADOWED by the built-in 'identity': ")
    assert listed.usage == f"--model {twins}:IdentityClash"


def test_two_models_of_one_name_in_one_command_are_refused_before_any_work(split, tmp_path, twins):
    from pipelines.commands import eval as eval_cmd

    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    out = tmp_path / "res"
    args = parser.parse_args(["--model", f"{twins}:First", "--model", f"{twins}:Second", "--shards", str(split.root),
                              "--tasks", "gaussian_noise", "--limit", "1", "--out", str(out)])
    with pytest.raises(ValueError, match=rf"--model {twins}:First and --model {twins}:Second both build the model "
                                         r"'twin' \(results folder twin/\)"):
        eval_cmd.run(args)
    assert not out.exists()


def test_one_model_given_twice_is_refused_as_a_slip():
    from bench.evaluate import check_distinct_models

    with pytest.raises(ValueError, match=r"^--model identity is given twice \(model 'identity'\); give each model once$"):
        check_distinct_models([("identity", {}), ("prompt-target", {}), ("identity", {})])
    check_distinct_models([("identity", {}), ("identity", {"self_ensemble": 8})])  # identity+x8: another model


def test_a_device_the_machine_lacks_fails_the_load_in_one_line(split, tmp_path, twins):
    outcomes = evaluate_spec(f"{twins}:OnMissingGpu", {}, split, tmp_path, EvalConfig(tasks=("gaussian_noise",)))
    assert [(o.track, o.status) for o in outcomes] == [("load", "failed")]
    assert "gpu-only: info() says device 'cuda:99', which this machine cannot use (" in outcomes[0].error
    assert "\n" not in outcomes[0].error and not (tmp_path / "gpu-only").exists()


def test_a_changed_metric_set_scores_the_units_again(split, tmp_path, monkeypatch):
    out, config = tmp_path / "res", EvalConfig(tasks=("gaussian_noise", "canny"), limit=1)
    assert [o.status for o in evaluate_spec("identity", {}, split, out, config)] == ["done", "done"]
    assert [o.status for o in evaluate_spec("identity", {}, split, out, config)] == ["skipped", "skipped"]
    monkeypatch.setitem(M.METRICS_BY_HEADLINE, "psnr", ("psnr", "ssim", "mae"))
    status = {o.unit: o.status for o in evaluate_spec("identity", {}, split, out, config)}
    assert status == {"gaussian_noise": "done", "canny": "skipped"}  # canny's (MAE) metrics did not change
    assert set(rows_of(out, task="gaussian_noise")["metric"]) == {"psnr", "ssim", "mae"}


def test_an_explicit_mismatch_pair_that_is_skipped_is_a_warning(split, tmp_path, caplog):
    identity = bench.load_generalist("identity")
    with caplog.at_level("INFO", logger="bench.evaluate"):
        evaluate(identity, split, tmp_path / "a",
                 EvalConfig(tracks=("mismatch",), mismatch_pairs=(("canny", "clean"),)))
    assert [r.levelname for r in caplog.records if "canny on clean skipped" in r.message] == ["WARNING"]
    caplog.clear()
    with caplog.at_level("INFO", logger="bench.evaluate"):  # a default pair the split lacks: routine
        evaluate(identity, split, tmp_path / "b", EvalConfig(tracks=("mismatch",)))
    assert {r.levelname for r in caplog.records if "skipped: not in the test split" in r.message} == {"INFO"}


def test_a_task_selection_narrows_the_default_mismatch_pairs_not_the_named_ones(split, tmp_path):
    identity = bench.load_generalist("identity")
    # The split serves gaussian_blur on clean and canny on gaussian_noise of the default pairs.
    units = [o.unit for o in evaluate(identity, split, tmp_path / "a",
                                      EvalConfig(tracks=("mismatch",), tasks=("gaussian_blur", "canny"), limit=1))]
    assert units == ["gaussian_blur__on__clean"]  # canny on gaussian_noise needs a task left out
    named = EvalConfig(tracks=("mismatch",), tasks=("gaussian_blur",), limit=1, mismatch_pairs=MISMATCH)
    assert sorted(o.unit for o in evaluate(identity, split, tmp_path / "b", named)) == \
        ["canny__on__gaussian_noise", "gaussian_blur__on__clean"]


@pytest.mark.parametrize("source_files,setting", [("network_source_files", "network_code"),
                                                 ("adapter_source_files", "adapter_code")])
def test_a_checkpoint_is_scored_again_after_its_model_or_adapter_code_changed(split, tmp_path, monkeypatch, caplog,
                                                                             source_files, setting):
    import model
    from bench import builtins
    from model import checkpoints

    folder = tmp_path / "run"
    folder.mkdir()
    network = model.build("genlv-tiny", global_residual=True)
    nn.init.zeros_(network.output.weight)  # returns the query: outputs in range, whatever the seed
    checkpoints.save_model(network, folder / "model.safetensors", arch="genlv-tiny")
    out, config = tmp_path / "res", EvalConfig(tasks=("gaussian_noise",), limit=1)

    def statuses():
        return [o.status for o in evaluate_spec("checkpoint", {"checkpoint": str(folder)}, split, out, config)]

    assert statuses() == ["done"]
    assert statuses() == ["skipped"]
    # An edit to a file the network runs, or to the resizing and padding the bench does around it:
    # the same weights may now give other outputs.
    edited = tmp_path / "edited.py"
    edited.write_text("# what an edited source file would hash as\n")
    real = getattr(builtins, source_files)
    monkeypatch.setattr(builtins, source_files, lambda hashed: [*real(hashed), edited])
    with caplog.at_level("INFO", logger="bench.evaluate"):
        assert statuses() == ["done"]
    assert f"scored before with another options.{setting}; run again" in caplog.text
    assert statuses() == ["skipped"]
    edited.write_text("# edited once more\n")
    assert statuses() == ["done"]


def test_the_adapter_code_hash_covers_the_adapter_s_module_and_the_shared_resizing():
    import model
    from bench import builtins, official

    # the GenLV built-in's module and bench/adapters.py; an official adapter's module is bench/official.py
    ours = builtins.adapter_source_files(bench.load_generalist("identity"))
    assert {p.name for p in ours} == {"builtins.py", "adapters.py"}
    painter = official.PainterGeneralist(network=model.build("painter-s"), device="cpu")
    assert {p.name for p in builtins.adapter_source_files(painter)} == {"official.py", "adapters.py"}


def test_the_model_code_hash_covers_the_network_s_inference_code_and_its_plugin_layers(tmp_path, monkeypatch):
    import model
    from bench.builtins import network_code_sha256, network_source_files

    names = {path.name for path in network_source_files(model.build("genlv-tiny"))}
    assert {"genlv.py", "layers.py", "registry.py", "checkpoints.py", "objectives.py"} <= names
    assert not names & {"train.py", "data.py"}  # training-only: editing them changes no network's function
    (tmp_path / "extra_layer_plugin.py").write_text(
        "from torch import nn\n\nclass Gain(nn.Module):\n    def forward(self, x):\n        return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import extra_layer_plugin

    network = nn.Sequential(model.build("genlv-tiny"), extra_layer_plugin.Gain())
    assert tmp_path / "extra_layer_plugin.py" in network_source_files(network)
    before = network_code_sha256(network)
    assert before == network_code_sha256(network) and before != network_code_sha256(model.build("genlv-tiny"))
    (tmp_path / "extra_layer_plugin.py").write_text(
        "from torch import nn\n\nclass Gain(nn.Module):\n    def forward(self, x):\n        return 3 * x\n")
    assert network_code_sha256(network) != before


def test_a_checkpoint_network_encodes_each_distinct_prompt_of_a_batch_once(monkeypatch):
    import torch

    import model
    from bench.builtins import distinct_prompt_rows, predict_sharing_prompts
    from model.objectives import predict

    generator = torch.Generator().manual_seed(5)
    a, b = (torch.rand(2, 1, 3, 64, 64, generator=generator) for _ in range(2))
    prompt_input = torch.cat([a[0], a[0], b[0], a[0]])   # rows 0, 1 and 3 share a pair, row 2 has its own
    prompt_target = torch.cat([a[1], a[1], b[1], a[1]])
    assert distinct_prompt_rows(prompt_input, prompt_target) == ([0, 2], [0, 0, 1, 0])
    # The same input with another target is another prompt; every row distinct: nothing to share.
    assert distinct_prompt_rows(prompt_input[:2], torch.cat([a[1], b[1]])) is None
    assert distinct_prompt_rows(prompt_input[1:3], prompt_target[1:3]) is None

    torch.manual_seed(0)
    net = model.build("genlv-tiny").eval()
    encoded = []
    original = net.encode_prompt
    monkeypatch.setattr(net, "encode_prompt", lambda p, t: encoded.append(p.shape[0]) or original(p, t))
    query = torch.rand(4, 3, 64, 64, generator=generator)
    with torch.inference_mode():
        shared = predict_sharing_prompts(net, query, prompt_input, prompt_target)
        assert encoded == [2]
        assert torch.equal(shared, predict(net, query, prompt_input, prompt_target))  # bit for bit on the CPU
        assert encoded == [2, 4]  # the plain call encoded all four

        plain = model.build("xrestormer", dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).eval()
        assert torch.equal(predict_sharing_prompts(plain, query, prompt_input, prompt_target),
                           plain(query, prompt_input, prompt_target))  # no prompt encoder: the plain call
