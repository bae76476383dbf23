"""Pure-torch RoI-align (loupe.ops.roi_align) against a loop-by-loop transcription of torchvision's CPU kernel."""

import math

import torch

from loupe.ops.roi_align import roi_align, roi_align_grid


def bilinear(f, y, x):
    """torchvision ``bilinear_interpolate`` on one (H, W) map."""
    h, w = f.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    if yl >= h - 1:
        yh = yl = h - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= w - 1:
        xh = xl = w - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    hy, hx = 1 - ly, 1 - lx
    return hy * hx * f[yl, xl] + hy * lx * f[yl, xh] + ly * hx * f[yh, xl] + ly * lx * f[yh, xh]


def reference(feat, boxes, out_hw, scale=1.0, ratio=-1, aligned=False):
    """Loops over RoIs, channels, bins and samples, as ``roi_align_forward_kernel_impl``."""
    ph_n, pw_n = out_hw
    k = boxes.shape[0]
    c = feat.shape[1]
    out = torch.zeros(k, c, ph_n, pw_n, dtype=torch.float64)
    off = 0.5 if aligned else 0.0
    for r in range(k):
        b, x1, y1, x2, y2 = boxes[r].tolist()
        sx, sy, ex, ey = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rw, rh = ex - sx, ey - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_n, rw / pw_n
        gh = ratio if ratio > 0 else math.ceil(rh / ph_n)
        gw = ratio if ratio > 0 else math.ceil(rw / pw_n)
        count = max(gh * gw, 1)
        for ch in range(c):
            f = feat[int(b), ch].double().numpy()
            for ph in range(ph_n):
                for pw in range(pw_n):
                    acc = 0.0
                    for iy in range(gh):
                        y = sy + ph * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            x = sx + pw * bw + (ix + 0.5) * bw / gw
                            acc += bilinear(f, y, x)
                    out[r, ch, ph, pw] = acc / count
    return out


def random_boxes(g, n_img, h, w, k):
    rows = []
    for _ in range(k):
        x1, x2 = sorted((torch.rand(2, generator=g) * (w + 4) - 2).tolist())  # may leave the map
        y1, y2 = sorted((torch.rand(2, generator=g) * (h + 4) - 2).tolist())
        rows.append([float(torch.randint(n_img, (1,), generator=g)), x1, y1, x2, y2])
    rows += [[0, 0.0, 0.0, float(w), float(h)], [1, w - 0.3, h - 0.7, float(w), float(h)],  # whole map, border
             [0, 2.25, 1.5, 2.5, 1.75], [1, -0.9, -0.85, 0.6, 0.4], [0, 0.0, 0.0, w / 7, h / 7]]  # tiny, corner
    return torch.tensor(rows)


def test_matches_reference_kernel():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 7, 9, generator=g)
    boxes = random_boxes(g, 2, 7, 9, 12)
    for out_hw, ratio, aligned, scale in [((3, 3), -1, False, 1.0), ((2, 4), -1, False, 1.0),
                                          ((3, 2), 2, False, 0.5), ((2, 3), -1, True, 1.0)]:
        got = roi_align(feat, boxes, out_hw, scale, ratio, aligned)
        ref = reference(feat, boxes, out_hw, scale, ratio, aligned)
        assert got.shape == ref.shape
        torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


def test_list_boxes_and_grid_version_agree():
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 4, 19, 29, generator=g)  # the 1008x672 overview's 19 x 29 grid
    h, w = 19, 29
    rows = [(i * h / 12, i * h / 12 + h / 12) for i in range(12)]
    cols = [(j * w / 12, j * w / 12 + w / 12) for j in range(12)]
    boxes = torch.tensor([[n, c[0], r[0], c[1], r[1]] for n in range(2) for r in rows for c in cols])
    ref = reference(feat, boxes, (2, 3))
    got = roi_align_grid(feat.permute(0, 2, 3, 1), rows, cols, (2, 3))  # (N, 12, 12, 2, 3, C)
    torch.testing.assert_close(got.permute(0, 1, 2, 5, 3, 4).reshape(-1, 4, 2, 3).double(), ref, atol=1e-5, rtol=1e-5)
    as_list = roi_align(feat, [boxes[boxes[:, 0] == n, 1:] for n in range(2)], (2, 3))
    torch.testing.assert_close(as_list.double(), ref, atol=1e-5, rtol=1e-5)


def test_gradients_reach_the_features():
    g = torch.Generator().manual_seed(2)
    feat = torch.randn(1, 2, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0, 0.5, 1.25, 5.5, 6.0], [0, 3.0, 3.0, 7.9, 7.9]], dtype=torch.float64)
    out = roi_align(feat, boxes, (2, 2))
    out.sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() > 0
    assert feat.grad[0, :, 0, :].abs().sum() == 0  # row 0 lies outside both boxes' samples
    assert torch.autograd.gradcheck(lambda f: roi_align(f, boxes, (2, 3)), (feat,))
    x = feat.detach().permute(0, 2, 3, 1).clone().requires_grad_(True)
    rows, cols = [(0.0, 4.0), (4.0, 8.0)], [(0.0, 8 / 3), (8 / 3, 16 / 3), (16 / 3, 8.0)]
    assert torch.autograd.gradcheck(lambda t: roi_align_grid(t, rows, cols, (3, 3)), (x,))
