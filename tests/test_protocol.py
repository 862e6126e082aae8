"""bench protocol: finding generalists (built-ins, entry points, module:attr, checkpoints) and
refusing bad outputs with clear messages."""
from __future__ import annotations

import hashlib
import json
import textwrap
from importlib import metadata

import numpy as np
import pytest
import torch
from torch import nn

import bench
from bench import registry
from bench.adapters import pad_to_multiple
from bench.builtins import CheckpointGeneralist
from bench.checkpoint import CheckpointError
from bench.protocol import BadOutput, check_output, describe, images_to_tensor

PLUGIN = textwrap.dedent('''
    import torch

    class Brighten:
        """A third-party generalist: it imports nothing from llvbench."""
        name = "brighten"

        def __init__(self, amount=0.1):
            self.amount = float(amount)

        def predict(self, query, prompt_input, prompt_target):
            return (query + self.amount).clamp(0, 1)

        def info(self):
            return {"params": 0, "size": "any"}

    ready = Brighten(0.2)

    def not_a_generalist(**options):
        return object()
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "thirdparty_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "thirdparty_plugin"


def batch(b=2, h=16, w=24, value=0.5):
    return torch.full((b, 3, h, w), value)


def test_builtins_identity_and_prompt_target():
    query, p_in, p_out = batch(value=0.25), batch(h=32, w=32, value=0.0), batch(h=32, w=32, value=0.75)
    identity = bench.load_generalist("identity")
    assert identity.name == "identity" and torch.equal(identity.predict(query, p_in, p_out), query)
    copier = bench.load_generalist("prompt-target")
    out = copier.predict(query, p_in, p_out)
    assert out.shape == query.shape and torch.allclose(out, torch.full_like(query, 0.75))
    assert {"identity", "prompt-target", "checkpoint"} <= set(bench.available_generalists())


def test_module_attr_spec_with_options_and_ready_objects(plugin):
    g = bench.load_generalist(f"{plugin}:Brighten", amount=0.3)
    assert g.name == "brighten"
    assert torch.allclose(g.predict(batch(value=0.5), batch(), batch()), torch.full((2, 3, 16, 24), 0.8))
    ready = bench.load_generalist(f"{plugin}:ready")
    assert ready.amount == 0.2
    with pytest.raises(bench.GeneralistError, match="takes no options"):
        bench.load_generalist(f"{plugin}:ready", amount=1)
    with pytest.raises(bench.GeneralistError, match=r"cannot be built with the options \['colour'\]"):
        bench.load_generalist(f"{plugin}:Brighten", colour="red")
    with pytest.raises(bench.GeneralistError, match="lacks a string 'name'"):
        bench.load_generalist(f"{plugin}:not_a_generalist")


def test_entry_point_group_is_searched(plugin, monkeypatch):
    ep = metadata.EntryPoint(name="brighten-ep", value=f"{plugin}:Brighten", group=registry.ENTRY_POINT_GROUP)
    real = metadata.entry_points
    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == registry.ENTRY_POINT_GROUP else real(**kw))
    g = bench.load_generalist("brighten-ep", amount=0.05)
    assert g.name == "brighten" and g.amount == 0.05
    assert "brighten-ep" in bench.available_generalists()


def test_unknown_specs_explain_what_is_accepted():
    with pytest.raises(bench.GeneralistNotFound, match="known: .*identity"):
        bench.load_generalist("no-such-model")
    with pytest.raises(bench.GeneralistNotFound, match="no module named 'no_such_module_xyz'; it must be installed "
                                                        "or on PYTHONPATH"):
        bench.load_generalist("no_such_module_xyz:Thing")
    with pytest.raises(bench.GeneralistNotFound, match="no module named 'json.nope'"):
        bench.load_generalist("json.nope:Thing")
    with pytest.raises(bench.GeneralistNotFound, match="has no attribute"):
        bench.load_generalist("json:NoSuchThing")


def test_check_spec_finds_what_names_nothing_without_building(tmp_path, monkeypatch):
    from bench.registry import check_spec

    # A module that exists but lacks a dependency is the model's load failure, not a usage error.
    (tmp_path / "needs_missing_dep.py").write_text("import no_such_dependency_qq\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(bench.GeneralistError, match="cannot import 'needs_missing_dep'") as caught:
        check_spec("needs_missing_dep:Model")
    assert not isinstance(caught.value, bench.GeneralistNotFound)
    for spec in ("no-such-model", "typo_module_qq:Model", str(tmp_path / "missing-ckpt")):
        with pytest.raises(bench.GeneralistNotFound):
            check_spec(spec)
    check_spec("identity")
    check_spec("checkpoint")  # exists; that it needs --checkpoint is its build's business
    with pytest.raises(bench.GeneralistNotFound, match="no such checkpoint file or folder: .*gone.pt"):
        check_spec("checkpoint", {"checkpoint": str(tmp_path / "gone.pt")})
    (tmp_path / "x.pth").write_bytes(b"")
    with pytest.raises(bench.GeneralistNotFound, match="unknown generalist or architecture 'promtgip' for the "
                                                        "checkpoint; did you mean 'promptgip'"):
        check_spec("promtgip", {"checkpoint": str(tmp_path / "x.pth")})
    check_spec("genlv-s", {"checkpoint": str(tmp_path / "x.pth")})  # an architecture: resolves
    with pytest.raises(bench.GeneralistError, match="cannot be built with no options: .*checkpoint"):
        bench.load_generalist("checkpoint")


def test_parse_options_reads_json_values():
    assert bench.parse_options(["amount=0.5", "n=3", "flag=true", "name=abc", "dash-key=1"]) == {
        "amount": 0.5, "n": 3, "flag": True, "name": "abc", "dash_key": 1}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_options(["novalue"])


def test_images_to_tensor_scales_by_dtype():
    img8 = np.full((8, 10, 3), 255, np.uint8)
    img16 = np.full((8, 10, 3), 65535, np.uint16)
    t8 = images_to_tensor([img8, img8 // 5])
    assert t8.shape == (2, 3, 8, 10) and t8.dtype == torch.float32
    assert t8[0].max() == 1.0 and t8[1].max() == pytest.approx(51 / 255)
    assert images_to_tensor([img16])[0].min() == 1.0


def test_images_to_tensor_puts_each_channel_in_its_plane_and_rejects_mixed_batches():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(2)]
    tensor = images_to_tensor([images[0], images[1][:, ::-1]])  # a strided view is fine too
    expected = np.stack([images[0], images[1][:, ::-1]]).transpose(0, 3, 1, 2) / 255.0
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-6)
    with pytest.raises(TypeError, match="share a dtype"):
        images_to_tensor([images[0], images[0].astype(np.uint16)])
    with pytest.raises(ValueError, match="share a shape"):
        images_to_tensor([images[0], images[0][:5]])


@pytest.mark.parametrize("output, message", [
    (np.zeros((2, 3, 16, 24), np.float32), "must return a torch.Tensor"),
    (torch.zeros((2, 3, 16, 24), dtype=torch.uint8), "float tensor"),
    (torch.zeros((2, 3, 8, 24)), "shape"),
    (torch.zeros((2, 16, 24, 3)), "shape"),
    (torch.full((2, 3, 16, 24), float("nan")), "NaN/inf"),
    (torch.full((2, 3, 16, 24), 128.0), "0-255"),               # forgot to divide by 255
    (torch.linspace(-1, 1, 2 * 3 * 16 * 24).reshape(2, 3, 16, 24), "0-255 or \\[-1, 1\\]"),
])
def test_bad_outputs_are_refused_with_a_clear_message(output, message):
    with pytest.raises(BadOutput, match=message):
        check_output(output, (2, 3, 16, 24), who="plug")


def edge_map() -> torch.Tensor:
    """A white grid on black, 2×3×16×24 in [0, 1]: mostly 0, as an edge task's target."""
    out = torch.zeros(2, 3, 16, 24)
    out[..., ::4, :] = 1.0
    out[..., ::4] = 1.0
    return out


def test_wrong_conventions_are_refused_however_dark_or_sparse_the_image():
    dark = torch.linspace(0.0, 0.015, 2 * 3 * 16 * 24).reshape(2, 3, 16, 24)
    for output in (edge_map() * 2 - 1, dark * 255, edge_map() * 255):
        with pytest.raises(BadOutput, match="0-255 or"):
            check_output(output, (2, 3, 16, 24), who="plug")


def test_the_undershoot_of_a_briefly_trained_model_over_a_black_edge_map_is_accepted():
    out = edge_map()
    black = out == 0
    out[black] = -0.4 * torch.rand(int(black.sum()), generator=torch.Generator().manual_seed(0))
    assert (out < -0.1).float().mean() > 0.3  # far more than SOFT_FRACTION, none deeper than -0.4
    assert check_output(out, (2, 3, 16, 24)).min() == pytest.approx(float(out.min()))
    out[0, 0, 1, 1] = -0.6  # one pixel past the depth bound with that many below -0.1: refused
    with pytest.raises(BadOutput, match="span \\[-0.6"):
        check_output(out, (2, 3, 16, 24), who="plug")


def test_mild_overshoot_is_accepted_unclamped():
    out = torch.full((1, 3, 16, 24), 0.5)
    out[0, 0, 0, :5] = 1.04
    values = check_output(out.to(torch.bfloat16), (1, 3, 16, 24))
    assert values.shape == (1, 16, 24, 3) and values.dtype == np.float32
    assert values.max() > 1.0  # clamping is the quantizer's job, not the check's


def test_describe_merges_defaults_and_checks_info():
    info = describe(bench.load_generalist("identity"))
    assert info["name"] == "identity" and info["params"] == 0 and info["device"] == "cpu"

    class Broken:
        name = "broken"

        def predict(self, q, pi, pt):
            return q

        def info(self):
            return ["not", "a", "dict"]

    with pytest.raises(bench.GeneralistError, match="must return a dict"):
        describe(Broken())


# --------------------------------------------------------------------------------------------
# checkpoints

class ShiftNet(nn.Module):
    """Tiny stand-in architecture: query + gain * (mean(prompt target) - mean(prompt input))."""

    def __init__(self, multiple: int = 32):
        super().__init__()
        self.gain = nn.Parameter(torch.zeros(1))
        self.multiple = multiple

    def forward(self, query, prompt_input, prompt_target):
        for t in (query, prompt_input, prompt_target):
            assert t.shape[-1] % self.multiple == 0 and t.shape[-2] % self.multiple == 0, t.shape
        shift = (prompt_target.mean(dim=(1, 2, 3)) - prompt_input.mean(dim=(1, 2, 3)))[:, None, None, None]
        return query + self.gain * shift


def build_shiftnet(arch, **overrides):
    assert arch == "shiftnet"
    return ShiftNet(**overrides)


def write_checkpoint(folder, gain=0.5, **config):
    from model.checkpoints import write_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", {"gain": torch.tensor([gain])})
    (folder / "config.json").write_text(json.dumps({"arch": "shiftnet", "overrides": {"multiple": 32}, **config}))
    return folder


def test_checkpoint_folder_loads_lazily_pads_and_crops(tmp_path):
    folder = write_checkpoint(tmp_path / "run1", gain=0.5, name="shift-run1")
    g = bench.load_generalist(str(folder), builder=build_shiftnet, device="cpu")
    assert isinstance(g, CheckpointGeneralist) and g.name == "shift-run1"
    assert g._network is None  # nothing built until it is used
    query = torch.rand(2, 3, 40, 50) * 0.5
    p_in, p_out = torch.full((2, 3, 40, 50), 0.2), torch.full((2, 3, 40, 50), 0.6)
    out = g.predict(query, p_in, p_out)  # 40x50 is padded to 64x64 inside, cropped back
    assert out.shape == query.shape
    torch.testing.assert_close(out, query + 0.5 * 0.4)
    info = describe(g)
    assert info["params"] == 1 and info["arch"] == "shiftnet" and "multiple of 32" in info["size"]
    assert info["checkpoint_sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_checkpoint_by_arch_name_and_errors(tmp_path):
    folder = write_checkpoint(tmp_path / "run2")
    g = bench.load_generalist("shiftnet", checkpoint=str(folder), builder=build_shiftnet)
    assert g.source.arch == "shiftnet" and g.name == "shiftnet@run2"
    with pytest.raises(CheckpointError, match="architecture 'shiftnet', not 'genlv-tiny'"):
        bench.load_generalist("genlv-tiny", checkpoint=str(folder))
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        bench.load_generalist("checkpoint", checkpoint=str(folder))
    with pytest.raises(CheckpointError, match="does not exist"):
        bench.load_generalist("checkpoint", checkpoint=str(tmp_path / "missing"))
    (tmp_path / "official.pth").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="needs the architecture name"):
        bench.load_generalist("checkpoint", checkpoint=str(tmp_path / "official.pth"))


def test_weights_that_do_not_fit_are_reported(tmp_path):
    from model.checkpoints import write_safetensors

    folder = write_checkpoint(tmp_path / "run3")
    write_safetensors(folder / "model.safetensors", {"other": torch.zeros(2)})
    g = bench.load_generalist(str(folder), builder=build_shiftnet)
    with pytest.raises(Exception, match="missing|unexpected"):
        g.predict(batch(h=32, w=32), batch(h=32, w=32), batch(h=32, w=32))


def test_trained_llvbench_model_file_via_model_build(tmp_path):
    """A real architecture saved by model.checkpoints.save_model runs through the generalist."""
    import model
    from model.checkpoints import save_model

    torch.manual_seed(0)
    net = model.build("genlv-tiny")
    save_model(net, tmp_path / "tiny.safetensors", "genlv-tiny")
    g = bench.load_generalist(str(tmp_path / "tiny.safetensors"), device="cpu")
    query, p_in, p_out = (torch.rand(1, 3, 48, 40) for _ in range(3))  # not multiples of 32
    out = g.predict(query, p_in, p_out)
    assert out.shape == query.shape
    with torch.inference_mode():  # the network itself on reflect-padded inputs, in protocol order
        expected = net.eval()(*(pad_to_multiple(t, 32)[0] for t in (query, p_in, p_out)))[..., :48, :40]
    torch.testing.assert_close(out, expected)
    assert describe(g)["params"] == sum(p.numel() for p in net.parameters())


def test_pad_to_multiple_reflects_and_reports_size():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    padded, (h, w) = pad_to_multiple(x, 4)
    assert padded.shape == (2, 3, 8, 8) and (h, w) == (5, 7)
    assert torch.equal(padded[..., :5, :7], x)
    assert torch.equal(padded[..., 5, :7], x[..., 3, :])  # reflection, not zeros
    same, _ = pad_to_multiple(padded, 4)
    assert same is padded


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_quantized_outputs_equal_the_metric_quantizer(dtype):
    from bench.metrics import quantize
    from bench.protocol import quantize_tensor

    g = torch.Generator().manual_seed(0)
    out = torch.rand((3, 3, 17, 23), generator=g) * 1.16 - 0.08  # mild overshoot both ways
    out[1, 2, 3, :3] = torch.tensor([-2.0, 3.0, 1.5])  # the odd far-off pixel
    out[0, 0, 0, :5] = torch.tensor([0.5, 1.5, 2.5, 254.5, 127.5]) / 255  # halves round to even
    expected = quantize(out.permute(0, 2, 3, 1).numpy(), dtype)
    got = check_output(out, (3, 3, 17, 23), quantize_to=dtype)
    assert got.dtype == np.dtype(dtype) and got.shape == (3, 17, 23, 3)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(quantize_tensor(out.contiguous(memory_format=torch.channels_last), dtype), expected)
    half = out.to(torch.bfloat16)
    np.testing.assert_array_equal(quantize_tensor(half, dtype), quantize(half.float().permute(0, 2, 3, 1).numpy(), dtype))


def test_files_that_are_not_safetensors_are_named_not_a_memory_error(tmp_path):
    from bench.checkpoint import read_safetensors_header
    from model.checkpoints import write_safetensors

    folder = write_checkpoint(tmp_path / "run")
    posing = tmp_path / "cfg.safetensors"
    posing.write_text(json.dumps({"arch": "genlv-s", "overrides": {}, "padding": "x" * 2000}))
    with pytest.raises(CheckpointError, match=r"cfg\.safetensors: not a safetensors file \(header length"):
        bench.load_generalist(str(posing))
    with pytest.raises(CheckpointError, match="give the checkpoint folder .*, not its config.json"):
        bench.load_generalist("checkpoint", checkpoint=str(folder / "config.json"))
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    assert read_safetensors_header(weights)["gain"]["dtype"] == "F32"
    for damaged, message in ((b"", "0 bytes, too short"), (good[:-2], "truncated safetensors file"),
                             (b"\xff" * 64, "header length"), (good[:8] + b"[" + good[9:], "not a safetensors")):
        weights.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=message):
            read_safetensors_header(weights)
        # A folder with config.json checks its weights' header when it is resolved, by name.
        with pytest.raises(CheckpointError, match="model.safetensors"):
            bench.load_generalist(str(folder), builder=build_shiftnet)
    write_safetensors(weights, {"gain": torch.tensor([0.5])})
    assert bench.load_generalist(str(folder), builder=build_shiftnet).source.weights == weights


def test_architecture_names_and_paths_that_hold_no_checkpoint_are_explained(tmp_path):
    with pytest.raises(bench.GeneralistNotFound, match="architecture 'genlv-s' needs a checkpoint: --checkpoint PATH"):
        bench.load_generalist("genlv-s")
    with pytest.raises(bench.GeneralistNotFound, match="no such file or folder: .*does-not-exist"):
        bench.load_generalist(str(tmp_path / "does-not-exist"))
    with pytest.raises(bench.GeneralistNotFound, match="no such file or folder: gone.safetensors"):
        bench.load_generalist("gone.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(bench.GeneralistNotFound, match=r"holds no checkpoint \(config.json \+ model.safetensors\)"):
        bench.load_generalist(str(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(bench.GeneralistNotFound, match="is not a checkpoint"):
        bench.load_generalist(str(tmp_path / "notes.txt"))
    with pytest.raises(bench.GeneralistNotFound, match="unknown generalist 'no-such-model'"):
        bench.load_generalist("no-such-model")  # a plain unknown name keeps the full listing


def test_models_command_checks_the_checkpoints_folder_and_flags_unreadable_weights(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["models", "--no-params", "--checkpoints", str(tmp_path / "missing")]) == 1
    assert f"--checkpoints {tmp_path / 'missing'}: no such folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["models", "--no-params", "--checkpoints", str(tmp_path / "file")]) == 1
    assert "a file, not a folder" in capsys.readouterr().err
    write_checkpoint(tmp_path / "ck" / "good")
    write_checkpoint(tmp_path / "ck" / "zero")
    (tmp_path / "ck" / "zero" / "model.safetensors").write_bytes(b"")
    write_checkpoint(tmp_path / "ck" / "trunc")
    weights = tmp_path / "ck" / "trunc" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])
    assert main(["models", "--no-params", "--json", "--checkpoints", str(tmp_path / "ck")]) == 0
    rows = {r["weights"]: r for r in json.loads(capsys.readouterr().out) if r["kind"] == "checkpoint"}
    assert not rows[str(tmp_path / "ck" / "good")]["description"].startswith("UNREADABLE")
    assert rows[str(tmp_path / "ck" / "zero")]["description"].startswith("UNREADABLE: ")
    assert "truncated" in rows[str(tmp_path / "ck" / "trunc")]["description"]
    write_checkpoint(tmp_path / "ck" / "badconfig")
    (tmp_path / "ck" / "badconfig" / "config.json").write_text("{not json")
    assert main(["models", "--no-params", "--json", "--checkpoints", str(tmp_path / "ck")]) == 0
    rows = {r["weights"]: r for r in json.loads(capsys.readouterr().out) if r["kind"] == "checkpoint"}
    assert rows[str(tmp_path / "ck" / "badconfig")]["description"].startswith("UNREADABLE: ")  # was left out
