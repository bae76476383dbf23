"""Today's dynamic-resolution parts against transformers' own processors: InternVL tiling (GotOcr2 /
InternVL3 port), LLaVA-OneVision ``anyres_max_9`` token counts, Qwen2-VL ``smart_resize``, on seeded random
sizes (squares, extreme aspects, tiny and large), plus the errata's known cases."""

from __future__ import annotations

import math
import random
import types

import numpy as np
import pytest
from PIL import Image

from loupe.geometry import ImageGeometry
from loupe.slicers import build
from loupe.slicers.internvl import internvl_grid
from loupe.slicers.native import QWEN2_VL_7B_MAX_PIXELS, smart_resize


def _sizes(seed: int, n: int, lo: int = 1, hi: int = 4000):
    rng = random.Random(seed)
    out = [(rng.randint(lo, hi), rng.randint(lo, hi)) for _ in range(n)]
    out += [(s, s) for s in (1, 27, 336, 447, 448, 449, 633, 634, 895, 896, 1343, 1344)]
    out += [(rng.randint(1, 30), rng.randint(500, 4000)) for _ in range(20)]
    out += [(rng.randint(500, 4000), rng.randint(1, 30)) for _ in range(20)]
    return out


def test_internvl_grid_equals_transformers_got_ocr2_on_random_sizes():
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

    for max_num in (6, 12):
        for w, h in _sizes(0, 300):
            theirs = get_optimal_tiled_canvas((h, w), (448, 448), 1, max_num)
            assert internvl_grid((w, h), 448, 1, max_num) == tuple(theirs), (w, h, max_num)


def test_internvl_area_rule_and_thumbnail_from_the_errata():
    s = build({"name": "internvl"})
    one, four = s.plan((633, 633)), s.plan((634, 634))
    assert one.grid == (1, 1) and one.roles == ("local",)  # no thumbnail for a single tile
    assert four.grid == (2, 2) and four.roles == ("local",) * 4 + ("overview",)  # thumbnail last


