import cv2
import numpy as np
import pytest
from PIL import Image

from taskgen.imageio import UnreadableImage, decode_png, encode_png, read_image


def _rgb(h=20, w=30):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_round_trip_keeps_rgb_order_and_is_deterministic():
    img = _rgb()
    img[0, 0] = (255, 0, 0)
    data = encode_png(img)
    assert data == encode_png(img)
    back = decode_png(data)
    assert back.tobytes() == img.tobytes()
    assert tuple(back[0, 0]) == (255, 0, 0)


def test_uint16_png_round_trip():
    img = (np.arange(20 * 30 * 3, dtype=np.uint16).reshape(20, 30, 3) * 97)
    assert decode_png(encode_png(img)).tobytes() == img.tobytes()


def test_read_image_conversions(tmp_path):
    gray = np.full((10, 12), 77, np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").shape == (10, 12, 3)

    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent -> composited on white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert (read_image(tmp_path / "a.png") == 255).all()

    deep = np.full((10, 12, 3), 65535, np.uint16)
    deep[0, 0] = (257 * 10, 0, 65535)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    out = read_image(tmp_path / "d.png")
    assert out.dtype == np.uint8 and tuple(out[0, 0]) == (255, 0, 10)  # scaled 16->8, RGB order


@pytest.mark.parametrize("name,payload,reason", [
    ("empty.png", b"", "zero-byte"),
    ("text.jpg", b"this is not an image at all", "not an image"),
])
def test_read_image_bad_files_have_reasons(tmp_path, name, payload, reason):
    (tmp_path / name).write_bytes(payload)
    with pytest.raises(UnreadableImage, match=reason):
        read_image(tmp_path / name)


def test_truncated_jpeg_is_rejected(tmp_path):
    ok, buf = cv2.imencode(".jpg", _rgb(64, 64))
    (tmp_path / "t.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(UnreadableImage, match="truncated"):
        read_image(tmp_path / "t.jpg")


@pytest.mark.parametrize("image", [_rgb(), np.arange(20 * 30 * 3, dtype=np.uint16).reshape(20, 30, 3) * 97])
def test_stored_png_level_0_round_trips_without_row_filters(image):
    data = encode_png(image, compression=0)
    assert decode_png(data).tobytes() == image.tobytes()
    assert data == encode_png(image, compression=0)
    assert len(data) >= image.nbytes  # stored: no deflate, so no smaller than the raw pixels


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("keep_16bit", [False, True])
def test_floating_point_tiff_is_refused_not_read_as_black(tmp_path, channels, keep_16bit):
    # A float TIFF in [0, 1] once became an all-black uint8 image (clipped to 0..255, then truncated).
    values = np.random.default_rng(0).uniform(0.5, 1.0, (16, 16, channels)).astype(np.float32)
    path = tmp_path / "f.tif"
    assert cv2.imwrite(str(path), values.squeeze())
    with pytest.raises(UnreadableImage, match=r"f\.tif: floating-point image \(unsupported\)"):
        read_image(path, keep_16bit=keep_16bit)
