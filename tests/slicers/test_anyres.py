"""``anyres`` (LLaVA-NeXT): grid choice, token counts and pixels against transformers' LLaVA-NeXT code.

transformers reads every pinpoint as (H, W), the official LLaVA code as (W, H); the peer gets the transposed
list ("the same pinpoints") so the two iterate candidates in the same order. The stock (untransposed) reading
is checked separately: it differs from the official one only on exact ties.
"""

import functools

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

import loupe
from loupe.geometry import ImageGeometry
from loupe.presets import get_preset
from loupe.slicers.geometry import LLAVA_16_PINPOINTS, fit_size, select_best_resolution, unpadded_size

PINS_WH = [list(p) for p in LLAVA_16_PINPOINTS]
PINS_HW = [[h, w] for w, h in PINS_WH]
SIDE = st.integers(1, 4096)


@functools.lru_cache(maxsize=None)
def hf_processor(pinpoints=tuple(map(tuple, PINS_HW))):
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    from loupe.tokenizer import build_tiny_tokenizer

    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                    image_grid_pinpoints=[list(p) for p in pinpoints])
    return LlavaNextProcessor(image_processor=ip, tokenizer=build_tiny_tokenizer(1024, "tiny"), patch_size=14,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1)


@functools.lru_cache(maxsize=None)
def geometry(**slicer):
    c = get_preset("llava-next-7b")["config"]
    return ImageGeometry({**c["slicer"], **slicer}, c["vision"], c["connector"])


def hf_count(w, h, pinpoints=tuple(map(tuple, PINS_HW))):
    return hf_processor(pinpoints)._get_num_multimodal_tokens(image_sizes=[(h, w)]).num_image_tokens[0]


def image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_672_square_is_2928_tokens():
    assert geometry().num_tokens((672, 672)) == 2928 == hf_count(672, 672)


