"""Bad images get a LoupeError naming the problem; every PIL mode becomes 8-bit RGB."""

import io

import numpy as np
import pytest
from PIL import Image

from loupe import LoupeError
from loupe.images import load_image


def _png(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_missing_file(tmp_path):
    with pytest.raises(LoupeError, match="not found"):
        load_image(tmp_path / "nope.png")


def test_not_an_image(tmp_path):
    p = tmp_path / "x.png"
    p.write_text("hello")
    with pytest.raises(LoupeError, match="not a recognised image"):
        load_image(p)


def test_truncated_file(tmp_path):
    data = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    p = tmp_path / "t.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoupeError, match="truncated or corrupt|cannot read"):
        load_image(p)


def test_zero_size():
    with pytest.raises(LoupeError, match="zero-size"):
        load_image(np.zeros((0, 5, 3), dtype=np.uint8))


def test_decompression_bomb_checked_before_decoding(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(p)
    with pytest.raises(LoupeError, match="over the cap"):
        load_image(p, max_pixels=1_000_000)
    assert load_image(p, max_pixels=None).size == (3000, 3000)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "1", "P", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_modes_become_rgb(mode, tmp_path):
    img = Image.new("RGB", (9, 7), (200, 100, 50)).convert(mode)
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (9, 7)


def test_transparent_pixels_become_white():
    a = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    a[0, 0] = (255, 0, 0, 255)
    out = np.asarray(load_image(Image.fromarray(a, "RGBA")))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[3, 3]) == (255, 255, 255)


def test_16bit_is_rescaled():
    a = np.full((3, 3), 65535, dtype=np.uint16)
    img = Image.fromarray(a)
    assert img.mode == "I;16"
    out = np.asarray(load_image(img))
    assert out.max() == 255


def test_bytes_input():
    out = load_image(_png(Image.new("RGB", (5, 6), "red")))
    assert out.size == (5, 6)
