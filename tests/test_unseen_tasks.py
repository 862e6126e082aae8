import numpy as np
import pytest

import taskgen
from taskgen.registry import CANONICAL_ORDER
from taskgen.sources import load_photo

UNSEEN = ["vignetting_removal", "motion_deblur", "sepia", "emboss", "colour_inversion", "gamma_change"]


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(load_photo("coffee")[:128, :128])


def test_unseen_tasks_are_held_out_of_training():
    specs = taskgen.list_tasks(split="unseen")
    assert [s.name for s in specs] == UNSEEN
    assert not any(s.in_training_mix for s in specs)
    train = {s.name for s in taskgen.list_tasks(split="train")}
    assert train.isdisjoint(UNSEEN)


@pytest.mark.parametrize("name", UNSEEN)
def test_contract_and_determinism(name, photo):
    spec = taskgen.get_task(name)
    a = spec.generate(photo, np.random.default_rng(3))
    b = spec.generate(photo, np.random.default_rng(3))
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
    for arr in a[:2]:
        assert arr.dtype == np.uint8 and arr.shape == photo.shape
    assert not np.array_equal(a[0], a[1])


def test_vignetting_darkens_corners_not_centre(photo):
    inp, tgt, p = taskgen.get_task("vignetting_removal").generate(photo, np.random.default_rng(0))
    ratio = inp.astype(float) / np.maximum(tgt.astype(float), 1)
    assert ratio[:8, :8].mean() < 0.8 and ratio[60:68, 60:68].mean() > 0.9


def test_motion_blur_is_directional():
    img = np.zeros((64, 64, 3), np.uint8)
    img[32, 32] = 255
    spec = taskgen.get_task("motion_deblur")
    rng = np.random.default_rng(1)
    inp, _, p = spec.generate(img, rng)
    ys, xs = np.nonzero(inp[:, :, 0])
    spread = max(np.ptp(ys), np.ptp(xs)) + 1
    assert spread >= p["length"] - 2  # a point becomes a line of the drawn length


@pytest.mark.parametrize("length", range(9, 18))
def test_motion_kernel_is_centred_anti_aliased_and_as_long_as_drawn(length):
    from taskgen.tasks.unseen import motion_kernel

    for angle in (0.0, 30.0, 45.0, 90.0, 150.0, 172.5):
        kernel = motion_kernel(length, angle).astype(np.float64)
        size = kernel.shape[0]
        assert size % 2 and kernel.shape == (size, size) and kernel.sum() == pytest.approx(1.0, abs=1e-6)
        ys, xs = np.mgrid[:size, :size] - size // 2
        # centred: a blur that shifted the image would cost PSNR the deblurring is not about
        assert abs((kernel * xs).sum()) < 1e-5 and abs((kernel * ys).sum()) < 1e-5
        # the spread along the motion is that of a box of `length` px (+ the splat's 1/6 px²)
        along = xs * np.cos(np.deg2rad(angle)) + ys * np.sin(np.deg2rad(angle))
        assert (kernel * along ** 2).sum() == pytest.approx(length ** 2 / 12 + 1 / 6, rel=0.02)
    # a diagonal is anti-aliased (taps of several weights), a horizontal motion a box with soft ends
    assert len(np.unique(np.round(motion_kernel(length, 30.0)[motion_kernel(length, 30.0) > 0], 5))) > 2
    row = motion_kernel(length, 0.0)[motion_kernel(length, 0.0).shape[0] // 2] * length
    full_taps = length - 2 if length % 2 else length - 1   # odd: ends 7/8 and 1/8; even: ends 1/2
    assert np.count_nonzero(np.isclose(row, 1.0, atol=1e-5)) == full_taps


def test_colour_inversion_is_an_involution(photo):
    _, tgt, _ = taskgen.get_task("colour_inversion").generate(photo, np.random.default_rng(0))
    _, back, _ = taskgen.get_task("colour_inversion").generate(tgt, np.random.default_rng(0))
    assert np.array_equal(back, photo)


def test_sepia_and_emboss_and_gamma(photo):
    _, s, _ = taskgen.get_task("sepia").generate(photo, np.random.default_rng(0))
    assert (s[..., 0].astype(int) >= s[..., 2]).all()  # warm: red >= blue everywhere
    flat = np.full((32, 32, 3), 77, np.uint8)
    _, e, _ = taskgen.get_task("emboss").generate(flat, np.random.default_rng(0))
    assert (e == 128).all()  # no relief on a flat image
    _, g, _ = taskgen.get_task("gamma_change").generate(photo, np.random.default_rng(0))
    assert g.mean() > photo.mean()


@pytest.mark.parametrize("name", CANONICAL_ORDER)  # the built-in tasks: other test modules register their own
def test_every_task_function_refuses_an_image_outside_the_contract(name):
    # Called directly (not through generate), a task must not turn a grey or float image into garbage.
    from taskgen.images import ImageContractError

    fn = taskgen.get_task(name).fn
    rng = np.random.default_rng(0)
    with pytest.raises(ImageContractError, match="expected HxWx3 RGB"):
        fn(np.full((32, 32), 128, np.uint8), rng)
    with pytest.raises(ImageContractError, match="expected dtype uint8"):
        fn(np.full((32, 32, 3), 0.5, np.float32), rng)
