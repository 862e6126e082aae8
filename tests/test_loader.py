"""Training stream: same task, different source images, one augmentation for all four images,
DataLoader workers and DDP ranks that split an epoch completely with no empty rank."""
from __future__ import annotations

import json
import pickle
import re
import shutil
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.data import (GENLV_TASK_MIX, SampleRef, TrainStream, batch_to_float, collate_integer,  # noqa: E402
                        dihedral, make_loader, resolve_task_weights, to_chw_float, to_chw_int)
from pipelines.synth import configure, read_params, run_synth  # noqa: E402
from taskgen.registry import register_task, registered  # noqa: E402
from taskgen.shards import ManifestError, ShardError, index_shard  # noqa: E402

SIZE = 24
RED, GREEN = np.array([255, 0, 0], np.uint8), np.array([0, 255, 0], np.uint8)


def _mark(image):
    """Two coloured corner pixels: their positions after a flip/rotation identify it."""
    out = image.copy()
    out[0, 0], out[0, 1] = RED, GREEN
    return out


def _marked(image, rng):
    shift = int(rng.integers(0, 40))
    target = _mark(image)
    inp = _mark(np.clip(image.astype(np.int16) - shift, 0, 255).astype(np.uint8))
    return inp, target, {"shift": shift}


def _hdr(image, rng):
    return image.copy(), (image.astype(np.uint16) * 257), {"hdr_encoding": "linear"}


@pytest.fixture(scope="module", autouse=True)
def _test_tasks():
    """Test-only tasks, registered for this module only."""
    register_task(name="_loader_marked", category="restoration", metric="psnr", target_domain="clean image",
                  description="test-only: input and target both carry the corner marks")(_marked)
    register_task(name="_loader_hdr", category="enhancement", metric="psnr", target_domain="HDR image",
                  description="test-only: 16-bit target", hdr="target")(_hdr)
    yield
    for name in ("_loader_marked", "_loader_hdr"):
        registered().pop(name, None)


def _synth(out, tasks, train_source="deadleaves", n_train=6):
    params = read_params(None)
    params.update({"tasks": tasks, "size": SIZE, "samples_per_shard": 4, "summary": None, "per_task": {},
                   "counts": {"train": n_train, "test": 0, "unseen": 0},
                   "sources": {**params["sources"], "train": train_source}})
    run_synth(configure(params, {"out": str(out), "workers": 1}), progress=False)
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return _synth(tmp_path_factory.mktemp("loader") / "shards", "_loader_marked,_loader_hdr")


@pytest.fixture(scope="module")
def photo_shards(tmp_path_factory):
    # Three photos cut into 9 train samples: three crops of each image.
    return _synth(tmp_path_factory.mktemp("loader_photos") / "shards", "_loader_marked",
                  train_source="photos:astronaut,coffee,chelsea", n_train=9)


