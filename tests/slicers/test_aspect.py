"""``aspect`` (ConvLLaVA any-aspect input) and its ``square`` mode (the released pad-to-square)."""

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from loupe import slicers


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4096), st.integers(1, 4096))
@example(1, 2000)
@example(3000, 20)
def test_plan_properties(w, h):
    lay = slicers.build({"name": "aspect"}).plan((w, h))
    (tw, th), = lay.tile_sizes
    assert tw % 64 == 0 and th % 64 == 0 and tw >= 64 and th >= 64 and max(tw, th) <= 6144
    if max(w, h) / min(w, h) <= 6144 / 1536 - 0.05:  # no long-side cap: the short side is exactly 1536
        assert min(tw, th) == 1536
        assert abs(tw / th - w / h) <= (w / h) * 64 / min(tw, th) + 1e-9  # aspect kept up to one stride


def test_hand_computed():
    s = slicers.build({"name": "aspect"})
    assert s.plan((1008, 672)).tile_sizes == ((2304, 1536),)  # 1008 * 1536 / 672 = 2304 = 36 x 64
    assert s.plan((2048, 512)).tile_sizes == ((6144, 1536),)  # 96 x 24 = 2304 tokens at stride 64
    assert s.plan((1000, 700)).tile_sizes == ((2176, 1536),)  # 2194.3 -> nearest multiple of 64
    assert s.plan((1, 2000)).tile_sizes == ((64, 6144),)  # long side capped at 6144
    assert slicers.build({"name": "aspect", "short_side": 768}).plan((100, 50)).tile_sizes == ((1536, 768),)


def test_pixels_and_square_mode_equals_pad():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8))
    (tile,), lay = slicers.build({"name": "aspect", "short_side": 768}).slice(img)
    assert tile.shape == (768, 1280, 3)
    assert np.array_equal(tile, np.asarray(img.resize((1280, 768), Image.BICUBIC)))
    (sq,), lay = slicers.build({"name": "aspect", "short_side": 768, "mode": "square"}).slice(img)
    (ref,), _ = slicers.build({"name": "pad", "tile_size": 768}).slice(img)
    assert np.array_equal(sq, ref) and lay.content_box == (0, 154, 768, 614)
