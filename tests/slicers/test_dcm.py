"""``dcm`` (INF-LLaVA Dual-perspective Cropping): local tiles, pixel-interleaved global tiles, overview."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from loupe import slicers
from loupe.slicers.dcm import torch_bicubic
from loupe.slicers.geometry import dcm_global_phases, dcm_local_boxes
from loupe.slicers.pad import fill_colour


def image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def check_tiles(s, img):
    """Local tiles reassemble the canvas; global tiles inverse-interleave to it; both cover the same pixels."""
    canvas, _ = s.canvas(img)
    tiles, lay = s.slice(img)
    nw, nh = lay.grid
    t = s.config.tile_size
    n = nw * nh
    assert lay.num_tiles == 2 * n + 1 and all(x.shape == (t, t, 3) for x in tiles)
    assert lay.roles == ("local",) * n + ("global",) * n + ("overview",)
    assert canvas.shape == (nh * t, nw * t, 3)
    local, glob = tiles[:n], tiles[n : 2 * n]
    rebuilt = np.concatenate([np.concatenate(local[r * nw : (r + 1) * nw], axis=1) for r in range(nh)])
    assert np.array_equal(rebuilt, canvas)
    inter = np.empty_like(canvas)
    for k, (j, i) in enumerate(dcm_global_phases((nw, nh))):
        inter[i::nh, j::nw] = glob[k]
    assert np.array_equal(inter, canvas)
    # Eq. 17 literally, for a few pixels: global (i, j) pixel (u, v) = canvas(x = j + u n_W, y = i + v n_H)
    rng = np.random.default_rng(1)
    for _ in range(20):
        k, u, v = rng.integers(n), rng.integers(t), rng.integers(t)
        j, i = dcm_global_phases((nw, nh))[k]
        assert np.array_equal(glob[k][v, u], canvas[i + v * nh, j + u * nw])
    same = np.sort(np.stack(local).reshape(-1, 3), axis=0), np.sort(np.stack(glob).reshape(-1, 3), axis=0)
    assert np.array_equal(*same)  # the same multiset of pixels
    return tiles, lay, canvas


def test_coverage_is_exact():
    for grid in [(3, 3), (2, 5), (1, 1)]:
        t = (7, 5)
        cover_l = np.zeros((grid[1] * t[1], grid[0] * t[0]), int)
        for x0, y0, x1, y1 in dcm_local_boxes(grid, t):
            cover_l[y0:y1, x0:x1] += 1
        cover_g = np.zeros_like(cover_l)
        for j, i in dcm_global_phases(grid):
            cover_g[i :: grid[1], j :: grid[0]] += 1
        assert (cover_l == 1).all() and (cover_g == 1).all()


@pytest.mark.parametrize("size", [(1000, 700), (700, 1000), (1008, 1008), (3, 1)])
def test_official_canvas_is_expand2square_then_1008(size):
    img = image(*size)
    s = slicers.build({"name": "dcm"})
    side = max(size)
    sq = Image.new("RGB", (side, side), fill_colour())
    sq.paste(img, ((side - size[0]) // 2, (side - size[1]) // 2))
    _, lay, canvas = check_tiles(s, img)
    assert lay.grid == (3, 3) and lay.num_tiles == 19 and lay.canvas_size == (1008, 1008)
    assert np.array_equal(canvas, np.asarray(sq.resize((1008, 1008), Image.BICUBIC)))


def test_official_overview_is_torch_bicubic_and_the_centre_phase():
    img = image(900, 600)
    s = slicers.build({"name": "dcm"})
    tiles, lay = s.slice(img)
    canvas, _ = s.canvas(img)
    x = torch.from_numpy(canvas.copy()).permute(2, 0, 1)[None].double()
    ref = F.interpolate(x, size=(336, 336), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(tiles[-1].astype(np.float64), ref)  # exact: taps land on pixels for factor 3
    assert np.array_equal(tiles[-1], tiles[9 + 4])  # = global tile (1, 1) = X[1::3, 1::3]


@pytest.mark.parametrize("shape", [(672, 672, 336, 336), (1000, 700, 336, 336), (50, 40, 112, 90), (30, 30, 7, 11)])
def test_torch_bicubic_matches_torch(shape):
    w, h, ow, oh = shape
    x = np.random.default_rng(0).integers(0, 256, (h, w, 3)).astype(np.float64)
    ref = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=(oh, ow), mode="bicubic", align_corners=False)
    assert np.abs(torch_bicubic(x, oh, ow) - ref[0].permute(1, 2, 0).numpy()).max() < 1e-9


def test_size_option_and_even_factor_overview():
    s = slicers.build({"name": "dcm", "size": 672})
    tiles, lay, canvas = check_tiles(s, image(500, 300))
    assert lay.grid == (2, 2) and lay.num_tiles == 9
    ref = np.clip(np.rint(torch_bicubic(canvas, 336, 336)), 0, 255).astype(np.uint8)
    assert np.array_equal(tiles[-1], ref)
    pil = slicers.build({"name": "dcm", "overview": "pil"}).slice(image(500, 300))[0][-1]
    assert pil.shape == (336, 336, 3)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4096), st.integers(1, 4096))
@example(1, 2000)
@example(3000, 20)
@example(4096, 4096)
def test_official_properties(w, h):
    lay = slicers.build({"name": "dcm"}).plan((w, h))
    assert lay.grid == (3, 3) and lay.tile_sizes == ((336, 336),) * 19
    x0, y0, x1, y1 = lay.content_box
    assert 0 <= x0 <= x1 <= 1008 and 0 <= y0 <= y1 <= 1008 and (x1 - x0 == 1008 or y1 - y0 == 1008)


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 2500), st.integers(1, 2500))
@example(1, 2000)
@example(3000, 20)
def test_paper_layout_pixels(w, h):
    s = slicers.build({"name": "dcm", "layout": "paper", "max_grid": 6})
    _, lay, _ = check_tiles(s, Image.new("RGB", (w, h), (10, 200, 30)) if w * h > 2e6 else image(w, h))
    rw, rh = lay.meta["resized_size"]
    nw, nh = lay.grid
    assert (nw, nh) == (rw // 336, rh // 336) and 1 <= nw <= 6 and 1 <= nh <= 6  # Eq. 9-10 on W_h x H_h


def test_paper_layout_native_resolution():
    lay = slicers.build({"name": "dcm", "layout": "paper"}).plan((1000, 700))
    assert lay.grid == (2, 2) and lay.canvas_size == (672, 672) and lay.meta["resized_size"] == (1000, 700)
    lay = slicers.build({"name": "dcm", "layout": "paper"}).plan((100, 50))  # upscaled: short side -> 336
    assert lay.grid == (2, 1) and lay.meta["resized_size"] == (672, 336)


def test_local_boxes_are_row_major_on_a_non_square_grid():
    """Exact boxes on a 3 x 2 grid (paper layout, 1008x672 image): rows and columns swapped, or a column-major
    order, fail here (a square grid cannot tell them apart)."""
    t = 336
    assert dcm_local_boxes((3, 2), (t, t)) == [
        (0, 0, 336, 336), (336, 0, 672, 336), (672, 0, 1008, 336),
        (0, 336, 336, 672), (336, 336, 672, 672), (672, 336, 1008, 672)]
    s = slicers.build({"name": "dcm", "layout": "paper"})
    img = image(1008, 672)
    tiles, lay = s.slice(img)
    assert lay.grid == (3, 2) and lay.canvas_size == (1008, 672)
    expected = [(336.0 * c, 336.0 * r, 336.0 * (c + 1), 336.0 * (r + 1)) for r in range(2) for c in range(3)]
    assert list(lay.boxes[:6]) == expected
    a = np.asarray(img)
    for k, (x0, y0, x1, y1) in enumerate(expected):  # each local tile is the pixels of its box
        assert np.array_equal(tiles[k], a[int(y0):int(y1), int(x0):int(x1)])
    # the global tiles and the overview cover the whole image
    assert set(lay.boxes[6:]) == {(0.0, 0.0, 1008.0, 672.0)}


def test_official_boxes_of_a_wide_image_are_exact():
    """1000x500, official: square side 1000 pasted at y0 = 250, 1008 canvas -> f = 1000/1008 image px per canvas px."""
    lay = slicers.build({"name": "dcm"}).plan((1000, 500))
    f = 1000 / 1008
    expected = [(c * 336 * f, r * 336 * f - 250, (c + 1) * 336 * f, (r + 1) * 336 * f - 250)
                for r in range(3) for c in range(3)]
    assert lay.boxes[:9] == tuple(tuple(float(v) for v in b) for b in expected)
    assert lay.content_box == (0, 252, 1008, 756)
