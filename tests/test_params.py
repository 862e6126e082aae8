"""Params files and profiles: the overlay layer of pipelines.params, its guards against moving
what dvc.yaml fixes, the command line winning over both, and the repository's real gpu profile."""
from __future__ import annotations

import argparse
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

import taskgen
from pipelines import evaluate, report, synth, train
from pipelines.params import available_profiles, read_section

ROOT = Path(__file__).resolve().parents[1]
STAGE_READERS = {"synth": synth.read_params, "train": train.read_params, "eval": evaluate.read_params,
                 "report": report.read_params}


def _write(folder: Path, params: str, **profiles: str) -> Path:
    """A params.yaml in ``folder`` and profiles/NAME.yaml files next to it; returns the params path."""
    path = folder / "params.yaml"
    path.write_text(textwrap.dedent(params))
    if profiles:
        (folder / "profiles").mkdir()
    for name, text in profiles.items():
        (folder / "profiles" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return path


PARAMS = """
    profile: big
    synth:
      out: data/shards
      size: 64
      counts: {train: 8, test: 4, unseen: 4}
      per_task:
        gaussian_noise: {}
        canny: {train: 3}
    train:
      arch: genlv-tiny
      out: checkpoints/pipeline
      steps: 300
"""


def test_overlay_updates_the_params_file_with_the_same_merge_rules(tmp_path):
    path = _write(tmp_path, PARAMS, big="""
        synth:
          size: 256
          counts: {train: 2048}
          per_task:
            canny: {train: 5, test: 1}
        train:
          arch: genlv-base
    """)
    params = synth.read_params(path)
    assert params["size"] == 256 and params["out"] == "data/shards"
    assert params["counts"] == {"train": 2048, "test": 4, "unseen": 4}     # merged key by key
    assert params["per_task"] == {"gaussian_noise": {}, "canny": {"train": 5, "test": 1}}
    config = synth.configure(params, {"tasks": "gaussian_noise,canny"})
    assert config.counts == {"gaussian_noise": {"train": 2048, "test": 4}, "canny": {"train": 5, "test": 1}}
    assert {k: train.read_params(path)[k] for k in ("arch", "steps")} == {"arch": "genlv-base", "steps": 300}


def test_cpu_profile_and_a_missing_profile_key_mean_no_overlay(tmp_path):
    path = _write(tmp_path, PARAMS.replace("profile: big", "profile: cpu"), big="train: {steps: 9}\n")
    assert train.read_params(path)["steps"] == 300
    path.write_text(PARAMS.replace("profile: big", ""))
    assert train.read_params(path)["steps"] == 300
    assert available_profiles(path) == ["cpu", "big"]


def test_unknown_profile_is_an_error_listing_the_available_ones(tmp_path):
    path = _write(tmp_path, PARAMS.replace("profile: big", "profile: gpuu"), big="train: {steps: 9}\n",
                  small="train: {steps: 1}\n")
    with pytest.raises(ValueError, match=r"unknown profile 'gpuu'; available: cpu, big, small"):
        train.read_params(path)


@pytest.mark.parametrize("section,key,value", [
    ("synth", "out", "/scratch/shards"), ("synth", "summary", "m.json"), ("train", "out", "ckpt/base"),
    ("train", "metrics", "m.csv"), ("eval", "leaderboard", "board"), ("report", "out", "r"),
])
def test_overlay_may_not_move_paths_that_dvc_yaml_reads(tmp_path, section, key, value):
    path = _write(tmp_path, PARAMS + "    eval: {}\n    report: {}\n", big=f"{section}:\n  {key}: {value}\n")
    with pytest.raises(ValueError, match=rf"big\.yaml: sets {section}\.{key}; .*dvc\.yaml"):
        train.read_params(path)  # any stage refuses the file, not only the one whose section it is


@pytest.mark.parametrize("section,key,value", [
    ("train", "shards", "/scratch/shards"), ("eval", "shards", "/scratch/shards"),
    ("report", "results", "[/scratch/eval]"), ("report", "train_logs", "[/scratch/runs]"),
    ("report", "shards", "[/scratch/shards]"),
])
def test_overlay_may_not_move_the_inputs_dvc_yaml_tracks(tmp_path, section, key, value):
    path = _write(tmp_path, PARAMS + "    eval: {}\n    report: {}\n", big=f"{section}:\n  {key}: {value}\n")
    with pytest.raises(ValueError, match=rf"big\.yaml: sets {section}\.{key}; input paths stay in params\.yaml"):
        train.read_params(path)


def test_overlay_may_not_add_per_task_entries(tmp_path):
    path = _write(tmp_path, PARAMS, big="synth:\n  per_task:\n    gaussian_noise: {train: 2}\n    jpeg: {}\n")
    with pytest.raises(ValueError, match=r"per_task adds task\(s\) jpeg .*foreach"):
        synth.read_params(path)


def test_overlay_may_not_empty_a_mapping(tmp_path):
    # YAML's "per_task:" with nothing under it is null: it would drop params.yaml's entries silently
    path = _write(tmp_path, PARAMS, big="synth:\n  per_task:\n")
    with pytest.raises(ValueError, match=r"big\.yaml: synth\.per_task is empty \(null\); an overlay changes"):
        synth.read_params(path)


def test_overlay_typos_name_the_overlay_file(tmp_path):
    path = _write(tmp_path, PARAMS, big="train:\n  stepz: 3\n")
    with pytest.raises(ValueError, match=r"profiles/big\.yaml: unknown train setting\(s\) stepz"):
        train.read_params(path)
    (tmp_path / "profiles" / "big.yaml").write_text("trian:\n  steps: 3\n")
    with pytest.raises(ValueError, match=r"profiles/big\.yaml: unknown section\(s\) trian; known .*synth, train"):
        synth.read_params(path)


def test_command_line_beats_overlay_beats_params_file(tmp_path):
    from pipelines.commands import train as train_command

    path = _write(tmp_path, PARAMS, big="""
        synth: {size: 256, counts: {train: 2048}}
        train: {steps: 50000, batch: 16, lr: 0.0001}
    """)
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    args = parser.parse_args(["--params", str(path), "--steps", "7"])
    config = train.configure(train.read_params(path, required=True), train_command.overrides_from(args))
    assert (config.steps, config.batch, config.arch) == (7, 16, "genlv-tiny")  # CLI, overlay, params file
    config = synth.configure(synth.read_params(path), {"size": 96, "n_train": 5, "tasks": "gaussian_noise"})
    assert config.size == 96 and config.counts["gaussian_noise"]["train"] == 5


def test_command_line_arch_or_out_does_not_inherit_the_params_files_label_and_logs(tmp_path):
    """`llvbench train --arch genlv-s --out elsewhere` next to the repository's params.yaml must not
    label the run with the pipeline's model name or overwrite the pipeline's tracked metrics."""
    from pipelines.commands import train as train_command

    path = _write(tmp_path, """
        synth: {out: data/shards, summary: metrics/synth.json}
        train: {arch: genlv-tiny, name: genlv-tiny, out: checkpoints/pipeline, metrics: metrics/train.csv,
                summary: metrics/train.json}
    """)
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)

    def config_of(*argv):
        args = parser.parse_args(["--params", str(path), *argv])
        return train.configure(train.read_params(path, required=True), train_command.overrides_from(args))

    pipeline = config_of("--steps", "7")
    assert (pipeline.name, pipeline.metrics, pipeline.summary) == ("genlv-tiny", "metrics/train.csv",
                                                                   "metrics/train.json")
    assert (config_of("--arch", "genlv-tiny").name, config_of("--out", "checkpoints/pipeline/").metrics) \
        == ("genlv-tiny", "metrics/train.csv")  # the params' own arch and folder keep them
    assert config_of("--out", str(Path("checkpoints/pipeline").resolve())).metrics == "metrics/train.csv"
    other = config_of("--arch", "genlv-s", "--out", str(tmp_path / "run"))
    assert (other.name, other.metrics, other.summary) == ("", None, None)  # the run folder's name and files
    named = config_of("--arch", "genlv-s", "--name", "mine", "--out", str(tmp_path / "run"),
                      "--metrics", "m.csv", "--summary", "s.json")
    assert (named.name, named.metrics, named.summary) == ("mine", "m.csv", "s.json")

    params = synth.read_params(path)
    assert synth.configure(params, {"out": "data/shards/"}).summary == Path("metrics/synth.json")
    assert synth.configure(params, {"out": str(Path("data/shards").resolve())}).summary == Path("metrics/synth.json")
    elsewhere = tmp_path / "shards"
    assert synth.configure(params, {"out": str(elsewhere)}).summary is None  # printed only
    assert synth.configure(params, {"out": str(elsewhere), "summary": "s.json"}).summary == Path("s.json")


