"""Checkpoint files as users hand them over: unreadable files, pickle refusals, prefixes, and the
commands `llvbench models` prints.

Nothing here builds an official-size network: official files are checked on the meta device (a
recording `model.build` shows no real build), and real loads use the fixture/tiny configurations.
"""
from __future__ import annotations

import argparse
import json
import re
import logging
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

import bench
import model
from bench.catalog import LLVBENCH_CHECKPOINT, TORCH_FILE, catalog, checkpoint_entries, format_catalog
from model import checkpoints
from model.checkpoints import CheckpointError
from reference_data import fixture_path, load_fixture

FIXTURES = {name: fixture_path(f"{name.split('-')[0]}-tiny-official") for name in ("promptgip-fixture", "painter-fixture")}
needs_fixtures = pytest.mark.skipif(not all(p.exists() for p in FIXTURES.values()),
                                    reason="shared/reference/fixtures not available")


def _torch_file(tmp_path, name="good.pth"):
    path = tmp_path / name
    torch.save({"model": {"w": torch.arange(4000, dtype=torch.float32)}}, path)
    return path


def _record_builds(monkeypatch) -> list[str]:
    """Wrap model.build so each call records the device it built on ('meta' or 'cpu')."""
    calls, real = [], model.registry.build

    def recording(name, **overrides):
        calls.append(torch.empty(0).device.type)
        return real(name, **overrides)

    monkeypatch.setattr(model.registry, "build", recording)
    monkeypatch.setattr(model, "build", recording)
    return calls


def _cli_generalist(usage: str, **substitutions):
    """The generalist `llvbench eval <usage>` would load, with the usage's placeholders replaced."""
    from bench.registry import load_generalist
    from pipelines.cli import build_parser
    from pipelines.commands.eval import model_options

    tokens = [substitutions.get(t, t) for t in shlex.split(usage)]
    args = build_parser().parse_args(["eval", *tokens, "--out", "unused", "--device", "cpu"])
    return load_generalist(args.model[0], **model_options(args))


def _images(seed=0, size=(40, 52)):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(1, 3, *size, generator=gen) for _ in range(3))


# ----------------------------------------------------------------------------- 1. unreadable files

def _damaged_files(tmp_path):
    good = _torch_file(tmp_path).read_bytes()
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    files = {"empty.pth": (b"", r"\(empty file\)"),
             "text.pth": (b"hello world\n", r"\(neither a zip archive nor a pickle; starts with b'hell'\)"),
             "cut.pth": (good[: len(good) // 2], r"\(truncated zip archive\)"),
             "cut-legacy.pth": (legacy.read_bytes()[:-20], r"\(truncated or not a zip/pickle: .*unexpected EOF"),
             "pickle.pth": (b"\x80\x02}q\x00(X\x01", r"\(truncated or not a zip/pickle: ")}
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    return {tmp_path / name: why for name, (_, why) in files.items()}


def test_unreadable_torch_files_are_one_line_errors_naming_the_file(tmp_path):
    for path, why in _damaged_files(tmp_path).items():
        for trust in (False, True):
            with pytest.raises(CheckpointError) as info:
                checkpoints.read_state_dict(path, trust_pickle=trust)
            text = str(info.value)
            assert text.startswith(f"{path}: not a readable torch checkpoint ("), text
            assert "\n" not in text and "miniz" not in text, text
            assert re.search(why, text), (why, text)


def _safetensors_bytes(header, data: bytes) -> bytes:
    head = json.dumps(header).encode()
    return len(head).to_bytes(8, "little") + head + data


@pytest.mark.parametrize("header, data, why", [
    ([1, 2], b"", r"its header is a JSON list, not an object"),
    ({"w": {"dtype": "F32", "shape": [3]}}, b"\0" * 12, r"tensor 'w' has no dtype, shape and data_offsets"),
    ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, b"\0" * 12,
     r"tensor 'w' of shape \[2, 2\] and dtype F32 needs 16 bytes, but holds 12"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 3]}}, b"\0" * 3, r"needs 4 bytes, but holds 3"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4, r"has data_offsets \[4, 0\]"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, r"has shape \[-1\]"),
    ({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, r"has dtype 'C64'"),
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, r"ends at byte 16 of 8"),
])
def test_a_malformed_safetensors_file_is_one_error_naming_it(tmp_path, header, data, why):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_safetensors_bytes(header, data))
    with pytest.raises(CheckpointError, match=why) as info:
        checkpoints.read_state_dict(path)
    assert str(info.value).startswith(f"{path}: ")


