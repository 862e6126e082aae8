"""Test-split reader: fixed order, decoded pairs equal to the generator, prompts by a recorded rule."""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile

import numpy as np
import pytest

from pipelines.synth import configure, read_params, run_synth
from taskgen.imageio import decode_png, encode_png
from taskgen.registry import register_task, registered
from taskgen.sample import make_sample
from taskgen.shards import ManifestError, ShardError, file_sha256, iter_members
from taskgen.sources import build_source
from taskgen.testset import TestSplit, prompt_positions


def _blur(image, rng):
    k = int(rng.integers(1, 4)) * 2 + 1
    kernel = np.ones(k) / k
    blurred = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, image.astype(np.float32))
    return blurred.clip(0, 255).astype(np.uint8), image.copy(), {"k": k}


def _heldout(image, rng):
    return image.copy(), 255 - image, {}


@pytest.fixture(scope="module")
def test_tasks():
    """Test-only tasks, registered for this module only (a held-out one would show in other
    modules' listings of the unseen split)."""
    register_task(name="_testset_blur", category="restoration", metric="psnr", target_domain="clean image",
                  description="test-only: box blur of a drawn size")(_blur)
    register_task(name="_testset_heldout", category="stylization", metric="psnr", target_domain="negative",
                  description="test-only held-out task", in_training_mix=False)(_heldout)
    yield
    for name in ("_testset_blur", "_testset_heldout"):
        registered().pop(name, None)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, test_tasks):
    out = tmp_path_factory.mktemp("testset") / "shards"
    params = read_params(None)
    params.update({"tasks": "_testset_heldout,_testset_blur", "size": 32, "samples_per_shard": 4,
                   "summary": None, "per_task": {}, "counts": {"train": 2, "test": 9, "unseen": 5}})
    run_synth(configure(params, {"out": str(out), "workers": 1}), progress=False)
    return out


def test_pairs_in_index_order_equal_to_regenerated_samples(shards, test_tasks):
    split = TestSplit(shards)
    assert split.tasks == ["_testset_blur"]  # the held-out task has no test split
    pairs = split.pairs("_testset_blur")
    assert [p.key for p in pairs] == [f"_testset_blur/test/{i:06d}" for i in range(9)]
    import taskgen

    spec, source = taskgen.get_task("_testset_blur"), build_source("photos")
    for p in (pairs[0], pairs[5]):
        fresh = make_sample(spec, "test", p.index, seed=0, size=32, source=source)
        np.testing.assert_array_equal(p.input, fresh.input)
        np.testing.assert_array_equal(p.target, fresh.target)
        assert p.meta["params"] == fresh.params and p.meta["category"] == "restoration"


def test_queries_never_prompt_with_themselves_and_prefer_other_photos(shards):
    split = TestSplit(shards)
    queries = list(split.queries("_testset_blur", n_prompts=3))
    assert len(queries) == 9 * 3
    for q in queries:
        assert q.prompt.key != q.query.key and q.prompt.task == q.query.task
        assert q.prompt.source_image != q.query.source_image
        assert q.prompt_rule.startswith("next-other-source:k=")
    first = [q.prompt.index for q in queries[:3]]
    assert first == [1, 2, 3] and [q.prompt_rule for q in queries[:3]] == [
        "next-other-source:k=1", "next-other-source:k=2", "next-other-source:k=3"]
    # Fixed rule: the same shards give the same pairs.
    again = [(q.query.key, q.prompt.key) for q in TestSplit(shards).queries("_testset_blur", n_prompts=3)]
    assert again == [(q.query.key, q.prompt.key) for q in queries]
    assert len(list(split.queries("_testset_blur", limit=4))) == 4


def test_prompt_rule_falls_back_to_other_crops_only_when_needed():
    images = ["a", "a", "b", "a"]
    assert prompt_positions(images, 0, 1) == [(2, "next-other-source:k=1")]
    assert prompt_positions(images, 0, 3) == [(2, "next-other-source:k=1"), (1, "next-same-source:k=1"),
                                              (3, "next-same-source:k=2")]
    assert prompt_positions(images, 3, 2) == [(2, "next-other-source:k=1"), (0, "next-same-source:k=1")]
    with pytest.raises(ValueError, match="at least 5 samples"):
        prompt_positions(images, 0, 4)


def test_unseen_split_and_provenance(shards):
    unseen = TestSplit(shards, split="unseen")
    assert unseen.tasks == ["_testset_heldout"]
    assert [p.key for p in unseen.pairs("_testset_heldout")][-1] == "_testset_heldout/unseen/000004"
    assert unseen.manifest_sha256 == hashlib.sha256((shards / "manifest.json").read_bytes()).hexdigest()
    assert unseen.task_info("_testset_heldout")["in_training_mix"] is False


def test_missing_manifest_and_unknown_task_are_clear(tmp_path, shards):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        TestSplit(tmp_path)
    with pytest.raises(KeyError, match="no test samples"):
        TestSplit(shards).pairs("_testset_heldout")


def _copy(shards, tmp_path):
    return shutil.copytree(shards, tmp_path / "shards")


def _manifest_entry(root, rel):
    manifest = json.loads((root / "manifest.json").read_text())
    return manifest, next(e for e in manifest["shards"] if e["path"] == rel)


def test_altered_shard_is_refused_naming_it(shards, tmp_path):
    root = _copy(shards, tmp_path)
    path = root / "test/_testset_blur-00000.tar"
    manifest, _ = _manifest_entry(root, "test/_testset_blur-00000.tar")
    members = list(iter_members(path))
    # Repacked with one target pixel changed: a valid tar of valid PNGs; only the sha256 tells.
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            if name == "_testset_blur/test/000001.target.png":
                image = decode_png(data).copy()
                image[0, 0, 0] ^= 1
                data = encode_png(image, manifest["params"]["png_compression"])
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    split = TestSplit(root)
    with pytest.raises(ShardError, match=re.escape(f"{path}: sha256 differs from the manifest")):
        split.pairs("_testset_blur")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ShardError, match=re.escape(f"{path}: 1000 bytes, the manifest says")):
        TestSplit(root).pairs("_testset_blur")


def test_swapped_shard_of_another_task_is_refused_naming_it(shards, tmp_path):
    root = _copy(shards, tmp_path)
    path = root / "test/_testset_blur-00000.tar"
    shutil.copyfile(root / "unseen/_testset_heldout-00000.tar", path)  # 4 samples as well
    with pytest.raises(ShardError, match=re.escape(str(path))):
        TestSplit(root).pairs("_testset_blur")
    # A manifest that lists the foreign shard with its own size and sha256: the samples' keys tell.
    manifest, entry = _manifest_entry(root, "test/_testset_blur-00000.tar")
    entry.update(bytes=path.stat().st_size, sha256=file_sha256(path))
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=re.escape(f"{path}: sample _testset_heldout/unseen/000000 (json: task "
                                                   f"'_testset_heldout', split 'unseen') is not a _testset_blur/test")):
        TestSplit(root).pairs("_testset_blur")


def test_malformed_manifest_is_a_manifest_error_naming_the_file(shards, tmp_path):
    root = _copy(shards, tmp_path)
    manifest, entry = _manifest_entry(root, "test/_testset_blur-00000.tar")
    del entry["path"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=re.escape(f"{root / 'manifest.json'}: shards[") + r".*has no 'path'"):
        TestSplit(root)