def test_section_without_a_params_file_is_the_defaults(tmp_path):
    assert read_section(None, "train", {"steps": 1}) == {"steps": 1}
    assert read_section(tmp_path / "absent.yaml", "train", {"steps": 1}) == {"steps": 1}
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        read_section(tmp_path / "absent.yaml", "train", {"steps": 1}, required=True)


# ----------------------------------------------------------------------------- the repository's files


@pytest.fixture()
def gpu_params(tmp_path) -> Path:
    """The repository's params.yaml switched to the gpu profile, with the real profiles/ folder."""
    text = (ROOT / "params.yaml").read_text()
    assert "\nprofile: cpu\n" in text
    (tmp_path / "params.yaml").write_text(text.replace("\nprofile: cpu\n", "\nprofile: gpu\n"))
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    return tmp_path / "params.yaml"


def test_real_gpu_profile_loads_for_every_section(gpu_params):
    sections = {name: read(gpu_params) for name, read in STAGE_READERS.items()}
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert sections["synth"]["size"] == 256 and sections["synth"]["out"] == base["synth"]["out"]
    assert sections["train"]["arch"] == "genlv-base" and sections["train"]["size"] == 256
    assert sections["train"]["out"] == base["train"]["out"] == "checkpoints/pipeline"
    assert sections["eval"]["limit"] is None and sections["eval"]["robustness_prompts"] == 20
    checkpoints = [m["checkpoint"] for m in sections["eval"]["models"] if m.get("checkpoint")]
    # what the train stage wrote, and the shipped genlv-s, plain and with prompt-fitted shrinkage
    assert checkpoints == [base["train"]["out"], "checkpoints/genlv-s", "checkpoints/genlv-s"]
    assert sections["eval"]["models"][-1]["options"] == {"shrink": True}
    train.configure(sections["train"]).validate()

    # The tasks of the DVC synth stages (--tasks KEY each); other test modules may register more.
    config = synth.configure(sections["synth"], {"tasks": ",".join(base["synth"]["per_task"])})
    held_out = {spec.name for spec in config.tasks if not spec.in_training_mix}
    assert len(held_out) == 6 and len(config.counts) == len(base["synth"]["per_task"]) == 38
    for task, counts in config.counts.items():  # one `counts:` entry raised every training task
        assert counts == ({"unseen": 64} if task in held_out else {"train": 2048, "test": 64}), task


