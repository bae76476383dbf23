"""``uhd``: LLaVA-UHD v2's MiniCPM-V slicing (spec §3.2) and the v1 paper variant (spec §0.3a)."""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from loupe import slicers
from loupe.slicers.geometry import ensure_divide, find_best_resize, uhd_grid

C, N = 29892, 13  # ',' and '\n' in the Llama tokenizer


def image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_helpers_hand_computed():
    assert ensure_divide(411, 14) == 406 and ensure_divide(5, 14) == 14
    assert find_best_resize((1008, 672)) == (406, 266)  # spec: 1.5:1 -> 406x266 = 29x19 patches
    assert find_best_resize((100, 60)) == (98, 56)  # small, no upscale: just multiples of 14
    assert find_best_resize((100, 60), allow_upscale=True) == (420, 252)


def test_1008x672_is_six_slices_3x2():
    lay = slicers.build({"name": "uhd"}).plan((1008, 672))
    assert lay.grid == (3, 2) and lay.roles == ("local",) * 6 + ("overview",)
    assert lay.tile_sizes == ((336, 336),) * 6 + ((406, 266),)
    assert lay.canvas_size == (1008, 672)
    assert lay.meta["separators"] == [C, C, N, C, C, N]


def test_336_square_is_not_sliced():
    lay = slicers.build({"name": "uhd"}).plan((336, 336))
    assert lay.grid == (0, 0) and lay.tile_sizes == ((336, 336),) and lay.meta["separators"] == []


def test_2048x512_float_tie_picks_8x1():
    # |log 4 - log 2| and |log 4 - log 8| are equal on paper; in floats the later 8x1 is 2e-16 smaller
    assert abs(math.log(4.0) - math.log(8 / 1)) < abs(math.log(4.0) - math.log(4 / 2))
    lay = slicers.build({"name": "uhd"}).plan((2048, 512))
    assert lay.grid == (8, 1)
    # cell 256x512 -> find_best_resize(up): h = int(336/sqrt(.5)) = 475, w = int(237.5) = 237 -> 224x462
    assert lay.tile_sizes[:-1] == ((224, 462),) * 8 and lay.canvas_size == (1792, 462)
    assert lay.tile_sizes[-1] == (672, 168)
    assert lay.meta["separators"] == [C] * 7 + [N]


def test_max_slice_nums_and_custom_ids():
    # training cap 7: counts {6, 7}; 2x3 and 3x2 tie on paper, log(1.5) is 1e-16 closer to 0 than log(2/3)
    assert slicers.build({"name": "uhd", "max_slice_nums": 7}).plan((1344, 1344)).grid == (3, 2)
    assert slicers.build({"name": "uhd"}).plan((1344, 1344)).grid == (3, 3)
    lay = slicers.build({"name": "uhd", "comma_id": 11, "newline_id": 198}).plan((672, 672))
    assert lay.grid == (2, 2) and lay.meta["separators"] == [11, 198, 11, 198]


def test_v1_paper_variant():
    s = slicers.build({"name": "uhd", "variant": "v1"})
    lay = s.plan((1008, 672))
    assert lay.grid == (3, 2) and lay.tile_sizes == ((336, 336),) * 6 + ((406, 266),)
    lay = s.plan((336, 336))  # v1 always slices: 1x1 + overview
    assert lay.grid == (1, 1) and lay.num_tiles == 2
    lay = s.plan((4000, 4000))  # N capped at 6: counts {5, 6, 7}
    assert lay.grid == (3, 2) and lay.num_tiles == 7


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4096), st.integers(1, 4096), st.sampled_from([7, 9]))
@example(1, 2000, 9)
@example(3000, 20, 9)
def test_plan_properties(w, h, max_n):
    lay = slicers.build({"name": "uhd", "max_slice_nums": max_n}).plan((w, h))
    assert lay.roles[-1] == "overview" and all(r == "local" for r in lay.roles[:-1])
    assert all(a % 14 == 0 and b % 14 == 0 and a > 0 and b > 0 for a, b in lay.tile_sizes)
    multiple = min(math.ceil(w * h / 336**2), max_n)
    if multiple <= 1:
        assert lay.num_tiles == 1 and lay.grid == (0, 0)
        return
    cols, rows = lay.grid
    assert cols * rows in {multiple - 1, multiple, multiple + 1} - {1} and cols * rows <= max_n
    assert len(set(lay.tile_sizes[:-1])) == 1 and lay.num_tiles == cols * rows + 1
    cw, ch = lay.tile_sizes[0]
    assert lay.canvas_size == (cw * cols, ch * rows)
    ow, oh = lay.tile_sizes[-1]
    if ow > 14 and oh > 14:
        assert ow * oh <= 336 * 336  # the overview never exceeds ~336^2
    seps = lay.meta["separators"]
    assert len(seps) == cols * rows and seps[cols - 1 :: cols] == [N] * rows and seps.count(C) == (cols - 1) * rows