def test_grid_and_tokens_equal_transformers_on_a_sweep():
    from transformers.image_processing_utils import select_best_resolution as hf_select

    sides = [1, 2, 13, 100, 200, 335, 336, 337, 500, 671, 672, 673, 700, 1000, 1007, 1008, 1009, 1500, 2048, 4096]
    g = geometry()
    for w in sides:
        for h in sides:
            hh, ww = hf_select((h, w), PINS_HW)
            assert g.slicer.canvas((w, h)) == (ww, hh), (w, h)
            assert g.layout((w, h)).grid == (ww // 336, hh // 336)
            assert g.num_tokens((w, h)) == hf_count(w, h), (w, h)


@settings(max_examples=60, deadline=None)
@given(SIDE, SIDE)
@example(1, 2000)
@example(3000, 20)
@example(47, 47)
def test_tokens_equal_transformers_random(w, h):
    assert geometry().num_tokens((w, h)) == hf_count(w, h)


@settings(max_examples=60, deadline=None)
@given(SIDE, SIDE)
@example(300, 100)
def test_stock_transformers_reading_differs_only_on_ties(w, h):
    """The same literal list read as (H, W) (llava-hf) picks another canvas only when the scores tie."""
    from transformers.image_processing_utils import select_best_resolution as hf_select

    official = select_best_resolution((w, h), PINS_WH)
    hh, ww = hf_select((h, w), PINS_WH)
    assert select_best_resolution((w, h), PINS_WH, order="hw") == (ww, hh)
    assert geometry(pinpoint_order="hw").num_tokens((w, h)) == hf_count(w, h, tuple(map(tuple, PINS_WH)))
    if official != (ww, hh):

        def score(c):
            s = min(c[0] / w, c[1] / h)
            eff = min(int(w * s) * int(h * s), w * h)
            return eff, c[0] * c[1] - eff

        assert score(official) == score((ww, hh))


def test_small_images_tie_official_tall_transformers_wide():
    assert select_best_resolution((300, 100), PINS_WH) == (336, 672)
    assert select_best_resolution((300, 100), PINS_WH, order="hw") == (672, 336)
    assert geometry().num_tokens((300, 100)) == 576 + 200
    assert geometry(pinpoint_order="hw").num_tokens((300, 100)) == 576 + 784


def test_unpad_matches_transformers_model_unpad_image():
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    for w, h in [(1000, 700), (700, 1000), (47, 47), (1337, 333), (2048, 512), (3, 900)]:
        for cw, ch in [(48, 48), (24, 48), (72, 24)]:
            ref = unpad_image(torch.zeros(1, ch, cw), (h, w)).shape[1:]
            assert unpadded_size((w, h), (cw, ch)) == (ref[1], ref[0])


def test_official_unpad_rounding_differs_where_documented():
    # 55 * (24 / 88) = 14.999999999999998: transformers keeps 15 -> pad 16 -> 16 rows; official 14 -> pad 17 -> 14
    assert geometry().layout((88, 55)).canvas_size == (336, 672)
    assert unpadded_size((88, 55), (24, 48), "transformers") == (24, 16)
    assert unpadded_size((88, 55), (24, 48), "official") == (24, 14)
    c = get_preset("llava-next-7b")["config"]
    official = ImageGeometry(c["slicer"], c["vision"], {**c["connector"], "unpad_rounding": "official"})
    assert geometry().num_tokens((88, 55)) == hf_count(88, 55) == 576 + 16 * 25
    assert official.num_tokens((88, 55)) == 576 + 14 * 25


@settings(max_examples=200, deadline=None)
@given(SIDE, SIDE)
@example(1, 2000)
@example(3000, 20)
def test_plan_properties(w, h):
    lay = geometry().layout((w, h))
    cols, rows = lay.grid
    cw, ch = lay.canvas_size
    assert lay.tile_sizes == ((336, 336),) * (1 + cols * rows) and lay.roles[0] == "overview"
    assert (cw, ch) in {tuple(p) for p in PINS_WH} and (cols * 336, rows * 336) == (cw, ch)
    x0, y0, x1, y1 = lay.content_box
    fw, fh = fit_size((w, h), (cw, ch))
    assert (x1 - x0, y1 - y0) == (fw, fh) and 0 <= x0 <= cw - x1 <= x0 + 1 and 0 <= y0 <= ch - y1 <= y0 + 1
    assert fw == cw or fh == ch  # one side fitted exactly


@pytest.mark.parametrize("size", [(1000, 700), (300, 100), (50, 900), (1337, 333), (672, 672), (1, 1), (3000, 20)])
def test_pixels_equal_transformers(size):
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    hf = LlavaNextImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                    image_grid_pinpoints=PINS_HW)
    cfg = get_preset("llava-next-7b")["config"]
    ip = loupe.LoupeImageProcessor(**{k: cfg[k] for k in ("slicer", "vision", "connector")})
    img = image(*size)
    ref = hf(img, return_tensors="np")["pixel_values"][0]
    ours = ip(img)["pixel_values"].numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4


def test_parallel_and_serial_resize_give_identical_tiles():
    from loupe import slicers

    img = image(1000, 700)
    a, _ = slicers.build({"name": "anyres"}).slice(img)
    b, _ = slicers.build({"name": "anyres", "parallel_resize": False}).slice(img)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_tiles_are_the_padded_canvas_row_major():
    from loupe import slicers

    s = slicers.build({"name": "anyres"})
    img = image(500, 900, seed=3)
    tiles, lay = s.slice(img)
    cols, rows = lay.grid
    canvas = np.concatenate([np.concatenate(tiles[1 + r * cols: 1 + (r + 1) * cols], axis=1) for r in range(rows)])
    x0, y0, x1, y1 = lay.content_box
    assert np.array_equal(canvas[y0:y1, x0:x1], np.asarray(img.resize((x1 - x0, y1 - y0), Image.BICUBIC)))
    mask = np.ones(canvas.shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    assert not canvas[mask].any()  # black padding
    assert np.array_equal(tiles[0], np.asarray(img.resize((336, 336), Image.BICUBIC)))