def test_real_cpu_profile_counts_come_from_the_defaults():
    params = synth.read_params(ROOT / "params.yaml")
    config = synth.configure(params, {"tasks": ",".join(params["per_task"])})
    assert sum(sum(c.values()) for c in config.counts.values()) == 2656  # docs/shards.md's CPU profile
    assert set(params["per_task"]) <= set(taskgen.task_names())


def test_every_dvc_stage_tracks_the_profile():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        assert "profile" in body["params"], name
        assert "profiles" in body["deps"], name
    assert "synth.counts" in stages["synth_task"]["do"]["params"]


# ----------------------------------------------------------------------------- typos, shapes and types


BOTH = (synth.read_params, train.read_params)


@pytest.mark.parametrize("text,message,readers", [
    ("synht:\n  size: 32\n", r"unknown top-level key\(s\) synht; known: profile, synth, train, eval, report", BOTH),
    ("trian:\n  arch: genlv-s\n", r"unknown top-level key\(s\) trian", BOTH),
    ("synth: 5\n", r"section synth must be a mapping of settings, got int 5", BOTH),
    ("train: 5\n", r"section train must be a mapping of settings, got int 5", BOTH),
    ("synth:\n  counts: {tset: 2}\n", r"unknown synth\.counts key\(s\) tset; known: train, test, unseen",
     (synth.read_params,)),
    ("synth:\n  sources: {tset: photos}\n", r"unknown synth\.sources key\(s\) tset", (synth.read_params,)),
    ("synth:\n  counts: 5\n", r"synth\.counts must be a mapping", (synth.read_params,)),
])
def test_typos_and_sections_that_are_not_mappings_are_errors_naming_the_file(tmp_path, text, message, readers):
    path = _write(tmp_path, text)
    for read in readers:  # a bad top-level key or section: every stage refuses the file
        with pytest.raises(ValueError, match=rf"params\.yaml: {message}"):
            read(path)