def test_the_bench_header_check_refuses_a_tensor_its_bytes_cannot_hold(tmp_path):
    from bench.checkpoint import CheckpointError as BenchCheckpointError
    from bench.checkpoint import read_safetensors_header

    path = tmp_path / "bad.safetensors"
    path.write_bytes(_safetensors_bytes({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, b"\0" * 12))
    with pytest.raises(BenchCheckpointError, match=rf"{path.name}: truncated safetensors file, or not one \(tensor "
                                                   r"'w' of shape \[2, 2\] and dtype F32 needs 16 bytes"):
        read_safetensors_header(path)


def test_a_trusted_pickle_of_code_not_installed_names_the_file_and_the_module(tmp_path):
    import pickle
    import sys
    import types

    module = types.ModuleType("llvbench_test_gone")
    exec("class Holder:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        holder = module.Holder()
        holder.state = {"w": torch.zeros(2)}
        path = tmp_path / "gone.pth"
        torch.save(holder, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: its pickle needs code that is not installed "
                                              r"here \(No module named 'llvbench_test_gone'\)"):
        checkpoints.read_state_dict(path, trust_pickle=True)


def test_a_folder_is_named_with_the_way_to_load_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"arch": "genlv-tiny"}')
    with pytest.raises(CheckpointError, match=rf"^{run}: a folder, not a torch checkpoint file; an llvbench "
                                              rf"checkpoint folder .* --model checkpoint --checkpoint {run} "):
        checkpoints.read_state_dict(run)
    release = tmp_path / "release"
    release.mkdir()
    _torch_file(release, "checkpoint-22.pth")
    with pytest.raises(CheckpointError, match=r"a folder, not a torch checkpoint file; give the file inside it "
                                              r"\(checkpoint-22.pth\)"):
        checkpoints.read_state_dict(release)
    # The adapter refuses the folder when it is built, not at its first prediction.
    with pytest.raises(CheckpointError, match="--model checkpoint --checkpoint"):
        bench.load_generalist("promptgip", checkpoint=str(run))


def test_cli_reports_damaged_files_without_a_traceback_and_builds_nothing(tmp_path, capsys, monkeypatch):
    from pipelines.cli import main
    from taskgen.imageio import write_image_atomic

    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    for name in ("a.png", "b.png", "q.png"):
        write_image_atomic(tmp_path / name, image)
    builds = _record_builds(monkeypatch)
    damaged = _damaged_files(tmp_path)
    for path in [*damaged, tmp_path / "run"]:
        (tmp_path / "run").mkdir(exist_ok=True)
        rc = main(["apply", "--model", "promptgip", "--checkpoint", str(path), "--prompt-input", str(tmp_path / "a.png"),
                   "--prompt-target", str(tmp_path / "b.png"), str(tmp_path / "q.png"), "--out",
                   str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and err[-1].startswith(f"llvbench apply: error: {path}: "), err
        assert not any("Traceback" in line for line in err)
    assert builds == []  # the 329 M-parameter PromptGIP was never built, not even on meta


# ----------------------------------------------------------------------------- 2. trust_pickle

@pytest.fixture
def small_official(monkeypatch):
    """genlv-tiny registered as if it had an official (BGR) release, so the official route runs small."""
    from model.registry import _REGISTRY, OfficialWeights, get_architecture

    spec = get_architecture("genlv-tiny")
    name = "genlv-tiny-released"
    monkeypatch.setitem(_REGISTRY, name, type(spec)(name=name, factory=spec.factory, config=spec.config,
                                                     official=OfficialWeights("none.json", "ckpt/x.pth")))
    return name


def test_pickle_refusal_gives_the_cli_form_and_the_option_is_honoured(tmp_path, small_official):
    torch.manual_seed(1)
    net = model.build("genlv-tiny").eval()
    path = tmp_path / "checkpoint-1.pth"
    torch.save({"model": net.state_dict(), "args": Path("runs/x")}, path)  # a class outside the allow-list
    usage = f"--model {small_official} --checkpoint {path}"
    refused = _cli_generalist(usage)
    with pytest.raises(CheckpointError, match=r"refused the pickled object pathlib\.\w*Path.*-o trust_pickle=true "
                                              r"on the command line, trust_pickle=True in Python"):
        refused.predict(*_images())
    trusted = _cli_generalist(usage + " -o trust_pickle=true")
    query, p_in, p_out = _images(size=(32, 32))
    with torch.inference_mode():  # official weights are BGR: the generalist flips in and out
        expected = net(query.flip(1), p_in.flip(1), p_out.flip(1)).flip(1)
    torch.testing.assert_close(trusted.predict(query, p_in, p_out), expected)
    # '-o trust_pickle=False' is the string 'False', which must not count as true.
    with pytest.raises(CheckpointError, match="trust_pickle must be true or false, not 'False'"):
        _cli_generalist(usage + " -o trust_pickle=False").predict(*_images())


# ----------------------------------------------------------------------------- 3. read first, named mismatch

def test_a_file_that_does_not_fit_names_file_and_arch_before_any_real_build(tmp_path, monkeypatch):
    torch.manual_seed(2)
    path = tmp_path / "base-checkpoint-49.pth"
    torch.save({"model": model.build("genlv-tiny").state_dict()}, path)
    builds = _record_builds(monkeypatch)
    generalist = bench.load_generalist("genlv101-base", checkpoint=str(path), device="cpu")
    with pytest.raises(CheckpointError) as info:
        generalist.predict(*_images())
    assert str(info.value).startswith(f"{path}: checkpoint does not fit architecture 'genlv101-base':\n  ")
    assert "missing key(s)" in str(info.value) and "shape mismatch" in str(info.value)
    adapter = bench.load_generalist("promptgip", checkpoint=str(path), device="cpu")
    with pytest.raises(CheckpointError, match=rf"^{path}: checkpoint does not fit architecture 'promptgip'"):
        adapter.predict(*_images())
    assert builds == ["meta", "meta"]  # checked on the meta device; no 33 M / 329 M network was built


# ----------------------------------------------------------------------------- 4. prefixed keys

def test_prefixed_keys_with_an_extra_key_are_unprefixed_and_the_drop_is_logged(tmp_path, caplog):
    torch.manual_seed(3)
    net = model.build("genlv-tiny")
    for prefix in ("net.", "module."):
        state = {prefix + k: v for k, v in net.state_dict().items()}
        state["loss_fn.weight"] = torch.ones(3)
        path = tmp_path / "lightning.ckpt"
        torch.save({"state_dict": state, "epoch": 3}, path)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="model.checkpoints"):
            loaded = checkpoints.load_weights(model.build("genlv-tiny"), checkpoints.read_state_dict(path),
                                              source=path, arch="genlv-tiny")
        for (key, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
            assert torch.equal(a, b), key
        assert f"under '{prefix}' without the prefix; dropped 1 key(s) outside it: loss_fn.weight" in caplog.text


def test_a_prefixed_subset_that_does_not_fit_keeps_the_strict_error_and_says_so(tmp_path):
    net = model.build("genlv-tiny")
    state = {"net." + k: v for k, v in net.state_dict().items() if k != "output.weight"}
    state["loss_fn.weight"] = torch.ones(3)
    with pytest.raises(CheckpointError) as info:
        checkpoints.load_weights(model.build("genlv-tiny"), state, source="x.ckpt", arch="genlv-tiny")
    lines = str(info.value).splitlines()
    assert lines[0] == "x.ckpt: checkpoint does not fit architecture 'genlv-tiny':"
    assert "unexpected key(s): net." in str(info.value)
    assert lines[-1].strip().startswith("the ") and "under 'net.' with the prefix stripped do not fit either: " \
        "1 missing key(s): output.weight" in lines[-1]


# ----------------------------------------------------------------------------- 5. llvbench models: usage, links

def _placeholder_file(tmp_path, usage: str, arch: str) -> dict:
    """Files for a usage line's placeholders that resolve but hold no weights (routing only)."""
    subs = {}
    for token in shlex.split(usage):
        if token == LLVBENCH_CHECKPOINT:
            path = tmp_path / f"{arch}.safetensors"
            checkpoints.write_safetensors(path, {}, {"llvbench_arch": arch, "llvbench_config": "{}"})
            subs[token] = str(path)
        elif token.endswith((".pth", ".ckpt")):
            (tmp_path / token).write_bytes(b"")
            subs[token] = str(tmp_path / token)
    return subs


def test_every_printed_usage_resolves_to_the_loader_it_means(tmp_path, monkeypatch):
    from bench.builtins import CheckpointGeneralist
    from bench.official import ADAPTERS

    builds = _record_builds(monkeypatch)
    entries = [e for e in catalog(with_params=False, checkpoints=tmp_path) if e.usage]
    for e in entries:
        for usage in filter(None, (e.usage, e.usage_authors)):
            g = _cli_generalist(usage, **_placeholder_file(tmp_path, usage, e.name))
            arch = getattr(g, "arch", None) or getattr(getattr(g, "source", None), "arch", None)
            if e.name in ("identity", "prompt-target"):
                continue
            if e.name in ADAPTERS or usage == e.usage_authors:  # the authors' inference code
                assert isinstance(g, tuple(ADAPTERS.values())) and arch == e.name, (usage, g)
            else:
                assert isinstance(g, CheckpointGeneralist), usage
                official = model.get_architecture(arch).official if e.kind == "architecture" else None
                assert g.source.official == (official is not None), usage
                assert e.kind != "architecture" or arch == e.name
    assert builds == []  # lazily built: nothing was built to check the routes


def test_the_old_usage_for_a_fixture_config_explains_the_working_route(tmp_path):
    path = tmp_path / "fixture.pth"
    path.write_bytes(b"")
    with pytest.raises(Exception, match=r"'promptgip-fixture' has no official weights.* --model promptgip "
                                        r"-o arch=promptgip-fixture --checkpoint "):
        bench.load_generalist("promptgip-fixture", checkpoint=str(path))
    with pytest.raises(Exception, match=r"'genlv-fixture' has no official weights, so --model genlv-fixture reads "
                                        r"only llvbench checkpoints"):
        bench.load_generalist("genlv-fixture", checkpoint=str(path))


@pytest.mark.parametrize("arch, adapter", [("promptgip", "promptgip"), ("painter", "painter"), ("promptir", "promptir")])
def test_an_authors_file_of_an_adapter_family_is_sent_to_its_adapter_not_run_plain(tmp_path, arch, adapter):
    # a plain forward skips the authors' resizing and colour order (PromptGIP failed at odd sizes)
    path = tmp_path / "official.pth"
    path.write_bytes(b"")
    from bench.checkpoint import CheckpointError as BenchCheckpointError

    with pytest.raises(BenchCheckpointError, match=rf"the authors' {arch} files run through their inference adapter.*"
                                              rf"use --model {adapter} --checkpoint "):
        bench.load_generalist("checkpoint", checkpoint=str(path), arch=arch)


@needs_fixtures
@pytest.mark.parametrize("arch", sorted(FIXTURES))
def test_fixture_usage_lines_run_the_authors_weights(tmp_path, arch):
    from bench.official import ADAPTERS

    _, params, _, _ = load_fixture(FIXTURES[arch])
    path = tmp_path / "authors.pth"
    torch.save({"model": params, "args": argparse.Namespace(model=arch)}, path)
    row = next(e for e in catalog(with_params=False, checkpoints=tmp_path) if e.name == arch and e.kind == "architecture")
    assert row.usage == f"--model {arch} --checkpoint {LLVBENCH_CHECKPOINT}"
    g = _cli_generalist(row.usage_authors, **{TORCH_FILE: str(path)})
    reference = ADAPTERS[arch.split("-")[0]](network=checkpoints.load_weights(model.build(arch), params), device="cpu")
    images = _images()
    torch.testing.assert_close(g.predict(*images), reference.predict(*images))
    # Its llvbench route reads a file written by llvbench (here: the same weights, saved by save_model).
    saved = tmp_path / f"{arch}.safetensors"
    checkpoints.save_model(checkpoints.load_weights(model.build(arch), params), saved, arch)
    out = _cli_generalist(row.usage, **{LLVBENCH_CHECKPOINT: str(saved)}).predict(*images)
    assert out.shape == images[0].shape and torch.isfinite(out).all()


def test_release_links_are_downloads_of_the_registered_file():
    rows = [e for e in catalog(with_params=False) if e.kind == "architecture" and "https://" in e.weights]
    assert rows  # the GenLV and Painter releases
    for e in rows:
        official = model.get_architecture(e.name).official
        url = e.weights.split()[0]
        assert url == f"https://huggingface.co/{official.hf_repo}/resolve/main/{official.checkpoint}", url
        assert "/blob/" not in e.weights
    assert "llvbench train --arch genlv-s)" in next(e.weights for e in catalog(with_params=False) if e.name == "genlv-s")


# ----------------------------------------------------------------------------- 6. unreadable checkpoint folders

def test_checkpoint_folders_without_weights_or_arch_are_listed_as_unreadable(tmp_path, capsys):
    from pipelines.cli import main

    good = tmp_path / "good"
    good.mkdir()
    torch.manual_seed(4)
    checkpoints.save_model(model.build("genlv-tiny"), good / "model.safetensors", "genlv-tiny")
    (good / "config.json").write_text(json.dumps({"arch": "genlv-tiny", "step": 7}))
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "config.json").write_text(json.dumps({"arch": "genlv-tiny"}))
    (tmp_path / "no-arch").mkdir()
    (tmp_path / "no-arch" / "config.json").write_text(json.dumps({"step": 1}))
    (tmp_path / "no-arch" / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    rows = {e.name: e for e in checkpoint_entries(tmp_path, with_params=False)}
    assert set(rows) == {"good", "no-weights", "no-arch"}
    assert rows["good"].description == "architecture genlv-tiny, step 7"
    assert rows["good"].usage == f"--model checkpoint --checkpoint {good}"
    assert rows["no-weights"].description == (f"UNREADABLE: {tmp_path / 'no-weights'}: config.json but no "
                                              "model.safetensors (training did not finish, or the weights were moved)")
    assert rows["no-arch"].description.startswith("UNREADABLE: ") and "string 'arch'" in rows["no-arch"].description
    assert not rows["no-weights"].usage and not rows["no-arch"].usage
    assert main(["models", "--no-params", "--checkpoints", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "no-weights" in printed and "UNREADABLE" in printed and f"usage: --model checkpoint --checkpoint {good}" in printed
    assert format_catalog(list(rows.values())).count("UNREADABLE") == 2


@pytest.mark.parametrize("field, value, message", [
    ("size_multiple", 0, "'size_multiple' must be a positive integer or null, not 0"),
    ("size_multiple", "8", "'size_multiple' must be a positive integer or null, not '8'"),
    ("size_multiple", True, "'size_multiple' must be a positive integer or null, not True"),
    ("overrides", ["dim=8"], "'overrides' must be a JSON object"),
])
def test_a_bad_config_field_is_an_error_naming_config_json_before_any_unit_runs(tmp_path, field, value, message):
    from bench.checkpoint import CheckpointError, resolve_checkpoint

    folder = tmp_path / "ck"
    folder.mkdir()
    torch.manual_seed(4)
    checkpoints.save_model(model.build("genlv-tiny"), folder / "model.safetensors", "genlv-tiny")
    (folder / "config.json").write_text(json.dumps({"arch": "genlv-tiny", field: value}))
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint(folder)
    assert str(err.value).startswith(f"{folder / 'config.json'}: ") and message in str(err.value)
    (folder / "config.json").write_text(json.dumps({"arch": "genlv-tiny", "size_multiple": 8}))
    assert resolve_checkpoint(folder).size_multiple == 8


def test_a_folder_with_only_llvbench_weights_is_listed_and_one_with_foreign_weights_is_unreadable(tmp_path):
    from safetensors.torch import save_file

    bare = tmp_path / "bare"
    bare.mkdir()
    torch.manual_seed(4)
    checkpoints.save_model(model.build("genlv-tiny"), bare / "model.safetensors", "genlv-tiny")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    save_file({"w": torch.zeros(2)}, str(foreign / "model.safetensors"))  # no llvbench_arch metadata
    (tmp_path / "empty").mkdir()  # neither file: not a checkpoint folder at all
    rows = {e.name: e for e in checkpoint_entries(tmp_path, with_params=True)}
    assert set(rows) == {"bare", "foreign"}
    assert rows["bare"].description == ("architecture genlv-tiny (no config.json: architecture from the "
                                        "weights' metadata)")
    assert rows["bare"].usage == f"--model checkpoint --checkpoint {bare}"
    assert rows["bare"].params == sum(p.numel() for p in model.build("genlv-tiny").parameters())
    assert rows["foreign"].description.startswith("UNREADABLE: ") and "llvbench_arch" in rows["foreign"].description
    assert not rows["foreign"].usage


def test_an_interrupted_safetensors_write_leaves_neither_a_temporary_nor_a_half_file(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    checkpoints.write_safetensors(target, {"w": torch.ones(3)})
    before = target.read_bytes()

    class Interrupted(KeyboardInterrupt):
        pass

    real_pack = checkpoints.struct.pack

    def interrupted_pack(*args):  # the write is cut off after it began, as by SIGTERM
        raise Interrupted

    monkeypatch.setattr(checkpoints.struct, "pack", interrupted_pack)
    with pytest.raises(Interrupted):
        checkpoints.write_safetensors(target, {"w": torch.zeros(3)})
    monkeypatch.setattr(checkpoints.struct, "pack", real_pack)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


# ----------------------------------------------------------------------------- 6. the authors' 256² inference

@pytest.mark.parametrize("rule", ["linear", "cubic-area"])
@pytest.mark.parametrize("size", [(128, 96), (300, 257), (256, 300), (200, 400), (512, 384), (256, 256)])
def test_official_genlv_resize_equals_opencv_on_floats(rule, size):
    import cv2

    from bench.adapters import official_genlv_resize

    image = np.random.default_rng(sum(size)).random((*size, 3), dtype=np.float32)
    flag = cv2.INTER_LINEAR if rule == "linear" else (cv2.INTER_CUBIC if min(size) < 256 else cv2.INTER_AREA)
    expected = cv2.resize(image, (256, 256), interpolation=flag)  # what the authors' read_img/load_img do
    ours = official_genlv_resize(torch.from_numpy(image).permute(2, 0, 1)[None], rule)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - expected).max() < 1e-5


def test_area_weights_average_exact_pixel_areas_and_refuse_to_enlarge():
    from bench.adapters import area_weights

    weights = area_weights(3, 2, torch.float64)  # each output covers 1.5 input pixels
    torch.testing.assert_close(weights, torch.tensor([[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]], dtype=torch.float64))
    with pytest.raises(ValueError, match="shrinks only"):
        area_weights(2, 3)


def test_every_official_genlv_release_names_its_inference_resize():
    rules = {name: model.get_architecture(name).official.inference_resize
             for name in ("genlv-huge", "genlv-giant", "genlv101-base", "genlv101-large", "genlv101-huge")}
    assert rules == {"genlv-huge": "linear", "genlv-giant": "linear", "genlv101-base": "cubic-area",
                     "genlv101-large": "cubic-area", "genlv101-huge": "cubic-area"}


@pytest.fixture
def small_release(monkeypatch):
    """genlv-tiny registered as a conference-code release (BGR, resized to 256² by cv2.INTER_LINEAR)."""
    from model.registry import _REGISTRY, OfficialWeights, get_architecture

    spec = get_architecture("genlv-tiny")
    name = "genlv-tiny-conference"
    monkeypatch.setitem(_REGISTRY, name, type(spec)(name=name, factory=spec.factory, config=spec.config,
                                                     official=OfficialWeights("none.json", "ckpt/x.pth",
                                                                              inference_resize="linear")))
    return name


def test_official_genlv_weights_run_at_256_as_the_authors_inference(tmp_path, small_release):
    import torch.nn.functional as F

    torch.manual_seed(3)
    net = model.build("genlv-tiny").eval()
    path = tmp_path / "checkpoint-22.pth"
    torch.save({"model": net.state_dict()}, path)
    query, _, _ = _images(seed=4, size=(40, 56))
    _, p_in, p_out = _images(seed=5, size=(72, 48))  # a prompt of another size: resized, never padded
    seen = []

    def record(module, inputs):
        seen.append([tuple(t.shape[-2:]) for t in inputs])

    generalist = _cli_generalist(f"--model {small_release} --checkpoint {path}")
    handle = generalist.network.register_forward_pre_hook(lambda m, inputs: record(m, inputs))
    answer = generalist.predict(query, p_in, p_out)
    assert seen == [[(256, 256)] * 3] and answer.shape == query.shape

    def at_256(t):  # the conference inference.py: BGR, cv2.INTER_LINEAR to 256², no rounding
        return F.interpolate(t, size=(256, 256), mode="bilinear", align_corners=False).flip(1)

    with torch.inference_mode():
        official = net(at_256(query), at_256(p_in), at_256(p_out)).flip(1).clamp(0, 1)
    expected = F.interpolate(official, size=(40, 56), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(answer, expected.clamp(0, 1))
    assert "256×256" in generalist.info()["size"] and "INTER_LINEAR" in generalist.info()["size"]
    handle.remove()

    # -o official_resize=false: the query's own size, padded to a multiple of 32 like our models.
    native = _cli_generalist(f"--model {small_release} --checkpoint {path} -o official_resize=false")
    seen.clear()
    native.network.register_forward_pre_hook(lambda m, inputs: record(m, inputs))
    assert native.predict(query, p_in, p_out).shape == query.shape
    assert seen == [[(64, 64), (96, 64), (96, 64)]] and "multiple of 32" in native.info()["size"]
    with pytest.raises(ValueError, match="official_resize must be true or false, got 'no'"):
        _cli_generalist(f"--model {small_release} --checkpoint {path} -o official_resize=no")


def test_apply_averaging_prompt_embeddings_feeds_official_weights_as_the_generalist(tmp_path, small_release):
    from bench.apply import embedding_averager

    torch.manual_seed(6)
    path = tmp_path / "checkpoint-22.pth"
    torch.save({"model": model.build("genlv-tiny").state_dict()}, path)
    generalist = _cli_generalist(f"--model {small_release} --checkpoint {path}")
    query, p_in, p_out = _images(seed=7, size=(48, 40))
    averaged = embedding_averager(generalist, "cpu")
    # Two copies of one pair average to that pair's embedding: the single-pair answer, 256² resize included.
    torch.testing.assert_close(averaged(query, [p_in, p_in], [p_out, p_out]), generalist.predict(query, p_in, p_out))


def test_units_of_official_weights_carry_their_resize_rule_so_padded_ones_are_not_reused(tmp_path, small_release):
    from bench.builtins import adapter_code_sha256, network_code_sha256
    from bench.evaluate import results_options
    from bench.protocol import describe

    torch.manual_seed(8)
    path = tmp_path / "checkpoint-22.pth"
    torch.save({"model": model.build("genlv-tiny").state_dict()}, path)
    options = {"arch": small_release, "checkpoint": str(path)}
    official = bench.load_generalist("checkpoint", **options, device="cpu")
    kept, sha = results_options(options, describe(official))
    code = {"network_code": network_code_sha256(official.network), "adapter_code": adapter_code_sha256(official)}
    assert kept == {"arch": small_release, "official_resize": "linear", **code} and sha
    native = bench.load_generalist("checkpoint", **options, official_resize=False, device="cpu")
    assert results_options({**options, "official_resize": False}, describe(native))[0] == {
        "arch": small_release, "official_resize": False, **code}
    # Our own checkpoints record no resize rule, only the model code's hash (as every network does).
    ours = tmp_path / "ours.safetensors"
    checkpoints.save_model(model.build("genlv-tiny"), ours, arch="genlv-tiny")
    assert set(describe(bench.load_generalist("checkpoint", checkpoint=str(ours), device="cpu"))["results_settings"]) == {
        "network_code", "adapter_code"}


def test_units_of_a_checkpoint_carry_its_network_overrides_so_another_function_is_not_reused(tmp_path):
    from bench.builtins import adapter_code_sha256, network_code_sha256
    from bench.evaluate import results_options
    from bench.protocol import describe

    folder = tmp_path / "run"
    folder.mkdir()
    checkpoints.save_model(model.build("genlv-tiny"), folder / "model.safetensors", arch="genlv-tiny")
    config = {"arch": "genlv-tiny", "overrides": {}}
    (folder / "config.json").write_text(json.dumps(config))
    plain = results_options({"checkpoint": str(folder)}, describe(bench.load_generalist("checkpoint", checkpoint=str(folder),
                                                                                        device="cpu")))
    # The same weights with an input offset in config.json compute another function: scored again.
    (folder / "config.json").write_text(json.dumps({**config, "overrides": {"input_offset": 1 / 255}}))
    shifted = bench.load_generalist("checkpoint", checkpoint=str(folder), device="cpu")
    kept, sha = results_options({"checkpoint": str(folder)}, describe(shifted))
    code = {"network_code": network_code_sha256(shifted.network), "adapter_code": adapter_code_sha256(shifted)}
    assert plain == (code, sha) and kept == {"network_overrides": {"input_offset": 1 / 255}, **code}
    assert shifted.network.config.input_offset == 1 / 255