def test_internvl_tile_count_and_pixels_equal_transformers():
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    proc = GotOcr2ImageProcessorPil(crop_to_patches=True, max_patches=12, size={"height": 448, "width": 448})
    geo = ImageGeometry({"name": "internvl"}, {"name": "clip", "drop_cls": True, "hf_config": {"image_size": 448}},
                        {"name": "pixel_shuffle"})
    for w, h in _sizes(1, 200):
        assert geo.layout((w, h)).num_tiles == proc.get_number_of_image_patches(h, w, {}), (w, h)
    rng = np.random.default_rng(0)
    for w, h in [(800, 600), (1000, 300), (500, 500), (448, 448), (2000, 900)]:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        theirs = proc(images=img, return_tensors="np")["pixel_values"]
        tiles, lay = geo.slicer.slice(img)
        mean, std = np.array(proc.image_mean), np.array(proc.image_std)
        mine = ((np.stack(tiles) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
        assert mine.shape == theirs.shape, (w, h)
        assert np.abs(mine - theirs).max() < 1e-4, (w, h)


def test_internvl_tokens_are_256_per_tile():
    geo = ImageGeometry({"name": "internvl"}, {"name": "clip", "drop_cls": True, "hf_config": {"image_size": 448}},
                        {"name": "pixel_shuffle"})
    assert geo.num_tokens((448, 448)) == 256
    assert geo.num_tokens((634, 634)) == 5 * 256
    assert geo.num_tokens((2000, 500)) == (geo.layout((2000, 500)).num_tiles) * 256


def _onevision_counter():
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil
    from transformers.models.llava_onevision.processing_llava_onevision import LlavaOnevisionProcessor

    p = LlavaOnevisionProcessor.__new__(LlavaOnevisionProcessor)
    p.image_processor = LlavaOnevisionImageProcessorPil()
    p.num_image_tokens, p.vision_aspect_ratio = 729, "anyres_max_9"
    return p, p.image_processor.image_grid_pinpoints


def test_anyres_max_tokens_equal_llava_onevision_processor():
    proc, pinpoints = _onevision_counter()
    geo = ImageGeometry({"name": "anyres", "tile_size": 384, "pinpoints": pinpoints, "pinpoint_order": "hw"},
                        {"name": "clip", "drop_cls": True, "hf_config": {"image_size": 384}},
                        {"name": "anyres_max"})
    sizes = _sizes(2, 220) + [(1323, 49)]
    for w, h in sizes:
        assert geo.num_tokens((w, h)) == proc._get_number_of_features(h, w, 384, 384), (w, h)


def test_anyres_max_unpad_rounding_options_differ_where_the_errata_says():
    _, pinpoints = _onevision_counter()
    base = ({"name": "anyres", "tile_size": 384, "pinpoints": pinpoints, "pinpoint_order": "hw"},
            {"name": "clip", "drop_cls": True, "hf_config": {"image_size": 384}})
    hf = ImageGeometry(*base, {"name": "anyres_max"})
    official = ImageGeometry(*base, {"name": "anyres_max", "unpad_rounding": "official"})
    assert hf.num_tokens((1323, 49)) == 1274 and official.num_tokens((1323, 49)) == 1056


def test_native_smart_resize_equals_transformers_and_token_formula():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as theirs

    geo = ImageGeometry({"name": "native"}, {"name": "clip", "drop_cls": True, "native_aspect": True,
                                             "hf_config": {"image_size": 336}}, {"name": "patch_merge"})
    for max_pixels in (28 * 28 * 1280, QWEN2_VL_7B_MAX_PIXELS):
        for w, h in _sizes(3, 220, 4, 6000):
            if max(w, h) / min(w, h) > 200:
                with pytest.raises(ValueError):
                    theirs(h, w, 28, 56 * 56, max_pixels)
                with pytest.raises(ValueError, match="aspect ratio"):
                    smart_resize((w, h), 28, 56 * 56, max_pixels)
                continue
            th, tw = theirs(h, w, 28, 56 * 56, max_pixels)
            assert smart_resize((w, h), 28, 56 * 56, max_pixels) == (tw, th), (w, h)
    for w, h in _sizes(4, 200, 28, 3000):
        if max(w, h) / min(w, h) > 200:
            continue
        th, tw = theirs(h, w)
        assert geo.num_tokens((w, h)) == (th // 28) * (tw // 28), (w, h)


def test_native_pixels_equal_qwen2_vl_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil()
    s = build({"name": "native"})
    rng = np.random.default_rng(1)
    for w, h in [(640, 480), (100, 1000), (57, 57), (1500, 1100)]:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        out = proc(images=img, return_tensors="np")
        (tile,), lay = s.slice(img)
        gt, gh, gw = out["image_grid_thw"][0]
        assert (tile.shape[1], tile.shape[0]) == (gw * 14, gh * 14) == lay.tile_sizes[0]
        # their patches: (gh/2 * gw/2 * 4, 3 * 2 * 14 * 14), merge-window order, time duplicated
        mean, std = np.array(proc.image_mean), np.array(proc.image_std)
        x = ((tile / 255.0 - mean) / std).transpose(2, 0, 1)  # (3, H, W)
        x = x.reshape(3, gh // 2, 2, 14, gw // 2, 2, 14).transpose(1, 4, 2, 5, 0, 3, 6)  # windows, 2x2, C, p, p
        x = np.repeat(x.reshape(-1, 3, 1, 14, 14), 2, axis=2).reshape(-1, 3 * 2 * 14 * 14)
        assert np.abs(x - out["pixel_values"]).max() < 1e-4, (w, h)


def test_native_budget_fits_exactly_through_max_pixels():
    from loupe.budget import choose_slicer, count, fit_slicer
    from loupe.errors import LoupeError

    s, v, c = ({"name": "native", "max_pixels": QWEN2_VL_7B_MAX_PIXELS},
               {"name": "qwen2_vl"}, {"name": "patch_merge"})
    rng = random.Random(5)
    for _ in range(60):
        w, h = rng.randint(30, 5000), rng.randint(30, 5000)
        full = count(s, v, c, (w, h))
        for budget in (4, 64, 256, 1024, 4096):
            if budget >= full:
                assert fit_slicer(s, v, c, (w, h), budget)["max_pixels"] == QWEN2_VL_7B_MAX_PIXELS
                continue
            try:
                got = fit_slicer(s, v, c, (w, h), budget)
            except LoupeError as e:
                assert "below the minimum" in str(e) and budget < 16  # min_pixels 56*56 -> at least 4 tokens
                continue
            n = count(got, v, c, (w, h))
            assert n <= budget
            # exact: one more token of max_pixels would not fit (the next setting up overshoots or equals)
            bigger = dict(got, max_pixels=got["max_pixels"] + 28 * 28)
            assert count(bigger, v, c, (w, h)) > budget or bigger["max_pixels"] > budget * 28 * 28
    low = choose_slicer(s, v, c, (4000, 3000), detail="low")
    assert count(low, v, c, (4000, 3000)) <= 16
