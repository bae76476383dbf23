"""LLaVA-1.5 ``pad``: expand2square arithmetic of the original code, and CLIP preprocessing parity."""

import numpy as np
import pytest
from PIL import Image

import loupe
from loupe.slicers.pad import PadSlicer, fill_colour, square_paste_offset


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


@pytest.mark.parametrize("size", [(160, 96), (96, 160), (128, 128), (127, 33)])
def test_canvas_mode_keeps_native_pixels_centred(size):
    """``mode="canvas"``: the image pasted at its own scale at ((T - W) // 2, (T - H) // 2) on a T square of the
    fill colour; the tile map (content box, image-space box) says exactly that."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    s = PadSlicer(PadSlicer.Config(tile_size=256, mode="canvas", fill=(0.5, 0.5, 0.5)))
    (tile,), layout = s.slice(Image.fromarray(arr))
    w, h = size
    x0, y0 = (256 - w) // 2, (256 - h) // 2
    assert tile.shape == (256, 256, 3)
    assert np.array_equal(tile[y0:y0 + h, x0:x0 + w], arr)
    outside = np.ones((256, 256), bool)
    outside[y0:y0 + h, x0:x0 + w] = False
    assert (tile[outside] == 127).all()
    assert layout.content_box == (x0, y0, x0 + w, y0 + h)
    assert layout.boxes == ((-x0, -y0, 256 - x0, 256 - y0),)
    assert s.plan(size) == layout


def test_canvas_mode_shrinks_only_what_does_not_fit():
    s = PadSlicer(PadSlicer.Config(tile_size=64, mode="canvas"))
    (tile,), layout = s.slice(Image.new("RGB", (256, 128), (255, 0, 0)))
    assert layout.content_box == (0, 16, 64, 48)  # 256x128 -> 64x32, centred
    assert (tile[16:48] == (255, 0, 0)).all() and (tile[:16] == fill_colour()).all()
    assert layout.boxes == ((0.0, -64.0, 256.0, 192.0),)  # the canvas in image pixels
