"""Shard writing and reading: byte determinism, WebDataset grouping, JSON provenance, verification."""
from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest

from taskgen.registry import register_task, registered
from taskgen.sample import GENERATOR_VERSION, TaskFailure, make_sample
from taskgen.shards import (ManifestError, ShardError, build_manifest, index_shard, iter_members, iter_shard,
                            load_manifest, merge_manifests, plan_shards, source_image_id, split_member,
                            split_ranges, verify, write_manifest, write_shard)
from taskgen.sources import build_source

SOURCES = {"train": "deadleaves", "test": "photos", "unseen": "photos"}


def _noise(image, rng):
    sigma = float(rng.uniform(5, 20))
    noisy = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
    return noisy, image.copy(), {"sigma": sigma}


def _hdr(image, rng):
    gain = float(rng.uniform(1.0, 2.0))
    target = np.clip(image.astype(np.float64) * 257 * gain, 0, 65535).astype(np.uint16)
    return image.copy(), target, {"gain": gain, "hdr_encoding": "linear"}


def _bad_params(image, rng):
    return image.copy(), image.copy(), {"level": np.float32(rng.uniform())}


@pytest.fixture(scope="module", autouse=True)
def _test_tasks():
    """Test-only tasks, registered for this module only."""
    tasks = {
        "_shards_noise": (_noise, dict(category="restoration", target_domain="clean image",
                                       description="test-only: additive Gaussian noise with a drawn sigma")),
        "_shards_hdr": (_hdr, dict(category="enhancement", target_domain="HDR image", hdr="target",
                                   description="test-only: 8-bit input, 16-bit target")),
        "_shards_badparams": (_bad_params, dict(category="restoration", target_domain="clean image",
                                                description="test-only: a numpy scalar in params (breaks the contract)")),
    }
    for name, (fn, meta) in tasks.items():
        register_task(name=name, metric="psnr", **meta)(fn)
    yield
    for name in tasks:
        registered().pop(name, None)


def _spec(name):
    import taskgen

    return taskgen.get_task(name)


def _jobs(tasks, counts, size=32, samples_per_shard=4, seed=0):
    return plan_shards([_spec(t) for t in tasks], counts, seed=seed, size=size, sources=SOURCES,
                       samples_per_shard=samples_per_shard)


def _write_all(root, jobs, tasks, counts):
    entries = {job.path: write_shard(job, root, journal=False).entry for job in jobs}
    manifest = build_manifest(jobs, entries, [_spec(t) for t in tasks], counts=counts,
                              params={"seed": 0, "size": 32})
    write_manifest(root, manifest)
    return manifest


def test_split_ranges_cover_every_index_once():
    assert split_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert split_ranges(4, 4) == [(0, 4)]
    assert split_ranges(0, 4) == []
    with pytest.raises(ValueError):
        split_ranges(3, 0)


def test_plan_orders_tasks_splits_parts_and_skips_empty():
    counts = {"_shards_noise": {"test": 3, "train": 6}, "_shards_hdr": {"train": 0, "test": 2}}
    jobs = _jobs(["_shards_noise", "_shards_hdr"], counts)
    assert [j.path for j in jobs] == ["train/_shards_noise-00000.tar", "train/_shards_noise-00001.tar",
                                      "test/_shards_noise-00000.tar", "test/_shards_hdr-00000.tar"]
    assert [(j.start, j.stop) for j in jobs[:2]] == [(0, 4), (4, 6)]
    # The recipe changes with anything that changes bytes, and only then.
    again = _jobs(["_shards_noise", "_shards_hdr"], counts)
    assert [j.recipe for j in jobs] == [j.recipe for j in again]
    assert jobs[0].recipe != _jobs(["_shards_noise"], counts, seed=1)[0].recipe


