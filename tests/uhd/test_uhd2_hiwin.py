"""Hiwin connector: window locality on every level, pooling/window geometry, MAE sin-cos layout, padding."""

import math

import torch
from torch import nn

from loupe.connectors.hiwin import HiwinConnector, best_pooling_size, sincos_2d, window_intervals


class FixedPyramid(nn.Module):
    """Stands in for the VDIM: returns given level maps, so each level can be perturbed on its own."""

    def __init__(self, levels):
        super().__init__()
        self.levels = levels

    def forward(self, f1, pixels):
        return self.levels


def connector(mask=7, grid=4):
    torch.manual_seed(0)
    return HiwinConnector(HiwinConnector.Config(grid_size=grid, feature_scale_mask=mask), in_dim=8, out_dim=16).eval()


def allowed(lo, hi, size):
    """Pixels an aligned=False RoI-align sample of [lo, hi] can touch (box stretched to >= 1, bilinear +1)."""
    return set(range(max(0, math.floor(lo)), min(size - 1, math.floor(max(hi, lo + 1.0)) + 1) + 1))


def test_each_token_depends_only_on_its_own_windows_on_every_level():
    con, g = connector(mask=7, grid=4), 4
    h, w = 3, 5
    torch.manual_seed(1)
    levels = {lv: torch.randn(1, 8, h * lv, w * lv) for lv in (1, 2, 4)}
    con.upsampler = FixedPyramid(levels)
    f1, px = levels[1].permute(0, 2, 3, 1), torch.zeros(1, 3, 14 * h, 14 * w)
    with torch.no_grad():
        base = con.encode_tiles(f1, px, [(14 * w, 14 * h)])[0]  # (g*g, D)
        for lv, fmap in levels.items():
            rows, cols = window_intervals(h * lv, w * lv, g)
            for y, x in [(0, 0), (h * lv - 1, w * lv - 1), (h * lv // 2, 1), (1, w * lv - 2)]:
                fmap[0, :, y, x] += 5.0
                new = con.encode_tiles(f1, px, [(14 * w, 14 * h)])[0]
                fmap[0, :, y, x] -= 5.0
                changed = {(t // g, t % g) for t in range(g * g) if (new[t] - base[t]).abs().max() > 1e-5}
                ok = {(i, j) for i in range(g) for j in range(g)
                      if y in allowed(*rows[i], h * lv) and x in allowed(*cols[j], w * lv)}
                assert changed, (lv, y, x)
                assert changed <= ok, (lv, y, x, changed - ok)


def test_geometry_helpers():
    assert best_pooling_size(1.0) == (3, 3) and best_pooling_size(29 / 19) == (2, 3)  # (rows, cols)
    assert best_pooling_size(4.0) == (2, 4) and best_pooling_size(0.5) == (4, 2)
    rows, cols = window_intervals(19, 29, 12)
    assert len(rows) == len(cols) == 12 and rows[-1][1] == 19.0 and abs(cols[1][0] - 29 / 12) < 1e-6
    rows16, _ = window_intervals(19, 29, 12, torch.bfloat16)  # the official bf16 runs round the boxes
    assert rows16[1][0] == 1.5859375 and rows[1][0] != rows16[1][0]
    pe = sincos_2d(16, 12).reshape(12, 12, 16)
    assert torch.equal(pe[0, :, :8], pe[5, :, :8])  # first half: the column index only (MAE meshgrid(w, h))
    assert torch.equal(pe[:, 0, 8:], pe[:, 7, 8:])  # second half: the row index only
    assert torch.allclose(pe[0, 3, :4], torch.sin(torch.tensor(3.0) / 10000 ** (torch.arange(4) / 4.0)))


def test_padding_across_tiles_of_different_grids_changes_nothing():
    con = connector(mask=5, grid=4)
    torch.manual_seed(2)
    a, b = torch.randn(1, 4, 4, 8), torch.randn(1, 3, 5, 8)  # 3x3-pooled vs 2x3-pooled windows: 18 vs 12 keys
    pa, pb = torch.randn(1, 3, 56, 56), torch.randn(1, 3, 42, 70)
    px = torch.zeros(2, 3, 56, 70)
    px[0, :, :56, :56], px[1, :, :42, :70] = pa[0], pb[0]
    with torch.no_grad():
        both = con.encode_tiles([a[0], b[0]], px, [(56, 56), (70, 42)])
        torch.testing.assert_close(both[0], con.encode_tiles(a, pa, [(56, 56)])[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(both[1], con.encode_tiles(b, pb, [(70, 42)])[0], atol=1e-5, rtol=1e-5)
    assert both.shape == (2, 16, 16)
