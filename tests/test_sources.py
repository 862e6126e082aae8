import hashlib
import re

import cv2
import numpy as np
import pytest

from taskgen.deadleaves import DeadLeavesConfig
from taskgen.sources import (PHOTO_LOADERS, DeadLeavesSource, FolderSource, InterleavedSource, PhotoSource,
                             SourceError, build_source, depth_proxy, load_photo)


def test_every_packaged_photo_loads_offline_as_rgb():
    for name in PHOTO_LOADERS:
        img = load_photo(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert min(img.shape[:2]) >= 256, name


def test_photo_source_crops_are_deterministic_and_cycle_photos():
    src = PhotoSource()
    a = src.sample(0, 128, np.random.default_rng(1))
    b = src.sample(0, 128, np.random.default_rng(1))
    assert a.image.tobytes() == b.image.tobytes() and a.source_id == b.source_id
    c = src.sample(1, 128, np.random.default_rng(1))
    assert a.source_id.split("@")[0] != c.source_id.split("@")[0]
    assert a.image.shape == (128, 128, 3)


def test_photo_source_upscales_when_the_crop_is_larger_than_the_photo():
    out = PhotoSource(("chelsea",)).sample(0, 400, np.random.default_rng(0))  # chelsea is 300 px tall
    assert out.image.shape == (400, 400, 3)


def test_deadleaves_source_has_depth():
    out = DeadLeavesSource().sample(0, 64, np.random.default_rng(0))
    assert out.depth is not None and out.depth.shape == (64, 64)


def test_deadleaves_tint_casts_each_image_and_leaves_the_default_untouched():
    # tint is drawn after everything else: the same leaves, each image scaled by its own gains
    plain, tinted = build_source("deadleaves"), build_source("deadleaves:tint=0.25")
    assert tinted.name == "deadleaves:tint=0.25" and plain.name == "deadleaves"
    ratios = []
    for seed in range(24):
        a = plain.sample(0, 64, np.random.default_rng(seed))
        b = tinted.sample(0, 64, np.random.default_rng(seed))
        assert np.array_equal(a.depth, b.depth)
        if seed == 0:  # plain dead leaves are the bytes the generator gave before tint existed
            assert hashlib.sha256(a.image.tobytes()).hexdigest() == \
                "ebadaa1179f91167ea45c20c4b165b0a81d60de82073a119193a56ba11e3c54a"
        mean_a, mean_b = a.image.reshape(-1, 3).mean(0), b.image.reshape(-1, 3).mean(0)
        ratios.append(np.log(mean_b / mean_a))
        assert abs(mean_b.mean() - mean_a.mean()) < 0.12 * mean_a.mean()  # brightness kept (up to clipping)
    spread = np.std(np.array(ratios)[:, 0] - np.array(ratios)[:, 1])  # log R/G change across images
    assert 0.15 < spread < 0.7  # sqrt(2) * 0.25 = 0.35 before clipping
    for bad in ("deadleaves:tint=2", "deadleaves:tint=x", "deadleaves:sharpen=1", "deadleaves:tint=0.1,tint=0.2",
                "deadleaves:exposure=-0.1", "deadleaves:tint=0.2,", "deadleaves:levels=0.6", "deadleaves:blur=4",
                "deadleaves:rmin=0.3", "deadleaves:rmin=0"):
        with pytest.raises(SourceError, match=f"{re.escape(bad)}: options are tint=S and exposure=E in \\[0, 1\\], "
                           "levels=L in \\[0, 0.5\\], blur=B"):
            build_source(bad)


TINTED_SEED0_SHA256 = "f7a58b124572eaa8c519ab917931468ae00056a253b35672d4a7a4791d74619a"  # before exposure existed


def test_deadleaves_exposure_spreads_brightness_like_photos_and_keeps_the_tinted_bytes_without_it():
    # exposure is drawn after tint: tint alone gives the bytes it gave before exposure existed
    tinted = build_source("deadleaves:tint=0.25")
    both = build_source("deadleaves:exposure=0.5,tint=0.25")
    assert both.name == "deadleaves:tint=0.25,exposure=0.5"  # canonical order, whatever the spec's
    assert hashlib.sha256(tinted.sample(0, 64, np.random.default_rng(0)).image.tobytes()).hexdigest() == \
        TINTED_SEED0_SHA256
    means_tinted, means_both = [], []
    for seed in range(40):
        a = tinted.sample(0, 64, np.random.default_rng(seed))
        b = both.sample(0, 64, np.random.default_rng(seed))
        assert np.array_equal(a.depth, b.depth)
        # a tone curve is monotonic: a darker pixel in a stays no brighter in b (ties in a, rounded
        # from different values, may go either way, so they are ordered by b)
        before, after = a.image[..., 1].ravel(), b.image[..., 1].ravel()
        assert np.all(np.diff(after[np.lexsort((after, before))].astype(int)) >= 0)
        means_tinted.append(a.image.mean())
        means_both.append(b.image.mean())
    # dead leaves alone sit at mid-grey (5-95 %: about 94-123); photos span dark to bright
    assert np.ptp(means_tinted) < 60
    assert min(means_both) < 70 and max(means_both) > 150


def _clipped_fractions(image) -> tuple[float, float]:
    """Fractions of pixels crushed black (every channel <= 3) and blown white (every channel >= 252)."""
    return float((image.max(axis=2) <= 3).mean()), float((image.min(axis=2) >= 252).mean())


def test_deadleaves_levels_clip_flat_black_and_white_regions_like_photos_and_keep_the_other_bytes():
    # levels is drawn last: a spec without it gives the bytes it gave before levels existed
    tinted = build_source("deadleaves:tint=0.25")
    clipped = build_source("deadleaves:levels=0.3,tint=0.25")
    assert clipped.name == "deadleaves:tint=0.25,levels=0.3"
    assert build_source("deadleaves:tint=0.25,exposure=0.5,levels=0.5").name == \
        "deadleaves:tint=0.25,exposure=0.5,levels=0.5"
    assert hashlib.sha256(tinted.sample(0, 64, np.random.default_rng(0)).image.tobytes()).hexdigest() == \
        TINTED_SEED0_SHA256
    crushed = 0
    for seed in range(60):
        b = clipped.sample(0, 64, np.random.default_rng(seed))
        c = tinted.sample(0, 64, np.random.default_rng(seed))
        assert np.array_equal(c.depth, b.depth)
        # a levels map is monotonic: a darker pixel of the tinted image stays no brighter
        before, after = c.image[..., 1].ravel(), b.image[..., 1].ravel()
        assert np.all(np.diff(after[np.lexsort((after, before))].astype(int)) >= 0)
        assert _clipped_fractions(c.image)[0] < 0.1  # dead leaves alone have no large black regions
        crushed += _clipped_fractions(b.image)[0] > 0.1
    # 6 % of the packaged test photos' 128-px crops are over a tenth crushed black; levels=0.3 about 12 %
    assert 3 <= crushed <= 15
    with pytest.raises(ValueError, match="levels must be in \\[0, 0.5\\], got 0.7"):
        DeadLeavesConfig(levels=0.7)


def _luma_step(image) -> float:
    return float(np.abs(np.diff(image.astype(float).mean(axis=2), axis=1)).mean())


def test_deadleaves_camera_blur_and_rmin_soften_the_leaves_and_keep_the_other_bytes():
    # blur and rmin draw nothing when absent: the tinted spec keeps its bytes; rmin draws nothing at all
    tinted = build_source("deadleaves:tint=0.25")
    assert hashlib.sha256(tinted.sample(0, 64, np.random.default_rng(0)).image.tobytes()).hexdigest() == \
        TINTED_SEED0_SHA256
    assert build_source("deadleaves:tint=0.25,blur=0").sample(0, 64, np.random.default_rng(0)).image.tobytes() == \
        tinted.sample(0, 64, np.random.default_rng(0)).image.tobytes()
    soft = build_source("deadleaves:rmin=0.05,blur=1,tint=0.25")
    assert soft.name == "deadleaves:tint=0.25,blur=1,rmin=0.05" and soft.config.camera_blur == 1.0
    blurred_only, fewer_only = build_source("deadleaves:tint=0.25,blur=1"), build_source("deadleaves:tint=0.25,rmin=0.05")
    steps = {name: [] for name in ("tinted", "blurred", "fewer", "both")}
    for seed in range(12):
        images = {name: src.sample(0, 64, np.random.default_rng(seed)).image for name, src in
                  (("tinted", tinted), ("blurred", blurred_only), ("fewer", fewer_only), ("both", soft))}
        for name, image in images.items():
            steps[name].append(_luma_step(image))
        # the lens blur acts on the same leaves: its depth map is the tinted image's
        assert np.array_equal(blurred_only.sample(0, 64, np.random.default_rng(seed)).depth,
                              tinted.sample(0, 64, np.random.default_rng(seed)).depth)
    mean = {name: np.mean(values) for name, values in steps.items()}
    # each option softens the image on its own (fewer small leaves, band-limited edges), both together more
    assert mean["both"] < min(mean["blurred"], mean["fewer"]) < max(mean["blurred"], mean["fewer"]) < 0.85 * mean["tinted"]
    with pytest.raises(ValueError, match="camera_blur must be 0 or in \\[0.3, 3\\], got 0.1"):
        DeadLeavesConfig(camera_blur=0.1)
    with pytest.raises(SourceError, match="deadleaves:blur=0.1: DeadLeavesConfig.camera_blur must be 0 or in"):
        build_source("deadleaves:blur=0.1")


def _high_pass_std(image) -> float:
    x = image.astype(np.float32)
    return float((x - cv2.GaussianBlur(x, (0, 0), 1.0)).std())


def test_deadleaves_texture_options_add_fine_detail_on_the_same_leaves_and_keep_the_default_bytes():
    # the default (texture=0.25, texamp=0.08) spelled out draws exactly what the plain spec draws
    plain = build_source("deadleaves:tint=0.25")
    spelled = build_source("deadleaves:texamp=0.08,texture=0.25,tint=0.25")
    assert spelled.name == "deadleaves:tint=0.25,texture=0.25,texamp=0.08"
    assert hashlib.sha256(spelled.sample(0, 64, np.random.default_rng(0)).image.tobytes()).hexdigest() == \
        TINTED_SEED0_SHA256
    # on the softened leaves the profiles train on, where edges no longer dominate the fine detail
    soft = build_source("deadleaves:tint=0.25,blur=1,rmin=0.05")
    rich = build_source("deadleaves:tint=0.25,blur=1,rmin=0.05,texture=0.6,texamp=0.2")
    untextured = build_source("deadleaves:tint=0.25,blur=1,rmin=0.05,texture=0")
    detail = {"rich": [], "plain": [], "untextured": []}
    for seed in range(8):
        images = {name: src.sample(0, 96, np.random.default_rng(seed)) for name, src in
                  (("rich", rich), ("plain", soft), ("untextured", untextured))}
        for name, sample in images.items():
            detail[name].append(_high_pass_std(sample.image))
        # textures are painted on the same leaves: the layer map does not move
        assert np.array_equal(images["rich"].depth, images["plain"].depth)
    mean = {name: np.mean(values) for name, values in detail.items()}
    assert mean["untextured"] < mean["plain"] < 0.85 * mean["rich"]  # 5.96 < 6.14 < 0.85 * 7.70 levels
    for bad in ("deadleaves:texture=1.5", "deadleaves:texamp=0.5", "deadleaves:texamp=0.01"):
        with pytest.raises(SourceError, match=f"{re.escape(bad)}: options are .*texture=P in \\[0, 1\\]"
                           ".*texamp=A in \\[0.02, 0.3\\]"):
            build_source(bad)
    with pytest.raises(ValueError, match="texture_amp must be in \\[0.02, 0.3\\], got 0.4"):
        DeadLeavesConfig(texture_amp=0.4)
    with pytest.raises(ValueError, match="texture_prob must be in \\[0, 1\\], got -0.1"):
        DeadLeavesConfig(texture_prob=-0.1)


def test_depth_proxy_range_and_orientation():
    d = depth_proxy(load_photo("rocket"))
    assert d.min() == 0.0 and d.max() == 1.0
    assert d[: d.shape[0] // 4].mean() > d[-d.shape[0] // 4:].mean()  # sky/top is farther


def _write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def test_folder_source_skips_and_counts_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "a" / "good1.png", rng.integers(0, 256, (80, 90, 3), dtype=np.uint8))
    _write(tmp_path / "b" / "good2.jpg", rng.integers(0, 256, (70, 70, 3), dtype=np.uint8))
    _write(tmp_path / "small.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))
    (tmp_path / "trunc.jpg").write_bytes(buf.tobytes()[:200])
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")

    src = FolderSource(tmp_path)
    report = src.scan(64)
    assert report["files"] == 6 and report["usable"] == 2
    assert sum(report["skipped"].values()) == 4
    assert any("zero-byte" in r for r in report["skipped"])
    assert any("truncated" in r for r in report["skipped"])
    assert any("smaller than" in r for r in report["skipped"])

    ids = {src.sample(i, 64, np.random.default_rng(i)).source_id.split("@")[0] for i in range(6)}
    assert ids == {"folder:a/good1.png", "folder:b/good2.jpg"}


def test_folder_source_upscale_keeps_small_images(tmp_path):
    _write(tmp_path / "small.png", np.full((20, 30, 3), 9, np.uint8))
    out = FolderSource(tmp_path, upscale=True).sample(0, 64, np.random.default_rng(0))
    assert out.image.shape == (64, 64, 3)


def test_folder_source_reads_depth_beside_images(tmp_path):
    _write(tmp_path / "x.png", np.full((64, 64, 3), 100, np.uint8))
    depth = np.tile(np.linspace(0, 1000, 64, dtype=np.float32), (64, 1))
    np.save(tmp_path / "x_depth.npy", depth)
    out = FolderSource(tmp_path).sample(0, 64, np.random.default_rng(0))
    assert out.depth is not None and out.depth[0, -1] == 1.0 and out.depth[0, 0] == 0.0


def test_folder_without_usable_images_is_a_clear_error(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(SourceError, match=str(tmp_path)):
        FolderSource(tmp_path).sample(0, 64, np.random.default_rng(0))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no image files"):
        FolderSource(empty)


def test_build_source_specs(tmp_path):
    assert isinstance(build_source("photos"), PhotoSource)
    assert build_source("photos:astronaut,coffee").names == ("astronaut", "coffee")
    both = build_source("deadleaves+photos")
    assert isinstance(both, InterleavedSource)
    assert both.sample(1, 64, np.random.default_rng(0)).source_id.startswith("photo:")
    with pytest.raises(SourceError, match="unknown source"):
        build_source("imagenet")


@pytest.mark.parametrize("spec", ["folder:", "folder-upscale:", "folder:  ", "deadleaves+folder:"])
def test_a_folder_spec_without_a_path_is_refused_not_read_as_the_working_folder(spec):
    with pytest.raises(SourceError, match=r"needs a folder, e\.g\. folder(-upscale)?:/data/div2k"):
        build_source(spec)
