"""A researcher's own task: preview applies synth's checks, the code fingerprint covers the plug-in's
whole package, and synth / `llvbench tasks` name the tasks that come from outside taskgen."""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import taskgen
from pipelines import cli
from pipelines.synth import configure, read_params, run_synth
from taskgen.registry import register_task, registered
from taskgen.shards import code_fingerprint, load_manifest


def _grey_target(image, rng):
    return image.copy(), image.mean(axis=2).astype(np.uint8), {}


def _float_target(image, rng):
    return image.copy(), image.astype(np.float64) / 255.0, {}


def _raises(image, rng):
    raise KeyError("palette")


def _global_rng(image, rng):
    return image.copy(), np.roll(image, int(np.random.randint(1, 4)), axis=1), {}


BROKEN = {"_plug_grey": _grey_target, "_plug_float": _float_target, "_plug_raises": _raises,
          "_plug_global_rng": _global_rng}


@pytest.fixture()
def broken_tasks():
    for name, fn in BROKEN.items():
        register_task(name=name, category="stylization", metric="psnr", target_domain="x",
                      description="test-only: breaks the task contract")(fn)
    yield
    for name in BROKEN:
        registered().pop(name, None)


@pytest.mark.parametrize("task,problem", [
    ("_plug_float", r"ImageContractError: task _plug_float target: expected dtype uint8, got float64"),
    ("_plug_grey", r"ImageContractError: task _plug_grey target: expected HxWx3 RGB, got shape \(32, 32\)"),
    ("_plug_raises", r"KeyError: 'palette'"),
    ("_plug_global_rng", r"ValueError: drew from numpy's global random generator"),
])
def test_preview_fails_a_broken_task_in_one_line_naming_it(broken_tasks, tmp_path, capsys, task, problem):
    out = tmp_path / "sheet.png"
    assert cli.main(["preview", "--tasks", task, "--size", "32", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"llvbench preview: error: task failed for task={task} "
                          "(preview, image=photo:astronaut@")
    assert re.search(problem, err), err
    assert not out.exists()


def test_preview_still_draws_built_in_and_hdr_tasks(tmp_path):
    out = tmp_path / "sheet.png"
    assert cli.main(["preview", "--tasks", "jpeg,sdr_to_hdr", "--size", "32", "--out", str(out)]) == 0
    assert out.stat().st_size > 0


# ----------------------------------------------------------------------------- a plug-in package

HELPERS = "LEVELS = 4  # the lab's constants live beside the task\n"
TASKS = textwrap.dedent('''
    import numpy as np
    from taskgen import register_task
    from .helpers import LEVELS

    @register_task(name="_plug_quantize", category="stylization", metric="psnr",
                   target_domain="quantised colours", description="test-only: colour quantisation")
    def quantize(image, rng):
        offset = int(rng.integers(0, 8))
        step = 256 // LEVELS
        return image.copy(), ((image // step) * step + offset).astype(np.uint8), {"offset": offset}
''')


@pytest.fixture()
def mylab(tmp_path, monkeypatch):
    """``mylab_plugin``, a package outside taskgen whose task module imports a helper module."""
    package = tmp_path / "site" / "mylab_plugin"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text(HELPERS)
    (package / "tasks.py").write_text(TASKS)
    (package / "sub" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.import_module("mylab_plugin.tasks")
    code_fingerprint.cache_clear()
    yield package
    registered().pop("_plug_quantize", None)
    for name in [m for m in sys.modules if m == "mylab_plugin" or m.startswith("mylab_plugin.")]:
        del sys.modules[name]
    code_fingerprint.cache_clear()


def _fingerprint_after(edit) -> str:
    edit()
    code_fingerprint.cache_clear()
    return code_fingerprint("mylab_plugin.tasks")


def test_fingerprint_covers_every_module_of_the_plug_ins_package(mylab):
    first = code_fingerprint("mylab_plugin.tasks")
    assert _fingerprint_after(lambda: None) == first  # deterministic
    changed_helper = _fingerprint_after(lambda: (mylab / "helpers.py").write_text("LEVELS = 8\n"))
    assert changed_helper != first
    changed_sub = _fingerprint_after(lambda: (mylab / "sub" / "__init__.py").write_text("X = 1\n"))
    assert changed_sub not in (first, changed_helper)


def test_fingerprint_of_built_in_tasks_hashes_taskgen_alone():
    package = Path(taskgen.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    assert code_fingerprint(taskgen.get_task("jpeg").fn.__module__) == digest.hexdigest()


def _config(out: Path):
    params = read_params(None)
    params.update({"tasks": "_plug_quantize", "size": 32, "samples_per_shard": 3,
                   "counts": {"train": 2, "test": 1, "unseen": 0}, "per_task": {}})
    return configure(params, {"out": str(out), "summary": str(out) + ".summary.json"})


def test_synth_names_plug_in_tasks_and_rewrites_shards_after_a_helper_edit(mylab, tmp_path, caplog):
    out = tmp_path / "shards"
    with caplog.at_level("INFO", logger="pipelines.synth"):
        first = run_synth(_config(out), progress=False)
    assert "third-party tasks included: _plug_quantize (mylab_plugin)" in caplog.text
    assert first["third_party_tasks"] == {"_plug_quantize": "mylab_plugin"}
    assert json.loads(Path(str(out) + ".summary.json").read_text())["third_party_tasks"] == \
        {"_plug_quantize": "mylab_plugin"}
    code = load_manifest(out)["tasks"]["_plug_quantize"]["code_sha256"]

    code_fingerprint.cache_clear()
    assert run_synth(_config(out), progress=False)["total"]["reused_pairs"] == 3  # nothing changed

    (mylab / "helpers.py").write_text("LEVELS = 8\n")
    code_fingerprint.cache_clear()
    again = run_synth(_config(out), progress=False)
    assert again["total"]["reused_pairs"] == 0  # the old shards came from other constants
    assert load_manifest(out)["tasks"]["_plug_quantize"]["code_sha256"] != code


def test_tasks_command_names_the_tasks_from_outside_taskgen(mylab, capsys):
    from pipelines.commands import tasks

    parser = argparse.ArgumentParser()
    tasks.add_arguments(parser)
    assert tasks.run(parser.parse_args([])) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # other test modules' tasks count as third-party too when the suite runs together
    assert lines[-1].startswith("third-party tasks included: ") and "_plug_quantize (mylab_plugin)" in lines[-1]
    assert tasks.run(parser.parse_args(["--json"])) == 0
    packages = {row["name"]: row["package"] for row in json.loads(capsys.readouterr().out)}
    assert packages["_plug_quantize"] == "mylab_plugin" and packages["jpeg"] == "taskgen"


def test_built_in_tasks_alone_name_no_third_party():
    assert taskgen.describe_third_party(taskgen.resolve_tasks("jpeg,canny")) == ""
