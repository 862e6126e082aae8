import cv2
import numpy as np
import pytest

from taskgen.paired import LAYOUTS, PairedLayoutError, build_paired_source, open_layout, paired_folder
from taskgen.registry import TaskSpec
from taskgen.sample import TaskFailure, make_sample
from taskgen.sources import PhotoSource


def _img(seed, h=80, w=96, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    hi = 65536 if dtype == np.uint16 else 256
    return rng.integers(0, hi, (h, w, 3), dtype=np.int64).astype(dtype)


def _save(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def test_lol_layout_pairs_by_name_and_crops_aligned(tmp_path):
    for i in range(3):
        low = _img(i)
        _save(tmp_path / "low" / f"{i}.png", low)
        _save(tmp_path / "high" / f"{i}.png", 255 - low)  # target = a known function of input
    src = open_layout("lol", tmp_path)
    assert len(src.pairs) == 3
    pair = src.sample(1, 64, np.random.default_rng(0))
    assert pair.input.shape == (64, 64, 3)
    assert (pair.target.astype(int) + pair.input == 255).all(), "crops of both sides must align"
    assert pair.source_id.startswith("lol:1.png@")


def test_missing_partners_size_mismatch_and_bad_files_are_counted(tmp_path):
    _save(tmp_path / "input" / "a.png", _img(0))
    _save(tmp_path / "target" / "a.png", _img(1))
    _save(tmp_path / "input" / "lonely.png", _img(2))          # no target
    _save(tmp_path / "target" / "orphan.png", _img(3))          # no input
    _save(tmp_path / "input" / "big.png", _img(4, 90, 90))
    _save(tmp_path / "target" / "big.png", _img(5, 80, 80))     # size mismatch
    (tmp_path / "input" / "broken.png").write_bytes(b"")
    _save(tmp_path / "target" / "broken.png", _img(6))
    src = paired_folder(tmp_path / "input", tmp_path / "target")
    report = src.scan(64)
    assert report["pairs"] == 3 and report["usable"] == 1
    sk = report["skipped"]
    assert sk["no target partner"] == 1 and sk["no input partner"] == 1 and sk["zero-byte file"] == 1
    assert any(k.startswith("size mismatch") for k in sk)
    for i in range(4):  # every sample falls back to the one usable pair
        assert src.sample(i, 64, np.random.default_rng(i)).source_id.startswith("paired:a.png")


def test_nothing_usable_is_a_clear_error(tmp_path):
    _save(tmp_path / "input" / "a.png", _img(0))
    _save(tmp_path / "target" / "b.png", _img(1))
    with pytest.raises(PairedLayoutError, match="no pairs"):
        paired_folder(tmp_path / "input", tmp_path / "target")


def test_wrong_layout_names_the_expected_folders(tmp_path):
    (tmp_path / "inputs").mkdir()
    with pytest.raises(PairedLayoutError, match=r"expected one of low.*found: inputs"):
        open_layout("lol", tmp_path)
    with pytest.raises(PairedLayoutError, match="unknown paired dataset"):
        build_paired_source(f"imagenet:{tmp_path}")


def test_reside_many_hazy_per_clear(tmp_path):
    clear = _img(0)
    _save(tmp_path / "clear" / "1.png", clear)
    for beta in ("0.8", "1.2"):
        _save(tmp_path / "hazy" / f"1_0.9_{beta}.png", _img(1))
    src = open_layout("reside", tmp_path)
    assert len(src.pairs) == 2 and all(t.name == "1.png" for _, t in src.pairs)


def test_rain100_prefixes_are_matched(tmp_path):
    _save(tmp_path / "rainy" / "rain-001.png", _img(0))
    _save(tmp_path / "norain" / "norain-001.png", _img(1))
    assert len(open_layout("rain", tmp_path).pairs) == 1


def test_hdr_side_stays_16bit_and_8bit_hdr_is_skipped(tmp_path):
    _save(tmp_path / "sdr" / "x.png", _img(0))
    _save(tmp_path / "hdr" / "x.png", _img(1, dtype=np.uint16))
    _save(tmp_path / "sdr" / "y.png", _img(2))
    _save(tmp_path / "hdr" / "y.png", _img(3))  # 8-bit where HDR is required
    src = build_paired_source(f"hdrtv:{tmp_path}", hdr="target")
    pair = src.sample(0, 64, np.random.default_rng(0))
    assert pair.input.dtype == np.uint8 and pair.target.dtype == np.uint16
    assert src.scan(64)["usable"] == 1
    assert any("16-bit" in k for k in src.skipped)


def test_every_layout_names_registered_tasks():
    import taskgen

    names = set(taskgen.task_names())
    for layout in LAYOUTS.values():
        assert set(layout.tasks) <= names, layout.name


def test_make_sample_uses_the_paired_source_and_records_it(tmp_path):
    for i in range(2):
        _save(tmp_path / "input" / f"{i}.png", _img(i))
        _save(tmp_path / "target" / f"{i}.png", _img(10 + i))
    spec = TaskSpec(name="jpeg", category="restoration", metric="psnr", target_domain="x", description="x",
                    fn=lambda image, rng: (_ for _ in ()).throw(AssertionError("recipe must not run")))
    paired = paired_folder(tmp_path / "input", tmp_path / "target")
    s = make_sample(spec, "test", 0, seed=0, size=64, source=PhotoSource(), paired=paired)
    assert s.params == {"paired_dataset": "paired"} and s.source_id.startswith("paired:0.png")
    again = make_sample(spec, "test", 0, seed=0, size=64, source=PhotoSource(), paired=paired)
    assert again.input.tobytes() == s.input.tobytes()

    hdr_spec = TaskSpec(name="sdr_to_hdr", category="enhancement", metric="psnr", target_domain="x",
                        description="x", fn=spec.fn, hdr="target")
    with pytest.raises(TaskFailure, match="task=sdr_to_hdr split=test index=0"):
        make_sample(hdr_spec, "test", 0, seed=0, size=64, source=PhotoSource(), paired=paired)


def test_reside_source_ids_name_the_clear_scene_so_hazy_siblings_group_together(tmp_path):
    from taskgen.shards import source_image_id
    from taskgen.testset import prompt_positions

    for scene in (1, 2):
        clear = _img(scene)
        _save(tmp_path / "clear" / f"{scene}.png", clear)
        for j, beta in enumerate(("0.8", "1.0", "1.2")):
            _save(tmp_path / "hazy" / f"{scene}_0.9_{beta}.png", _img(10 * scene + j))
    src = open_layout("reside", tmp_path)
    assert len(src.pairs) == 6
    ids = [src.sample(i, 64, np.random.default_rng(i)).source_id for i in range(6)]
    for i, sid in enumerate(ids):  # pairs are sorted by input name: three hazy of scene 1, then of 2
        assert sid.startswith(f"reside:{i // 3 + 1}.png@y="), sid
        assert ",x=" in sid.partition("@")[2]
    images = [source_image_id(sid, f"haze/test/{i:06d}") for i, sid in enumerate(ids)]
    assert images == ["reside:1.png"] * 3 + ["reside:2.png"] * 3
    for query in range(6):  # the test prompt rule never shows a query its own clear scene
        for pos, rule in prompt_positions(images, query, 2):
            assert images[pos] != images[query] and rule.startswith("next-other-source"), (query, pos)


def test_one_to_one_source_ids_name_the_target_and_stay_distinct(tmp_path):
    from taskgen.shards import source_image_id

    for i in range(3):
        _save(tmp_path / "lol" / "low" / f"{i}.png", _img(i))
        _save(tmp_path / "lol" / "high" / f"{i}.png", _img(10 + i))
        _save(tmp_path / "rain" / "rainy" / f"rain-00{i}.png", _img(20 + i))
        _save(tmp_path / "rain" / "norain" / f"norain-00{i}.png", _img(30 + i))
    lol = open_layout("lol", tmp_path / "lol")
    lol_ids = [source_image_id(lol.sample(i, 64, np.random.default_rng(i)).source_id, str(i)) for i in range(3)]
    assert lol_ids == ["lol:0.png", "lol:1.png", "lol:2.png"]
    rain = open_layout("rain", tmp_path / "rain")
    rain_ids = [rain.sample(i, 64, np.random.default_rng(i)).source_id for i in range(3)]
    assert [sid.partition("@")[0] for sid in rain_ids] == [f"rain:norain-00{i}.png" for i in range(3)]