def test_shard_bytes_are_deterministic_and_headers_fixed(tmp_path):
    counts = {"_shards_noise": {"train": 5}}
    job = _jobs(["_shards_noise"], counts)[0]
    a = write_shard(job, tmp_path / "a", journal=False)
    b = write_shard(job, tmp_path / "b", journal=False)
    data_a = (tmp_path / "a" / job.path).read_bytes()
    assert data_a == (tmp_path / "b" / job.path).read_bytes()
    assert a.entry == b.entry and a.entry["bytes"] == len(data_a)
    assert oct(os.stat(tmp_path / "a" / job.path).st_mode & 0o777) == oct(0o644)
    with tarfile.open(fileobj=io.BytesIO(data_a)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == ["_shards_noise/train/000000.input.png",
                                             "_shards_noise/train/000000.json",
                                             "_shards_noise/train/000000.target.png"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
    assert len(members) == 3 * 4  # shard 0 holds samples 0..3


def test_webdataset_reads_one_sample_per_key(tmp_path):
    wds = pytest.importorskip("webdataset")
    job = _jobs(["_shards_noise"], {"_shards_noise": {"test": 3}})[0]
    write_shard(job, tmp_path, journal=False)
    samples = list(wds.WebDataset(str(tmp_path / job.path), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"_shards_noise/test/{i:06d}" for i in range(3)]
    for s in samples:
        assert {k for k in s if not k.startswith("__")} == {"input.png", "json", "target.png"}
        assert json.loads(s["json"])["key"] == s["__key__"]


def test_stored_pairs_equal_regenerated_samples_and_json_records_provenance(tmp_path):
    job = _jobs(["_shards_noise"], {"_shards_noise": {"test": 3}}, seed=5)[0]
    write_shard(job, tmp_path, journal=False)
    source = build_source("photos")
    for stored in iter_shard(tmp_path / job.path):
        meta = stored.meta
        fresh = make_sample(_spec("_shards_noise"), "test", meta["index"], seed=5, size=32, source=source)
        np.testing.assert_array_equal(stored.input, fresh.input)
        np.testing.assert_array_equal(stored.target, fresh.target)
        assert meta["params"] == fresh.params and meta["source_id"] == fresh.source_id
        assert (meta["task"], meta["category"], meta["split"], meta["seed"]) == \
               ("_shards_noise", "restoration", "test", 5)
        assert meta["generator_version"] == GENERATOR_VERSION
        assert meta["images"]["input"]["dtype"] == "uint8"


def test_hdr_side_is_stored_as_16_bit_with_its_encoding(tmp_path):
    job = _jobs(["_shards_hdr"], {"_shards_hdr": {"train": 2}})[0]
    write_shard(job, tmp_path, journal=False)
    stored = next(iter_shard(tmp_path / job.path))
    fresh = make_sample(_spec("_shards_hdr"), "train", 0, seed=0, size=32, source=build_source("deadleaves"))
    assert stored.target.dtype == np.uint16 and stored.input.dtype == np.uint8
    np.testing.assert_array_equal(stored.target, fresh.target)
    assert stored.meta["images"]["target"] == {"dtype": "uint16", "scale": 65535, "hdr": True,
                                               "encoding": "linear"}
    assert stored.meta["images"]["input"]["encoding"] == "sRGB"


def test_params_that_are_not_json_fail_naming_the_sample(tmp_path):
    job = _jobs(["_shards_badparams"], {"_shards_badparams": {"train": 2}}, seed=3)[0]
    with pytest.raises(TaskFailure, match=r"task=_shards_badparams split=train index=0 seed=3"):
        write_shard(job, tmp_path, journal=False)
    assert not list(tmp_path.rglob("*.tar")) and not list(tmp_path.rglob("*.tmp"))


def test_index_offsets_address_the_member_bytes(tmp_path):
    job = _jobs(["_shards_noise"], {"_shards_noise": {"train": 3}})[0]
    write_shard(job, tmp_path, journal=False)
    path = tmp_path / job.path
    index = index_shard(path)
    blob = path.read_bytes()
    for name, data in iter_members(path):
        key, ext = split_member(name)
        span = index[key][ext]
        assert blob[span.offset:span.offset + span.size] == data


def test_verify_names_corrupt_missing_and_extra_shards(tmp_path):
    tasks = ["_shards_noise"]
    counts = {"_shards_noise": {"train": 8, "test": 4}}
    jobs = _jobs(tasks, counts)
    _write_all(tmp_path, jobs, tasks, counts)
    assert verify(tmp_path).passed and len(verify(tmp_path).ok) == 3
    corrupt = tmp_path / "train/_shards_noise-00000.tar"
    data = bytearray(corrupt.read_bytes())
    data[700] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    (tmp_path / "train/_shards_noise-00001.tar").unlink()
    (tmp_path / "test/stray-00000.tar").write_bytes(b"x")
    report = verify(tmp_path)
    assert report.corrupt == [("train/_shards_noise-00000.tar", "sha256 differs from the manifest")]
    assert report.missing == ["train/_shards_noise-00001.tar"]
    assert report.extra == ["test/stray-00000.tar"]
    assert report.ok == ["test/_shards_noise-00000.tar"] and not report.passed


def test_manifest_errors_name_the_directory(tmp_path):
    with pytest.raises(ManifestError, match=str(tmp_path)):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(tmp_path)


def _small_root(root):
    tasks, counts = ["_shards_noise"], {"_shards_noise": {"train": 2, "test": 2}}
    _write_all(root, _jobs(tasks, counts), tasks, counts)
    return json.loads((root / "manifest.json").read_text())


def _edited(change):
    """A manifest edit: ``change`` mutates the manifest in place; the edit returns it."""
    return lambda m: (change(m), m)[1]


def _del(key):
    return _edited(lambda m: m.pop(key))


def _del_shard_key(key):
    return _edited(lambda m: [entry.pop(key) for entry in m["shards"]])


@pytest.mark.parametrize("edit,expected", [
    (lambda m: [m], r"a JSON list, not an object"),
    (_edited(lambda m: m.update(shards=None)), r"has shards=null, not a JSON list"),
    (_del("shards"), r"has no 'shards'"),
    (_del("tasks"), r"has no 'tasks'"),
    (_del("params"), r"has no 'params'"),
    (_del_shard_key("path"), r"shards\[0\] has no 'path'"),
    (_del_shard_key("sha256"), r"shards\[0\] \(train/_shards_noise-00000.tar\) has no 'sha256'"),
    (_del_shard_key("task"), r"shards\[0\] .* has no 'task'"),
    (_del_shard_key("split"), r"shards\[0\] .* has no 'split'"),
    (_del_shard_key("samples"), r"shards\[0\] .* has no 'samples'"),
    (_edited(lambda m: m["shards"][1].update(bytes="12")), r"shards\[1\] .* has bytes=\"12\", not an integer >= 0"),
    (_edited(lambda m: m["shards"][0].update(task="nope")), r"belongs to task 'nope', which the manifest's tasks do "
                                                             r"not list"),
    (_edited(lambda m: m["tasks"]["_shards_noise"].pop("counts")), r"task '_shards_noise' has no 'counts'"),
    (_edited(lambda m: m["shards"][0].update(path="../../etc/passwd")), r"path outside the shards directory"),
], ids=["list", "shards_null", "no_shards", "no_tasks", "no_params", "shard_no_path", "shard_no_sha256",
        "shard_no_task", "shard_no_split", "shard_no_samples", "shard_bytes_str", "unknown_task",
        "task_no_counts", "path_escape"])
def test_malformed_manifest_is_refused_naming_the_file_and_key(tmp_path, edit, expected):
    (tmp_path / "manifest.json").write_text(json.dumps(edit(_small_root(tmp_path))))
    with pytest.raises(ManifestError, match=expected) as err:
        load_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in str(err.value)
    with pytest.raises(ManifestError, match=expected):  # verify reports it (CLI: error, exit 1), never "ok"
        verify(tmp_path)


def test_verify_compares_sample_counts_with_the_manifest(tmp_path):
    manifest = _small_root(tmp_path)
    manifest["shards"][0]["samples"] = 999
    write_manifest(tmp_path, manifest)
    report = verify(tmp_path)
    assert report.corrupt == [("train/_shards_noise-00000.tar", "2 samples, manifest says 999")]
    assert report.ok == ["test/_shards_noise-00000.tar"] and not report.passed


def _corrupt_copies(tmp_path):
    """A valid shard and damaged copies of it: {name: (path, message the readers must give)}."""
    job = _jobs(["_shards_noise"], {"_shards_noise": {"test": 2}})[0]
    write_shard(job, tmp_path / "good", journal=False)
    good = tmp_path / "good" / job.path
    data, spans = good.read_bytes(), index_shard(good)["_shards_noise/test/000001"]

    def flipped(pos):
        out = bytearray(data)
        out[pos] ^= 0xFF
        return bytes(out)

    middle = spans["target.png"].offset + spans["target.png"].size // 2
    cases = {
        "trunc": (data[:len(data) // 2 + 100], r"not a readable shard \(ReadError: unexpected end of data\)"),
        "zero": (b"", r"not a readable shard \(ReadError: empty file\)"),
        "garbage": (bytes(range(256)) * 8, r"not a readable shard \(ReadError: invalid header\)"),
        "flip_hdr": (flipped(100), r"not a readable shard \(ReadError: bad checksum\)"),
        "flip_json": (flipped(spans["json"].offset),
                      r"sample _shards_noise/test/000001: the json member is not valid JSON"),
        "flip_pix": (flipped(middle), r"sample _shards_noise/test/000001: target.png is not a decodable PNG"),
    }
    out = {}
    for name, (blob, message) in cases.items():
        path = tmp_path / f"{name}.tar"
        path.write_bytes(blob)
        out[name] = (path, message)
    return out


def test_reader_errors_name_the_shard_and_the_sample(tmp_path):
    for name, (path, message) in _corrupt_copies(tmp_path).items():
        with pytest.raises(ShardError, match=message) as err:
            list(iter_shard(path))
        assert str(err.value).startswith(f"{path}: "), name
        if name not in ("flip_json", "flip_pix"):  # member data is not read by the index
            with pytest.raises(ShardError, match=message) as err:
                index_shard(path)
            assert str(err.value).startswith(f"{path}: "), name


def test_merge_prefixes_paths_and_refuses_different_params(tmp_path):
    counts = {"_shards_noise": {"train": 2}, "_shards_hdr": {"train": 2}}
    for task in counts:
        jobs = _jobs([task], counts)
        _write_all(tmp_path / "tasks" / task, jobs, [task], counts)
    merged = merge_manifests(tmp_path, {t: f"tasks/{t}" for t in counts})
    assert [e["path"] for e in merged["shards"]] == ["tasks/_shards_noise/train/_shards_noise-00000.tar",
                                                     "tasks/_shards_hdr/train/_shards_hdr-00000.tar"]
    write_manifest(tmp_path, merged)
    assert verify(tmp_path).passed
    other = load_manifest(tmp_path / "tasks/_shards_hdr")
    other["params"]["size"] = 64
    write_manifest(tmp_path / "tasks/_shards_hdr", other)
    with pytest.raises(ManifestError, match="params"):
        merge_manifests(tmp_path, {t: f"tasks/{t}" for t in counts})


def test_source_image_id():
    assert source_image_id("photo:astronaut@y=3,x=9", "k") == "photo:astronaut"
    assert source_image_id("folder:a/b.png@y=0,x=0", "k") == "folder:a/b.png"
    # Procedural sources make a fresh image per sample.
    assert source_image_id("deadleaves", "t/train/000001") != source_image_id("deadleaves", "t/train/000002")