@pytest.mark.parametrize("size", [(1008, 672), (2048, 512), (700, 1000), (100, 60), (1, 2000)])
def test_pixels_equal_reference(size):
    """Slices = the refined image cut row-major; the overview = bicubic find_best_resize (official code)."""
    img = image(*size)
    tiles, lay = slicers.build({"name": "uhd"}).slice(img)
    assert [t.shape[1::-1] for t in tiles] == list(lay.tile_sizes)
    assert np.array_equal(tiles[-1], np.asarray(img.resize(lay.tile_sizes[-1], Image.BICUBIC)))
    if lay.grid == (0, 0):
        return
    cols, rows = lay.grid
    refined = img.resize(lay.canvas_size, Image.BICUBIC)
    cw, ch = lay.tile_sizes[0]
    for k, t in enumerate(tiles[:-1]):
        j, i = divmod(k, cols)
        assert np.array_equal(t, np.asarray(refined.crop((i * cw, j * ch, (i + 1) * cw, (j + 1) * ch))))


def test_v1_pixels_are_lanczos_crops():
    img = image(1000, 700)
    tiles, lay = slicers.build({"name": "uhd", "variant": "v1"}).slice(img)
    cols, rows = lay.grid
    box = lay.meta["crops"][0]
    assert np.array_equal(tiles[0], np.asarray(img.crop(box).resize(lay.tile_sizes[0], Image.LANCZOS)))
    assert np.array_equal(tiles[-1], np.asarray(img.resize(lay.tile_sizes[-1], Image.LANCZOS)))
    assert lay.meta["crops"][-1][2:] == (1000, 700)  # the last crop takes the remainder


def test_eval_resize_long_side():
    lay = slicers.build({"name": "uhd", "resize_long_side": 1024}).plan((2048, 512))
    assert lay.meta["source_size"] == (1024, 256) and lay.image_size == (2048, 512)
    assert lay.grid == uhd_grid((1024, 256))


def test_processor_zero_pads_native_tiles():
    import loupe

    ip = loupe.LoupeImageProcessor(slicer={"name": "uhd"})
    img = image(1008, 672)
    pv = ip(img)["pixel_values"]
    assert tuple(pv.shape) == (7, 3, 336, 406)  # 6 slices of 336x336 + the 406x266 overview, padded to the max
    tiles, _ = slicers.build({"name": "uhd"}).slice(img)
    valid = slicers.normalize(tiles[0][None], ip.image_mean, ip.image_std)[0]
    assert np.array_equal(pv[0, :, :, :336].numpy(), valid)  # the true slice, top-left; the rest is padding


def test_square_ties_pick_one_column_two_rows():
    """Every square from 337 to 475 px has multiple = 2: grids [1, 2] and [2, 1] tie exactly (|log 1 - log 2|).
    Official ``slice_image_minicpm`` keeps the first strict minimum, [1, 2], and ``split_to_patches`` reads
    grid[0] as the number of columns: one column, two rows (top half, bottom half)."""
    s = slicers.build({"name": "uhd"})
    for side in range(337, 476):
        lay = s.plan((side, side))
        assert lay.grid == (1, 2), side
        (cw, ch) = lay.tile_sizes[0]
        assert cw > ch and lay.canvas_size == (cw, 2 * ch), side  # wide slices stacked vertically
        assert lay.boxes[0][1] == 0 and lay.boxes[1][1] == pytest.approx(side / 2), side
    assert s.plan((336, 336)).grid == (0, 0) and s.plan((476, 476)).grid != (1, 2)
    lay = s.plan((400, 400))  # cell (392, 196) -> find_best_resize(up): h = int(336/sqrt 2) = 237, w = 474
    assert lay.tile_sizes == ((462, 224), (462, 224), (336, 336))
    tiles, _ = s.slice(image(400, 400))
    assert [t.shape for t in tiles] == [(224, 462, 3), (224, 462, 3), (336, 336, 3)]