@pytest.mark.parametrize("reader,text,message", [
    (synth.read_params, "synth:\n  size: big\n", r"synth\.size must be a whole number, got 'big'"),
    (synth.read_params, "synth:\n  out: null\n", r"synth\.out must be a string, got None"),
    (train.read_params, "train:\n  lr: fast\n", r"train\.lr must be a number, got 'fast'"),
    (train.read_params, "train:\n  steps: true\n", r"train\.steps must be a whole number, got True"),
    (train.read_params, "train:\n  bf16: 'yes'\n", r"train\.bf16 must be true or false, got 'yes'"),
    (train.read_params, "train:\n  overrides: 16\n", r"train\.overrides must be a mapping, got 16"),
    (evaluate.read_params, "eval:\n  limit: eight\n", r"eval\.limit must be a whole number, got 'eight'"),
    (evaluate.read_params, "eval:\n  batch_size: 0\n", r"eval\.batch_size must be >= 1, got 0"),
    (evaluate.read_params, "eval:\n  models: identity\n", r"eval\.models must be a list, got 'identity'"),
    (evaluate.read_params, "eval:\n  models: [{spec: identity, options: 3}]\n",
     r"eval\.models entry identity: options must be a mapping, got 3"),
    (evaluate.read_params, "eval:\n  tracks: [main, robustnes]\n", r"eval\.tracks: unknown track 'robustnes'"),
    (evaluate.read_params, "eval:\n  tasks: canny,jpge\n", r"eval\.tasks: unknown task 'jpge'; did you mean 'jpeg'"),
    (report.read_params, "report:\n  samples_per_task: two\n",
     r"report\.samples_per_task must be a whole number, got 'two'"),
    (report.read_params, "report:\n  formats: [png, svgx]\n", r"report\.formats: unknown figure format\(s\) svgx"),
    (report.read_params, "report:\n  results: [3]\n", r"report\.results must be a list of strings"),
])
def test_values_of_the_wrong_type_are_errors_naming_the_file_and_key(tmp_path, reader, text, message):
    with pytest.raises(ValueError, match=rf"params\.yaml: {message}"):
        reader(_write(tmp_path, text))


