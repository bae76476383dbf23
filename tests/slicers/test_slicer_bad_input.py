"""Bad input to every new slicer: clear :class:`LoupeError`s, documented upscaling, any PIL mode."""

import numpy as np
import pytest
from PIL import Image

import loupe
from loupe import LoupeError, slicers

NEW = [{"name": "anyres"}, {"name": "uhd"}, {"name": "uhd", "variant": "v1"}, {"name": "dcm"},
       {"name": "dcm", "layout": "paper"}, {"name": "aspect"}, {"name": "aspect", "mode": "square"}]


@pytest.mark.parametrize("spec", NEW, ids=str)
@pytest.mark.parametrize("size", [(0, 10), (10, 0), (0, 0), (-3, 5)])
def test_zero_pixel_side(spec, size):
    with pytest.raises(LoupeError, match="zero-size side"):
        slicers.build(spec).plan(size)


@pytest.mark.parametrize("spec", NEW, ids=str)
def test_zero_pixel_pil_image(spec):
    with pytest.raises(LoupeError, match="zero-size side"):
        slicers.build(spec).slice(Image.new("RGB", (0, 7)))


@pytest.mark.parametrize("spec", NEW, ids=str)
def test_over_the_pixel_cap(spec):
    with pytest.raises(LoupeError, match="over the cap"):
        slicers.build(spec).plan((100_000, 100_000))
    with pytest.raises(LoupeError, match="over the cap"):
        slicers.build({**spec, "max_pixels": 1000}).slice(Image.new("RGB", (50, 50)))


@pytest.mark.parametrize("spec", NEW, ids=str)
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16", "CMYK"])
def test_tiny_images_are_upscaled_in_any_mode(spec, mode):
    """An image smaller than one tile is upscaled (documented in each slicer), never an error."""
    img = Image.new(mode, (1, 1))
    tiles, lay = slicers.build(spec).slice(img)
    assert len(tiles) == lay.num_tiles >= 1
    for t, (w, h) in zip(tiles, lay.tile_sizes):
        assert t.dtype == np.uint8 and t.shape == (h, w, 3) and w >= 14 and h >= 14


@pytest.mark.parametrize("spec,match", [
    ({"name": "anyres", "pinpoints": [[300, 600]]}, "multiples of tile_size"),
    ({"name": "anyres", "pinpoint_order": "xy"}, "pinpoint_order"),
    ({"name": "uhd", "variant": "v3"}, "variant"),
    ({"name": "dcm", "size": 1000}, "multiple of tile_size"),
    ({"name": "aspect", "short_side": 1000}, "multiple of stride"),
    ({"name": "aspect", "tiles": 3}, "unknown option"),
])
def test_bad_options(spec, match):
    with pytest.raises(LoupeError, match=match):
        slicers.build(spec)


def test_processor_counts_reject_bad_sizes():
    proc = loupe.build_processor("llava-next-tiny")
    with pytest.raises(LoupeError, match="zero-size side"):
        proc.num_image_tokens((0, 5))
    with pytest.raises(LoupeError, match="over the cap"):
        proc.num_image_tokens((100_000, 100_000))
    assert proc.num_image_tokens((1, 1)) == 16 + 4 * 5  # 56x112 canvas: 1x1 upscaled into a 4x8 map -> 4x4 + newlines