def _op_of(chw: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    img = (chw.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    red = tuple(int(v) for v in np.argwhere((img == RED).all(axis=2))[0])
    green = tuple(int(v) for v in np.argwhere((img == GREEN).all(axis=2))[0])
    return red, green


def test_prompt_and_query_come_from_the_same_task_and_different_images(photo_shards):
    stream = TrainStream(photo_shards, SIZE, seed=1, epochs=1, epoch_length=60)
    images = {ref.key: ref.image for ref in stream.refs["_loader_marked"]}
    assert len(set(images.values())) == 3
    seen = 0
    for item in stream:
        assert item["key"].split("/")[0] == item["prompt_key"].split("/")[0] == item["task"]
        assert images[item["key"]] != images[item["prompt_key"]]
        seen += 1
    assert seen == 60


def test_one_flip_and_rotation_for_all_four_images(shards):
    stream = TrainStream(shards, SIZE, task_weights={"_loader_marked": 1}, seed=0, epochs=1, epoch_length=40)
    ops = Counter()
    for item in stream:
        positions = {_op_of(item[k]) for k in ("prompt_input", "prompt_target", "query", "target")}
        assert len(positions) == 1, positions
        ops[positions.pop()] += 1
    assert len(ops) == 8  # all eight dihedral transforms occur, each applied to the four alike


def test_dihedral_covers_the_eight_symmetries():
    grid = np.arange(12).reshape(2, 2, 3)
    variants = {dihedral(grid, op).tobytes() for op in range(8)}
    assert len(variants) == 8


def test_integer_transport_is_exact_for_8_and_16_bit_images():
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img16 = rng.integers(0, 65536, (8, 8, 3), dtype=np.uint16)
    samples = [{k: to_chw_int(img8) for k in ("prompt_input", "prompt_target", "query")} | {"target": to_chw_int(t)}
               | {"task": "t", "key": str(i)} for i, t in enumerate((img8, img16))]
    batch = collate_integer(samples)
    assert batch["query"].dtype == torch.uint8 and batch["target"].dtype == torch.uint16
    assert batch["key"] == ["0", "1"]
    out = batch_to_float(batch)
    for j, t in enumerate((img8, img16)):
        torch.testing.assert_close(out["target"][j], to_chw_float(t), rtol=0, atol=1e-7)
        torch.testing.assert_close(out["query"][j], to_chw_float(img8), rtol=0, atol=0)


def test_tensors_are_float_chw_in_unit_range_and_hdr_is_scaled(shards):
    stream = TrainStream(shards, 16, task_weights={"_loader_hdr": 1}, seed=0, augment=False, epochs=1,
                         epoch_length=2)
    item = next(iter(stream))
    for key in ("prompt_input", "prompt_target", "query", "target"):
        assert item[key].dtype == torch.float32 and item[key].shape == (3, 16, 16)
        assert 0.0 <= float(item[key].min()) and float(item[key].max()) <= 1.0
    # The 16-bit target is x*257 of the 8-bit input: scaled by 1/65535 both read the same.
    torch.testing.assert_close(item["target"], item["query"], rtol=0, atol=1e-6)


def _fingerprints(items):
    # 16-bit code values: exact for 8-bit images (v/255 == 257v/65535) and for HDR sides alike.
    def codes(t):
        return (t * 65535).round().to(torch.int32).numpy().tobytes()

    return Counter((i["key"], i["prompt_key"], codes(i["query"]), codes(i["prompt_target"])) for i in items)


def test_two_dataloader_workers_split_the_epoch_exactly(shards):
    single = list(TrainStream(shards, 16, seed=3, epochs=1, epoch_length=24))
    loader = make_loader(shards, batch_size=5, size=16, workers=2, seed=3, epochs=1, epoch_length=24)
    batches = list(loader)
    assert batches[0]["query"].shape == (5, 3, 16, 16) and isinstance(batches[0]["task"], list)
    assert all(b[k].dtype == torch.float32 and float(b[k].max()) <= 1.0 for b in batches
               for k in ("prompt_input", "prompt_target", "query", "target"))
    unbatched = [{k: (b[k][j]) for k in ("key", "prompt_key", "query", "prompt_target")}
                 for b in batches for j in range(len(b["key"]))]
    assert len(unbatched) == 24
    # The same entries with the same pixels, whichever process made them.
    assert _fingerprints(unbatched) == _fingerprints(single)


@pytest.mark.parametrize("world_size,epoch_length", [(3, 7), (5, 2)])
def test_ddp_ranks_share_an_epoch_with_no_rank_empty(shards, world_size, epoch_length):
    plan = TrainStream(shards, 16, seed=9, epoch_length=epoch_length).epoch_plan(0)
    per_rank = -(-epoch_length // world_size)
    got = []
    for rank in range(world_size):
        stream = TrainStream(shards, 16, seed=9, rank=rank, world_size=world_size, epochs=1,
                             epoch_length=epoch_length)
        rows = [tuple(row) for _, row in stream._my_entries(0)]
        assert len(rows) == per_rank == len(stream) > 0
        got += rows
    # Every planned entry is served; the padding repeats the first ones.
    assert Counter(got) == Counter(tuple(plan[i % epoch_length]) for i in range(per_rank * world_size))


def test_epochs_are_reproducible_and_differ(shards):
    a = TrainStream(shards, 16, seed=4)
    b = TrainStream(shards, 16, seed=4)
    np.testing.assert_array_equal(a.epoch_plan(2), b.epoch_plan(2))
    assert not np.array_equal(a.epoch_plan(0), a.epoch_plan(1))
    endless = iter(TrainStream(shards, 16, seed=4, epoch_length=3))
    keys = [next(endless)["key"] for _ in range(7)]  # crosses two epoch boundaries
    assert len(keys) == 7


def test_task_weights(shards):
    tasks = ["_loader_marked", "_loader_hdr"]
    assert resolve_task_weights(tasks, None) == {"_loader_marked": 0.5, "_loader_hdr": 0.5}
    assert resolve_task_weights(tasks, {"_loader_marked": 1}) == {"_loader_marked": 1.0}
    with pytest.raises(ValueError, match="GenLV"):
        resolve_task_weights(tasks, "genlv")
    with pytest.raises(ValueError, match="without train samples"):
        resolve_task_weights(tasks, {"jpeg": 1})
    stream = TrainStream(shards, 16, task_weights={"_loader_marked": 3, "_loader_hdr": 1}, seed=0,
                         epoch_length=4000)
    share = np.mean(stream.epoch_plan(0)[:, 0] == stream.tasks.index("_loader_marked"))
    assert 0.72 < share < 0.78
    assert abs(sum(GENLV_TASK_MIX.values()) - 1280) < 1e-9 and len(GENLV_TASK_MIX) == 32


def test_identity_rate_turns_a_share_of_entries_into_pass_through_pairs(shards):
    plain = list(TrainStream(shards, 16, seed=3, epochs=1, epoch_length=200))
    mixed = list(TrainStream(shards, 16, seed=3, epochs=1, epoch_length=200, identity_rate=0.25))
    assert list(TrainStream(shards, 16, seed=3, epochs=1, epoch_length=200, identity_rate=0.0))[7]["key"] \
        == plain[7]["key"]
    identity = [i for i, item in enumerate(mixed) if item["task"] == "identity"]
    assert 30 <= len(identity) <= 70  # ~50 of 200
    assert sum(not torch.equal(plain[i]["target"], plain[i]["query"]) for i in identity) > 20  # real changes
    for i, (a, b) in enumerate(zip(plain, mixed)):
        # Same plan, crops and flips either way: only the sides an identity entry shows differ.
        assert (a["key"], a["prompt_key"]) == (b["key"], b["prompt_key"])
        assert torch.equal(a["query"], b["query"]) and torch.equal(a["prompt_input"], b["prompt_input"])
        if i in identity:
            assert torch.equal(b["target"], b["query"]) and torch.equal(b["prompt_target"], b["prompt_input"])
        else:
            assert torch.equal(a["target"], b["target"]) and b["task"] == a["task"]
    raw = TrainStream(shards, 16, seed=3, epochs=1, epoch_length=200, identity_rate=0.25, raw=True)
    batch = collate_integer([raw.make_sample(0, p, raw.epoch_plan(0)[p]) for p in identity[:4]])
    assert torch.equal(batch["target"], batch["query"])
    with pytest.raises(ValueError, match="identity_rate"):
        TrainStream(shards, 16, identity_rate=1.0)


def test_stream_pickles_without_open_files(shards):
    stream = TrainStream(shards, 16, seed=0, epochs=1, epoch_length=4)
    first = [i["key"] for i in stream]
    assert stream._fds  # files were opened while reading
    clone = pickle.loads(pickle.dumps(stream))
    assert clone._fds is None
    assert [i["key"] for i in clone] == first


def test_crop_larger_than_stored_images_is_refused(shards):
    with pytest.raises(ValueError, match="larger than the stored images"):
        TrainStream(shards, SIZE + 8)


def test_forked_workers_survive_a_parent_that_used_opencv_threads(shards):
    import cv2

    cv2.setNumThreads(2)
    cv2.GaussianBlur(np.random.default_rng(0).random((1024, 1024), dtype=np.float32), (0, 0), 5)
    loader = make_loader(shards, batch_size=4, size=16, workers=2, seed=0, epochs=1, epoch_length=8,
                         multiprocessing_context="fork")
    assert sum(len(b["key"]) for b in loader) == 8  # hung in the workers' first OpenCV call before
    assert cv2.getNumThreads() == 2


def _flipped(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0xFF
    return bytes(out)


def _middle_of(path, key, field):
    span = index_shard(path)[key][field]
    return span.offset + span.size // 2


@pytest.mark.parametrize("damage,message", [
    (lambda data, path: data[:len(data) // 2], r"\d+ bytes, the manifest says \d+ \(run llvbench verify"),
    (lambda data, path: _flipped(data, 100), r"not a readable shard \(ReadError: bad checksum\)"),
    (lambda data, path: _flipped(data, index_shard(path)["_loader_marked/train/000001"]["json"].offset),
     r"sample _loader_marked/train/000001: the json member is not valid JSON"),
], ids=["truncated", "flipped_header", "flipped_json"])
def test_damaged_train_shard_is_named_when_indexed(shards, tmp_path, damage, message):
    root = shutil.copytree(shards, tmp_path / "shards")
    path = root / "train/_loader_marked-00000.tar"
    path.write_bytes(damage(path.read_bytes(), path))
    with pytest.raises(ShardError, match=re.escape(f"{path}: ") + message):
        TrainStream(root, 16)


def test_undecodable_image_is_named_with_its_shard_and_sample(shards, tmp_path):
    root = shutil.copytree(shards, tmp_path / "shards")
    path = root / "train/_loader_marked-00000.tar"
    path.write_bytes(_flipped(path.read_bytes(), _middle_of(path, "_loader_marked/train/000002", "target.png")))
    stream = TrainStream(root, 16, task_weights={"_loader_marked": 1}, epochs=1, epoch_length=6)
    with pytest.raises(ShardError, match=re.escape(f"{path}: sample _loader_marked/train/000002: target.png is "
                                                   f"not a decodable PNG")):
        list(stream)  # every sample is a query once per epoch


def test_swapped_or_missing_train_shard_is_refused(shards, tmp_path):
    root = shutil.copytree(shards, tmp_path / "shards")
    path = root / "train/_loader_marked-00000.tar"
    shutil.copyfile(root / "train/_loader_hdr-00000.tar", path)
    manifest = json.loads((root / "manifest.json").read_text())
    entry = next(e for e in manifest["shards"] if e["path"] == "train/_loader_marked-00000.tar")
    entry["bytes"] = path.stat().st_size  # a same-size swap: only the keys tell
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=re.escape(f"{path}: sample _loader_hdr/train/000000 is not a "
                                                   f"_loader_marked train sample")):
        TrainStream(root, 16)
    path.unlink()
    with pytest.raises(ShardError, match=re.escape(f"{path}: missing, though the manifest lists it")):
        TrainStream(root, 16)
    manifest["shards"] = None
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=re.escape(f"{root / 'manifest.json'} has shards=null")):
        TrainStream(root, 16)


def _fake_stream(images_per_task, seed=0, epoch_length=60):
    """A TrainStream over made-up sample refs ({task: source image of each sample}), no shards: enough
    for the epoch plan and the prompt index."""
    stream = TrainStream.__new__(TrainStream)
    stream.root, stream.seed, stream.epoch_length = Path("fake"), seed, epoch_length
    stream.refs = {task: [SampleRef(0, f"{task}/train/{i:06d}", (0, 0), (0, 0), str(image))
                          for i, image in enumerate(images)] for task, images in images_per_task.items()}
    stream.tasks = list(stream.refs)
    stream.weights = {t: 1 / len(stream.tasks) for t in stream.tasks}
    stream._groups = {t: stream._source_groups(t) for t in stream.tasks}
    return stream


def _old_prompt_rule(images, query, rng):
    # The rule as first written (Python loop over the query's image group): the reference the
    # committed training run was planned with.
    n = len(images)
    group = [pos for pos, image in enumerate(images) if image == images[query]]
    if len(group) == n:
        pick = int(rng.integers(0, n - 1))
        return pick + (pick >= query)
    pick = int(rng.integers(0, n - len(group)))
    for member in group:
        if member <= pick:
            pick += 1
    return pick


_FAKE_IMAGES = {"a": [4, 5, 0, 5, 3, 3, 4, 2, 6, 0, 1, 2, 3, 2, 0, 0, 0, 0, 1, 6,
                      1, 4, 5, 1, 1, 3, 1, 6, 1, 6, 5, 5, 0, 2, 4, 3, 4, 4, 4, 0],
                "b": [0] * 5, "c": [1] + [2] * 9}


def test_prompts_are_the_ones_the_committed_run_was_planned_with():
    # Recorded with the first prompt index (one group array per sample): the plan must not move.
    plan = _fake_stream(_FAKE_IMAGES, seed=11, epoch_length=60).epoch_plan(3)
    assert plan[:, 2].tolist() == [
        1, 30, 35, 2, 0, 2, 0, 0, 17, 0, 0, 2, 0, 22, 0, 14, 8, 1, 1, 4, 4, 0, 1, 4, 0, 0, 30, 0, 9, 16,
        0, 10, 0, 1, 3, 0, 0, 0, 0, 1, 0, 0, 0, 30, 1, 0, 0, 0, 0, 1, 1, 4, 0, 38, 30, 1, 1, 38, 34, 6]
    rng = np.random.default_rng(0)
    tasks = {"many": rng.integers(0, 9, 200).tolist(), "few": rng.integers(0, 2, 30).tolist(),
             "one": [7] * 12, "lone": [0] + [1] * 20 + [2]}
    stream = _fake_stream(tasks)
    for task, images in tasks.items():
        new, old = np.random.default_rng([5, len(images)]), np.random.default_rng([5, len(images)])
        for draw in range(2000):
            query = draw % len(images)
            assert stream._prompt_for(task, query, new) == _old_prompt_rule(images, query, old), (task, draw)
        assert new.bit_generator.state == old.bit_generator.state  # the same draws, so the rest of the plan too


def test_prompt_index_grows_with_the_samples_not_their_square():
    images = np.random.default_rng(2).integers(0, 50, 20_000).tolist()
    stream = _fake_stream({"t": images})
    assert len(pickle.dumps(stream._groups)) < 300_000  # 64 MB as one group array per sample


def test_worker_without_entries_in_an_endless_stream_is_refused(shards):
    # Refused before the workers start (checked first: the old code hung in the part below).
    with pytest.raises(ValueError, match=r"gets 2 entries per epoch \(epoch_length 3 over 2 rank\(s\)\) but the "
                                         r"loader has 4 workers.*at most 2 workers or a larger epoch_length"):
        make_loader(shards, batch_size=1, size=16, workers=4, world_size=2, epoch_length=3)
    stream = TrainStream(shards, 16, seed=0, epoch_length=1)
    worker = mock.Mock(id=1, num_workers=2)
    with mock.patch("model.data.get_worker_info", return_value=worker), \
            pytest.raises(ValueError, match="gets 1 entries per epoch .* has 2 workers"):
        next(iter(stream))  # planned epoch after epoch without yielding: hung
    loader = make_loader(shards, batch_size=1, size=16, workers=2, epochs=1, epoch_length=1)
    assert sum(len(b["key"]) for b in loader) == 1  # a finite stream ends: an idle worker is harmless


@pytest.mark.parametrize("change,size,message", [
    (lambda name, img: img[..., 0], 16, r"input.png has shape \(24, 24\), not height x width x 3"),
    (lambda name, img: img[:16, :16], 24, r"the images are 16x16 px, smaller than the crop size 24"),
    (lambda name, img: img[:16, :20] if name == "target.png" else img, 16,
     r"input.png is 24x24 px but target.png is 20x16 px"),
], ids=["greyscale", "smaller_than_crop", "sizes_differ"])
def test_misshapen_images_are_named_with_their_shard_and_sample(shards, change, size, message):
    from taskgen.shards import decode_member_png

    def decode(path, key, name, data):
        return change(name, decode_member_png(path, key, name, data))

    stream = TrainStream(shards, size, task_weights={"_loader_marked": 1}, epochs=1, epoch_length=2)
    ref = stream.refs["_loader_marked"][0]
    with mock.patch("model.data.decode_member_png", decode), \
            pytest.raises(ShardError, match=re.escape(f"{stream.shard_paths[ref.shard]}: sample {ref.key}: ")
                          + message):
        stream._read_pair(ref)
