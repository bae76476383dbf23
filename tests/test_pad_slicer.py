"""LLaVA-1.5 ``pad``: expand2square arithmetic of the original code, and CLIP preprocessing parity."""

import numpy as np
import pytest
from PIL import Image

import loupe
from loupe.slicers.pad import fill_colour, square_paste_offset


def reference_expand2square(img, background):
    """LLaVA mm_utils.expand2square, written out independently for the test."""
    w, h = img.size
    if w == h:
        return img
    if w > h:
        out = Image.new(img.mode, (w, w), background)
        out.paste(img, (0, (w - h) // 2))
        return out
    out = Image.new(img.mode, (h, h), background)
    out.paste(img, ((h - w) // 2, 0))
    return out


def test_fill_colour_is_truncated_clip_mean():
    assert fill_colour() == (122, 116, 104)


@pytest.mark.parametrize("size", [(7, 4), (4, 7), (100, 33), (33, 100), (5, 5)])
def test_odd_padding_goes_bottom_right(size):
    side, x0, y0 = square_paste_offset(*size)
    assert side == max(size)
    assert (side - size[0] - x0) >= x0 and (side - size[1] - y0) >= y0


@pytest.mark.parametrize("size", [(300, 171), (171, 300), (336, 336), (41, 1000)])
def test_pixels_match_reference_pipeline(size):
    from transformers import CLIPImageProcessor

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    ip = loupe.LoupeImageProcessor(slicer={"name": "pad", "tile_size": 336})
    ours = ip(img)["pixel_values"].numpy()
    ref_img = reference_expand2square(img, fill_colour())
    hf = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    ref = np.asarray(hf(ref_img, return_tensors="np")["pixel_values"])
    assert ours.shape == ref.shape == (1, 3, 336, 336)
    assert np.abs(ours - ref).max() < 1e-5


def test_layout_and_tokens():
    ip = loupe.LoupeImageProcessor(slicer={"name": "pad", "tile_size": 336})
    lay = ip.geometry.layout((1000, 500))
    assert lay.num_tiles == 1 and lay.canvas_size == (1000, 1000) and lay.content_box == (0, 250, 1000, 750)
    assert ip.geometry.num_tokens((1000, 500)) == 576