def test_values_are_coerced_to_the_setting_types(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string; a whole float is a whole number; epoch_length may be null
    path = _write(tmp_path, "train:\n  lr: 1e-4\n  steps: 20.0\n  epoch_length: null\n  name: 7\n")
    params = train.read_params(path)
    assert (params["lr"], params["steps"], params["epoch_length"], params["name"]) == (1e-4, 20, None, "7")
    assert type(params["steps"]) is int
    train.configure(params).validate()
    with pytest.raises(ValueError, match=r"synth counts\.train must be a whole number, got 'many'"):
        synth.configure({**synth.read_params(None), "counts": {"train": "many"}}, {"tasks": "jpeg"})
    with pytest.raises(ValueError, match=r"synth per_task\.jpeg\.test must be >= 0, got -1"):
        synth.configure({**synth.read_params(None), "per_task": {"jpeg": {"test": -1}}}, {"tasks": "jpeg"})


def test_eval_and_report_values_keep_their_meaning(tmp_path):
    path = _write(tmp_path, "eval:\n  limit: 8.0\n  splits: test\n  tasks: 'canny, jpeg'\n"
                            "  mismatch_pairs: canny:clean\nreport:\n  formats: svg\n  train_logs: null\n")
    params = evaluate.read_params(path)
    assert (params["limit"], params["splits"], params["mismatch_pairs"]) == (8, ["test"], ["canny:clean"])
    assert type(params["limit"]) is int
    config = evaluate.eval_config(params)
    assert config.tasks == ("canny", "jpeg") and config.mismatch_pairs == (("canny", "clean"),)
    assert report.read_params(path)["formats"] == ["svg"] and report.read_params(path)["train_logs"] is None


def test_errors_found_after_reading_name_the_overlay_that_set_the_key(tmp_path):
    path = _write(tmp_path, PARAMS + "    eval: {}\n    report: {}\n",
                  big=f"eval:\n  models: [{{spec: checkpoint, checkpoint: {tmp_path / 'nope'}}}]\n"
                      "report:\n  formats: [png]\n")
    with pytest.raises(KeyError, match=rf"profiles/big\.yaml: eval\.models entry checkpoint \(.*nope\): no such "):
        evaluate.run_stage(evaluate.read_params(path), path)
    (tmp_path / "profiles" / "big.yaml").write_text("eval:\n  tracks: [main, robustnes]\n")
    with pytest.raises(ValueError, match=r"profiles/big\.yaml: eval\.tracks: unknown track 'robustnes'"):
        evaluate.read_params(path)
    (tmp_path / "profiles" / "big.yaml").write_text("report:\n  formats: [pngg]\n")
    with pytest.raises(ValueError, match=r"profiles/big\.yaml: report\.formats: unknown figure format\(s\) pngg"):
        report.read_params(path)
    # The file named in run_stage's format check is the one given, not a hard-coded params.yaml.
    other = tmp_path / "p-x.yaml"
    other.write_text("report:\n  formats: [png]\n")
    with pytest.raises(ValueError, match=rf"^{other}: report\.formats: unknown figure format\(s\) svgx"):
        report.run_stage({**report.read_params(other), "formats": ["svgx"]}, other)


def test_eval_and_report_stages_refuse_an_output_under_a_file_before_any_work(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    path = _write(tmp_path, f"eval:\n  leaderboard: {afile / 'board'}\n  out: {tmp_path / 'res'}\n"
                            f"report:\n  out: {afile / 'report'}\n")
    assert evaluate.main(["--params", str(path)]) == 1
    assert f"eval.leaderboard {afile / 'board'} must be a folder, but it is a file ({afile} is a file)" in \
        capsys.readouterr().err
    assert not (tmp_path / "res").exists()
    assert report.main(["--params", str(path)]) == 1
    assert f"report.out {afile / 'report'} must be a folder" in capsys.readouterr().err


def test_report_stage_params_mistakes_are_one_line_naming_the_file(tmp_path, capsys):
    path = _write(tmp_path, f"report:\n  out: {tmp_path / 'report'}\n  formats: [png, svgx]\n")
    assert report.main(["--params", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"llvbench report stage: error: {path}: report.formats: unknown figure format(s) svgx; "
                          "choose from png, svg") and err.count("\n") == 1
    path.write_text("report:\n  samples_per_task: two\n")
    assert report.main(["--params", str(path)]) == 1
    assert capsys.readouterr().err.strip() == (f"llvbench report stage: error: {path}: report.samples_per_task "
                                               "must be a whole number, got 'two'")
    assert report.main(["--params", str(tmp_path / "p-x.yaml")]) == 1
    assert "p-x.yaml does not exist" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()
    with pytest.raises(ValueError, match="samples_per_task"):
        report.main(["--params", str(path), "-v"])


def test_training_another_arch_warns_which_schedule_settings_come_from_the_params_file(caplog):
    from pipelines import train

    params = {**train.defaults(), "arch": "genlv-tiny", "lr": 1e-3, "warmup": 20, "ckpt_every": 100}
    with caplog.at_level("WARNING", logger="pipelines.train"):
        train.configure(params, {"arch": "genlv-base", "lr": 1e-4, "warmup": 1000})
    assert "training genlv-base with the params file's settings for genlv-tiny: " in caplog.text
    assert "ckpt_every 100" in caplog.text and "lr " not in caplog.text.split(": ", 1)[1].split(";")[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="pipelines.train"):
        train.configure(params, {"arch": "genlv-tiny", "steps": 5})  # the params' own arch: nothing to say
    assert not caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="pipelines.train"):  # one schedule set for no arch in particular
        train.configure(params, {"arch": "genlv-base"}, schedule_arch=None)
    assert not caplog.text


def test_params_name_arch_reads_the_file_and_its_profile_overlay(tmp_path):
    from pipelines.train import params_name_arch

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 0.0003\n  steps: 600\n")  # scripts/equal_budget.py's kind of file
    assert not params_name_arch(path) and not params_name_arch(None) and not params_name_arch(tmp_path / "no.yaml")
    path.write_text("train:\n  arch: vit-s\n  lr: 0.0003\n")
    assert params_name_arch(path)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "big.yaml").write_text("train:\n  arch: genlv-s\n")
    path.write_text("profile: big\ntrain:\n  lr: 0.0003\n")
    assert params_name_arch(path)
