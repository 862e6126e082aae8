"""`llvbench apply` / `llvbench models`: seamless tiling, bit depths, files, prompts, size rules, catalog."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from bench.apply import (Applier, ApplyConfig, ApplyError, apply_to_files, collect_jobs, plan_tiles,
                         prepare_prompts, tile_starts, to_unit_float)
from taskgen.imageio import encode_png, read_image, write_image_atomic
from taskgen.sources import load_photo


class Pointwise:
    """A pointwise (1×1 receptive field) stand-in model: a fixed tone curve per channel."""
    name = "pointwise"

    def predict(self, query, prompt_input, prompt_target):
        return query.clamp(0, 1).sqrt() * torch.tensor([1.0, 0.9, 0.8]).view(1, 3, 1, 1)


class BoxBlur:
    """A small-receptive-field model: 5×5 box blur with reflect padding (so tile borders are biased)."""
    name = "boxblur"

    def predict(self, query, prompt_input, prompt_target):
        padded = torch.nn.functional.pad(query, (2, 2, 2, 2), mode="reflect")
        return torch.nn.functional.avg_pool2d(padded, 5, stride=1)


class PromptTarget:
    """Returns the prompt target resized to the query (no way to average embeddings)."""
    name = "prompt-copy"

    def predict(self, query, prompt_input, prompt_target):
        return torch.nn.functional.interpolate(prompt_target, size=query.shape[-2:], mode="nearest")


class Recorder(Pointwise):
    name = "recorder"

    def __init__(self):
        self.shapes = []

    def predict(self, query, prompt_input, prompt_target):
        self.shapes.append((tuple(query.shape), tuple(prompt_input.shape), tuple(prompt_target.shape)))
        return super().predict(query, prompt_input, prompt_target)


class Multiple48(Pointwise):
    """A model that only takes sides that are multiples of 48 and says so in info()."""
    name = "needs48"

    def predict(self, query, prompt_input, prompt_target):
        if query.shape[-1] % 48 or query.shape[-2] % 48:
            raise ValueError(f"H and W must be multiples of 48, got {tuple(query.shape[-2:])}")
        return super().predict(query, prompt_input, prompt_target)

    def info(self):
        return {"size": "H and W multiples of 48 (no padding)"}


def step_and_gradient(height: int = 128, width: int = 192) -> np.ndarray:
    """uint16 test card: left half a horizontal gradient, right half step edges (a 9-px checkerboard,
    so edges run right next to tile borders)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    checker = np.where(((x // 9) + (y // 9)) % 2 == 0, 0.15, 0.85)
    card = np.where(x < width // 2, x / width, checker)
    rgb = np.stack([card, (card + y / height) / 2, 1.0 - card], axis=2)
    return np.rint(rgb * 65535).astype(np.uint16)


def prompts(size: int = 64):
    photo = load_photo("astronaut")[:96, :96]
    return prepare_prompts([(photo, photo[::-1].copy())], size)


def run_model(model, image: np.ndarray) -> np.ndarray:
    """The model applied to the whole image at once (the untiled reference), float HWC."""
    tensor = torch.from_numpy(to_unit_float(image)).permute(2, 0, 1)[None]
    with torch.no_grad():
        return model.predict(tensor, tensor, tensor)[0].permute(1, 2, 0).numpy().astype(np.float64)


# ----------------------------------------------------------------------------- tiling

@pytest.mark.parametrize("length,tile,overlap", [(64, 64, 16), (65, 64, 16), (230, 64, 16), (500, 96, 24)])
def test_tiles_cover_the_image_with_at_least_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == max(length, tile)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # overlap >= requested
    weights = sum(t.weights for t in plan_tiles(max(length, tile), max(length, tile), tile, overlap))
    assert weights.min() > 0  # every pixel is covered by a positive weight


def test_pointwise_model_tiled_equals_untiled_on_step_and_gradient():
    image = step_and_gradient()
    applier = Applier(Pointwise(), prompts(), ApplyConfig(tile=64, overlap=16, batch=5))
    assert len(plan_tiles(*image.shape[:2], 64, 16)) > 6  # really tiled, both directions
    tiled = applier.apply_tiled(to_unit_float(image))
    np.testing.assert_allclose(tiled, run_model(Pointwise(), image), atol=1e-6, rtol=0)


def test_small_receptive_field_model_shows_no_seam():
    image = step_and_gradient()
    reference = run_model(BoxBlur(), image)
    blended = Applier(BoxBlur(), prompts(), ApplyConfig(tile=64, overlap=16)).apply_tiled(to_unit_float(image))
    hard = Applier(BoxBlur(), prompts(), ApplyConfig(tile=64, overlap=0)).apply_tiled(to_unit_float(image))
    blended_error, hard_error = np.abs(blended - reference).max(), np.abs(hard - reference).max()
    # Butted tiles (no overlap: 64-px tiles meet exactly) leave visible seams at the step edges;
    # the raised-cosine blend keeps every pixel within one 8-bit grey level of the untiled output.
    assert hard_error > 0.1
    assert blended_error < 1 / 255
    gradient = np.s_[:, : image.shape[1] // 2]
    assert np.abs(blended - reference)[gradient].max() < 0.5 / 255


def test_image_smaller_than_a_tile_keeps_its_size():
    image = load_photo("astronaut")[:40, :50]
    out = Applier(Pointwise(), prompts(), ApplyConfig(tile=64, overlap=16)).apply([image])[0]
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_allclose(out / 255.0, run_model(Pointwise(), image), atol=0.51 / 255)


def test_resize_mode_runs_the_model_at_the_tile_size_and_resizes_back():
    model = Recorder()
    images = [load_photo("astronaut")[:100, :150], load_photo("coffee")[:70, :90]]
    outs = Applier(model, prompts(48), ApplyConfig(tile=48, batch=2, resize=True)).apply(images)
    assert [o.shape for o in outs] == [i.shape for i in images]
    assert model.shapes == [((2, 3, 48, 48), (2, 3, 48, 48), (2, 3, 48, 48))]  # one batch of both images


# ----------------------------------------------------------------------------- files and bit depths

def test_16bit_in_16bit_out_round_trip(tmp_path):
    image = step_and_gradient(70, 90)
    image[0, 0] = [1, 257, 65534]  # values that 8 bits cannot hold
    write_image_atomic(tmp_path / "in" / "hdr.png", image)
    summary = apply_to_files(Applier(Identity(), prompts(), ApplyConfig(tile=64, overlap=16)),
                             [tmp_path / "in"], tmp_path / "out")
    out = read_image(tmp_path / "out" / "hdr.png", keep_16bit=True)
    assert summary.written and out.dtype == np.uint16
    np.testing.assert_array_equal(out, image)


class Identity:
    name = "identity"

    def predict(self, query, prompt_input, prompt_target):
        return query


def test_folder_recursion_keeps_names_and_skips_unreadable(tmp_path):
    src = tmp_path / "photos"
    photo = load_photo("coffee")
    write_image_atomic(src / "a.png", photo[:64, :64])
    (src / "sub" / "deep").mkdir(parents=True)
    cv2.imwrite(str(src / "sub" / "b.jpg"), cv2.cvtColor(photo[:50, :70], cv2.COLOR_RGB2BGR))
    write_image_atomic(src / "sub" / "deep" / "c.png", photo[:80, :33])
    (src / "sub" / "empty.png").write_bytes(b"")
    (src / "broken.png").write_bytes(encode_png(photo[:64, :64])[:200])
    (src / "notes.txt").write_text("not an image, ignored")
    summary = apply_to_files(Applier(Identity(), prompts(), ApplyConfig(tile=64, overlap=16)), [src], tmp_path / "out")
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["a.png", "sub/b.png", "sub/deep/c.png"]
    assert read_image(tmp_path / "out" / "sub" / "deep" / "c.png").shape == (80, 33, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.png"), photo[:64, :64])
    assert sum(summary.skipped.values()) == 2
    assert summary.skipped["zero-byte file"] == 1 and summary.skipped["truncated or corrupt"] == 1


def test_clashing_output_names_are_made_unique(tmp_path):
    for name in ("x.png", "x.jpg"):
        (tmp_path / name).write_bytes(b"")
    outputs = [job.output.as_posix() for job in collect_jobs([tmp_path / "x.png", tmp_path / "x.jpg"])]
    assert outputs == ["x.png", "x-2.png"]


def test_a_file_reached_twice_is_processed_once(tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "in" / name).write_bytes(b"")
    given = [tmp_path / "in" / "a.png", tmp_path / "in" / "a.png", tmp_path / "in", tmp_path / "in" / ".." / "in"]
    jobs = collect_jobs(given)
    assert [(job.source.name, job.output.as_posix()) for job in jobs] == [("a.png", "a.png"), ("b.png", "b.png")]


# ----------------------------------------------------------------------------- prompts and size rules

def test_prompt_pair_of_different_sizes_is_resized_with_a_note():
    photo = load_photo("astronaut")
    prompt_set = prepare_prompts([(photo[:100, :120], photo[:50, :60])], 64, [("a.png", "b.png")])
    assert prompt_set.inputs[0].shape == prompt_set.targets[0].shape == (64, 64, 3)
    assert len(prompt_set.notes) == 1 and "60×50" in prompt_set.notes[0] and "120×100" in prompt_set.notes[0]
    assert not prepare_prompts([(photo[:64, :64], photo[:64, :64])], 64).notes


def test_model_that_cannot_take_the_size_names_its_rule():
    image = load_photo("astronaut")[:100, :100]
    with pytest.raises(ApplyError, match="multiples of 48.*--tile"):
        Applier(Multiple48(), prompts(), ApplyConfig(tile=64, overlap=16)).apply([image])
    out = Applier(Multiple48(), prompts(96), ApplyConfig(tile=96, overlap=16)).apply([image])[0]
    assert out.shape == image.shape


def test_a_plugin_that_raises_is_named_with_the_error_type_and_the_input_file(tmp_path):
    class FailsOnSecondImage(Pointwise):
        name = "flaky-plugin"
        calls = 0

        def predict(self, query, prompt_input, prompt_target):
            self.calls += 1
            if self.calls > 1:
                raise KeyError("output")
            return super().predict(query, prompt_input, prompt_target)

    for name in ("a.png", "b.png"):
        write_image_atomic(tmp_path / "in" / name, load_photo("coffee")[:64, :64])
    applier = Applier(FailsOnSecondImage(), prompts(), ApplyConfig(tile=64, overlap=16))
    with pytest.raises(ApplyError, match=r"b.png: flaky-plugin: predict\(\) raised KeyError: 'output' on a 64×64 "
                                         r"input .*\(1 output\(s\) already written to "):
        apply_to_files(applier, [tmp_path / "in"], tmp_path / "out")


def test_declared_size_multiple_is_checked_before_running():
    class Declared(Multiple48):
        def info(self):
            return {**super().info(), "size_multiple": 48}

    with pytest.raises(ApplyError, match="use --tile 240"):
        Applier(Declared(), prompts(), ApplyConfig(tile=256))


def test_several_pairs_without_embeddings_average_the_outputs_and_say_so():
    a, b = np.full((40, 40, 3), 40, np.uint8), np.full((40, 40, 3), 200, np.uint8)
    prompt_set = prepare_prompts([(a, a), (a, b)], 32)
    applier = Applier(PromptTarget(), prompt_set, ApplyConfig(tile=32, overlap=8))
    out = applier.apply([load_photo("coffee")[:50, :70]])[0]
    assert np.all(out == 120)  # (40 + 200) / 2
    assert "outputs were averaged" in prompt_set.combine


class TinyGenLV:
    """A generalist exposing a (random) GenLV network, as the checkpoint built-in does."""
    name = "tiny-genlv"

    def __init__(self):
        from model import build

        torch.manual_seed(0)
        self.network = build("genlv-tiny").eval()
        with torch.no_grad():  # random weights overshoot [0, 1]; shrink the head so outputs pass the checks
            self.network.output.weight.mul_(0.2)

    def predict(self, query, prompt_input, prompt_target):
        with torch.no_grad():
            return self.network(query, prompt_input, prompt_target)


def test_several_pairs_average_genlv_prompt_embeddings():
    model = TinyGenLV()
    photo = load_photo("astronaut")
    pair_a = (photo[:64, :64], photo[64:128, :64])
    pair_b = (photo[200:264, 200:264], photo[:64, 300:364])
    query = photo[300:332, 100:132]
    averaged = Applier(model, prepare_prompts([pair_a, pair_b], 32), ApplyConfig(tile=32, overlap=8))
    assert "embeddings averaged" in averaged.prompts.combine
    # Two copies of one pair average to that pair's own embedding: the single-pair output.
    twice = Applier(model, prepare_prompts([pair_a, pair_a], 32), ApplyConfig(tile=32, overlap=8))
    single = Applier(model, prepare_prompts([pair_a], 32), ApplyConfig(tile=32, overlap=8))
    np.testing.assert_allclose(twice.predict_batch([to_unit_float(query)]),
                               single.predict_batch([to_unit_float(query)]), atol=1e-6)
    # And different pairs give the output of the mean embedding.
    p = [torch.from_numpy(x).permute(2, 0, 1)[None] for x in prepare_prompts([pair_a, pair_b], 32).inputs]
    t = [torch.from_numpy(x).permute(2, 0, 1)[None] for x in prepare_prompts([pair_a, pair_b], 32).targets]
    with torch.no_grad():
        (ka, va), (kb, vb) = model.network.encode_prompt(p[0], t[0]), model.network.encode_prompt(p[1], t[1])
        q = torch.from_numpy(to_unit_float(query)).permute(2, 0, 1)[None]
        expected = model.network.forward_with_prompt(q, (ka + kb) / 2, (va + vb) / 2)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(averaged.predict_batch([to_unit_float(query)])[0], expected, atol=1e-6)
    assert np.abs(expected - single.predict_batch([to_unit_float(query)])[0]).max() > 1e-3  # the prompt matters


# ----------------------------------------------------------------------------- command line

def test_cli_apply_and_models(tmp_path, capsys):
    from pipelines.cli import main

    photo = load_photo("coffee")
    write_image_atomic(tmp_path / "p_in.png", photo[:64, :64])
    write_image_atomic(tmp_path / "p_out.png", photo[:32, :32])
    write_image_atomic(tmp_path / "q" / "query.png", photo[:70, :100])
    rc = main(["apply", "--model", "identity", "--prompt-input", str(tmp_path / "p_in.png"), "--prompt-target",
               str(tmp_path / "p_out.png"), str(tmp_path / "q"), "--out", str(tmp_path / "out"), "--tile", "64",
               "--overlap", "16", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0 and "1 written" in captured.out and "resized to the input" in captured.err
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "query.png"), photo[:70, :100])

    assert main(["models", "--json", "--checkpoints", str(tmp_path)]) == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(capsys.readouterr().out)}
    assert ("builtin", "identity") in rows and ("builtin", "checkpoint") in rows
    from model import build

    assert rows[("architecture", "genlv-tiny")]["params"] == sum(p.numel() for p in build("genlv-tiny").parameters())
    assert "huggingface.co/Kaiwen-Zhu/GenLV" in rows[("architecture", "genlv-huge")]["weights"]
    assert "none released" in rows[("architecture", "genlv-base")]["weights"]


def test_official_weights_are_located_honestly():
    from bench.catalog import official_weights_text, safe_parameter_count
    from model import OfficialWeights

    assert official_weights_text(OfficialWeights("m.json", "ckpt/a.pth", hf_repo="")).startswith(
        "authors' release outside Hugging Face, file ckpt/a.pth")
    assert official_weights_text(OfficialWeights("m.json", "", hf_repo="org/repo")).startswith("none released")
    assert official_weights_text(None).startswith("none released")
    assert safe_parameter_count("genlv-tiny", no_such_field=1) is None  # a broken config does not break the list


# ----------------------------------------------------------------------------- refusals before any work

def _apply_cli(tmp_path, inputs, out, *extra):
    from pipelines.cli import main

    return main(["apply", "--model", "prompt-target", "--prompt-input", str(tmp_path / "img" / "pa.png"),
                 "--prompt-target", str(tmp_path / "img" / "pb.png"), *map(str, inputs), "--out", str(out),
                 "--tile", "64", "--overlap", "16", "--no-progress", *extra])


@pytest.fixture
def apply_files(tmp_path):
    photo = load_photo("coffee")
    write_image_atomic(tmp_path / "img" / "pa.png", photo[:64, :64])
    write_image_atomic(tmp_path / "img" / "pb.png", photo[64:128, :64])
    write_image_atomic(tmp_path / "inplace" / "q.png", photo[:70, :90])
    return {p.name: p.read_bytes() for p in (tmp_path / "img").iterdir()} | {
        "q.png": (tmp_path / "inplace" / "q.png").read_bytes()}


def test_outputs_over_inputs_or_prompts_are_refused_and_nothing_is_written(tmp_path, apply_files, capsys):
    cases = [([tmp_path / "inplace" / "q.png"], tmp_path / "inplace"),   # a file, out = its folder
             ([tmp_path / "inplace"], tmp_path / "inplace"),             # a folder onto itself
             ([tmp_path / "inplace" / "q.png"], tmp_path / "inplace" / ".." / "inplace"),  # compared resolved
             ([tmp_path / "img" / "pa.png"], tmp_path / "img")]           # the prompt image itself
    for inputs, out in cases:
        assert _apply_cli(tmp_path, inputs, out) == 1
        assert "refusing to write over the inputs" in capsys.readouterr().err
    # A prompt image that is not an input but lies where an output would go: refused as well.
    write_image_atomic(tmp_path / "other" / "pb.png", load_photo("coffee")[:40, :40])
    assert _apply_cli(tmp_path, [tmp_path / "other" / "pb.png"], tmp_path / "img") == 1
    assert "prompt image" in capsys.readouterr().err
    assert (tmp_path / "inplace" / "q.png").read_bytes() == apply_files["q.png"]
    assert all((tmp_path / "img" / n).read_bytes() == apply_files[n] for n in ("pa.png", "pb.png"))
    # The library refuses too, before writing anything.
    applier = Applier(Identity(), prompts(), ApplyConfig(tile=64, overlap=16))
    with pytest.raises(ApplyError, match="would overwrite the input image"):
        apply_to_files(applier, [tmp_path / "inplace"], tmp_path / "inplace")
    assert (tmp_path / "inplace" / "q.png").read_bytes() == apply_files["q.png"]
    assert _apply_cli(tmp_path, [tmp_path / "inplace"], tmp_path / "out") == 0  # elsewhere: fine


def test_bad_tile_batch_overlap_and_imageless_folders_are_errors(tmp_path, apply_files, capsys):
    for bad in ({"tile": 0}, {"tile": -64}, {"batch": 0}, {"overlap": -1}, {"tile": 32, "overlap": 32}):
        with pytest.raises(ApplyError, match="tile|batch|overlap"):
            ApplyConfig(**{"tile": 64, "overlap": 16, **bad})
    with pytest.raises(ApplyError, match="must be positive, got 0"):
        prepare_prompts([(np.zeros((8, 8, 3), np.uint8),) * 2], 0)
    assert _apply_cli(tmp_path, [tmp_path / "inplace"], tmp_path / "out", "--tile", "0") == 1
    assert "--tile) must be positive, got 0" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("no image here")
    for folder in ("empty", "texts"):
        assert _apply_cli(tmp_path, [tmp_path / folder], tmp_path / "out") == 1
        assert f"no images found in {tmp_path / folder}" in capsys.readouterr().err
    with pytest.raises(ApplyError, match="no images found"):
        collect_jobs([tmp_path / "empty"])


def test_out_that_is_a_file_is_an_error_not_a_traceback(tmp_path, apply_files, capsys):
    (tmp_path / "r.sh").write_text("#!/bin/sh\n")
    for out in (tmp_path / "r.sh", tmp_path / "r.sh" / "sub"):
        assert _apply_cli(tmp_path, [tmp_path / "inplace"], out) == 1
        assert "must be a folder, but it is a file" in capsys.readouterr().err
    assert (tmp_path / "r.sh").read_text() == "#!/bin/sh\n"


# ----------------------------------------------------------------------------- colour layouts

def test_alpha_and_grey_inputs_are_counted_in_one_note_and_written_as_rgb(tmp_path, capsys):
    from PIL import Image

    from bench.apply import colour_conversions, colour_note
    from pipelines.cli import main

    photo = load_photo("coffee")[:48, :40]
    alpha = np.full((48, 40, 1), 128, np.uint8)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.concatenate([photo, alpha], axis=2), "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.concatenate([photo[:, :, :1], alpha], axis=2), "LA").save(folder / "grey_alpha.png")
    Image.fromarray(photo[:, :, 1]).save(folder / "grey.jpg")
    Image.fromarray(photo).convert("P").save(folder / "palette.gif", transparency=0)
    cv2.imwrite(str(folder / "deep.png"), np.concatenate([photo, alpha], axis=2).astype(np.uint16) * 257)
    write_image_atomic(folder / "plain.png", photo)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)  # skipped: counted nowhere here
    opaque = np.full((48, 40, 1), 255, np.uint8)  # nothing to composite, nothing lost
    Image.fromarray(np.concatenate([photo, opaque], axis=2), "RGBA").save(tmp_path / "opaque.png")
    cv2.imwrite(str(tmp_path / "opaque16.png"), np.concatenate([photo, opaque], axis=2).astype(np.uint16) * 257)
    assert colour_conversions(tmp_path / "opaque.png") == set() == colour_conversions(tmp_path / "opaque16.png")
    assert colour_conversions(folder / "rgba.png") == {"alpha"}
    assert colour_conversions(folder / "grey_alpha.png") == {"alpha", "grey"}
    assert colour_conversions(folder / "grey.jpg") == {"grey"}
    assert colour_conversions(folder / "palette.gif") == {"alpha"}
    assert colour_conversions(folder / "deep.png") == {"alpha16"}
    assert colour_conversions(folder / "plain.png") == set() == colour_conversions(folder / "broken.png")
    assert colour_note([folder / "plain.png"]) is None
    assert colour_note([folder / "rgba.png", folder / "grey.jpg"]) == (
        "1 input had an alpha channel (composited on white, alpha not kept); 1 grey input written as RGB")

    write_image_atomic(tmp_path / "pa.png", photo)
    write_image_atomic(tmp_path / "pb.png", photo)
    rc = main(["apply", "--model", "identity", "--prompt-input", str(tmp_path / "pa.png"), "--prompt-target",
               str(tmp_path / "pb.png"), str(folder), "--out", str(tmp_path / "out"), "--tile", "64",
               "--overlap", "16", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == ["note: 3 inputs had an alpha channel (composited on white, alpha not kept); 1 16-bit input "
                     "had an alpha channel (dropped, not composited); 2 grey inputs written as RGB"]
    # Outputs are RGB whatever came in: alpha composited on white (8-bit) or dropped (16-bit).
    out = tmp_path / "out"
    rgba = cv2.imread(str(out / "rgba.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (48, 40, 3)
    expected = np.rint(photo.astype(np.float32) * (128 / 255) + 255 * (1 - 128 / 255)).astype(np.uint8)
    np.testing.assert_allclose(read_image(out / "rgba.png").astype(int), expected.astype(int), atol=1)
    deep = cv2.imread(str(out / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert deep.shape == (48, 40, 3) and deep.dtype == np.uint16
    grey = read_image(out / "grey.png")
    assert grey.shape == (48, 40, 3) and (grey[:, :, 0] == grey[:, :, 2]).all()


def test_plain_rgb_inputs_get_no_colour_note(tmp_path, apply_files, capsys):
    assert _apply_cli(tmp_path, [tmp_path / "inplace"], tmp_path / "out") == 0
    assert "note:" not in capsys.readouterr().err
