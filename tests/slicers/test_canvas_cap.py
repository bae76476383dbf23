"""Every buffer a slicer allocates is bounded: a thin strip (196-byte 40000x1 PNG) is refused at plan time,
before any canvas exists, with a message naming the image, the buffer and the limit."""

import io
import time

import numpy as np
import pytest
from PIL import Image

from loupe import LoupeError, slicers
from loupe.images import DEFAULT_MAX_PIXELS, MAX_CANVAS_PIXELS, load_image

STRIP_SPECS = [
    {"name": "pad"}, {"name": "pad", "mode": "crop"}, {"name": "dcm"}, {"name": "dcm", "layout": "paper"},
    {"name": "aspect", "mode": "square"}, {"name": "aspect", "max_long_side": None},
]


def test_limits():
    assert DEFAULT_MAX_PIXELS == 1 << 26 and MAX_CANVAS_PIXELS == 1 << 27


@pytest.mark.parametrize("spec", STRIP_SPECS, ids=str)
@pytest.mark.parametrize("size", [(40000, 1), (1, 40000), (65535, 1)])
def test_thin_strip_is_refused_before_allocating(spec, size):
    buf = io.BytesIO()
    Image.new("L", size).save(buf, format="PNG")
    img = load_image(buf.getvalue())  # under the pixel cap: the image itself is fine
    s = slicers.build(spec)
    t0 = time.perf_counter()
    with pytest.raises(LoupeError, match=rf"{spec['name']} slicer: an image of {size[0]}x{size[1]} pixels needs a "
                                         r"\d+x\d+ .* pixels, over the limit of 134,217,728 \(max_canvas_pixels\)"):
        s.slice(img)
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(LoupeError, match="max_canvas_pixels"):
        s.plan(size)


def test_pad_message_names_the_canvas():
    with pytest.raises(LoupeError) as e:
        slicers.build({"name": "pad"}).plan((40000, 1))
    assert str(e.value) == (
        "pad slicer: an image of 40000x1 pixels needs a 40000x40000 expand2square canvas = 1,600,000,000 pixels, "
        "over the limit of 134,217,728 (max_canvas_pixels); resize or crop the image first, or raise "
        "max_canvas_pixels")


@pytest.mark.parametrize("spec", [{"name": "pad"}, {"name": "dcm", "tile_size": 4, "size": 12},
                                  {"name": "aspect", "mode": "square", "short_side": 16, "stride": 16}], ids=str)
def test_limit_is_configurable_and_exact(spec):
    s = slicers.build({**spec, "max_canvas_pixels": 400})
    s.plan((20, 19))  # 20x20 canvas = 400: at the limit
    with pytest.raises(LoupeError, match="over the limit of 400"):
        s.plan((21, 19))
    tiles, _ = slicers.build({**spec, "max_canvas_pixels": None}).slice(Image.new("RGB", (300, 2)))
    assert len(tiles) >= 1


def test_uhd_bounds_canvas_and_tiles():
    # 1 x 2^26 (at the pixel cap): a 1x9 grid of 14 x 917,490 px slices on a 14 x 8,257,410 canvas (115.6 M px)
    with pytest.raises(LoupeError, match=r"uhd slicer: an image of 1x67108864 pixels needs a 14x8257410 refined canvas"):
        slicers.build({"name": "uhd", "max_canvas_pixels": 1 << 26}).plan((1, 1 << 26))
    with pytest.raises(LoupeError, match=r"needs a 14x18396 overview tile"):  # not sliced: one upscaled tile
        slicers.build({"name": "uhd", "max_canvas_pixels": 100_000}).plan((1, 3000))
    slicers.build({"name": "uhd"}).plan((1, 40000))  # 14 x 65,072 px: allowed


def test_anyres_canvas_is_checked():
    s = slicers.build({"name": "anyres", "tile_size": 56, "pinpoints": [[56, 112]], "max_canvas_pixels": 6000})
    with pytest.raises(LoupeError, match="needs a 56x112 canvas"):
        s.plan((10, 10))


def test_normal_images_are_untouched():
    for spec in STRIP_SPECS[:-1] + [{"name": "aspect"}, {"name": "anyres"}, {"name": "uhd"}]:
        s = slicers.build(spec)
        for size in [(1000, 700), (8192, 8192), (11585, 20), (20, 11585)]:
            s.plan(size)
