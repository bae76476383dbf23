"""RoI-align in pure torch, with ``torchvision.ops.roi_align`` semantics, as two small matrix products.

RoIAlign (He et al., Mask R-CNN) exactly as torchvision's kernel computes it (``csrc/ops/cpu/roi_align_kernel.cpp``,
float path), which LLaVA-UHD v2's Hiwin transformer calls with ``spatial_scale=1, sampling_ratio=-1,
aligned=False`` (``AdaptSpatialResampler.forward_with_featup`` in
``llava/model/multimodal_projector/adapt_spatial_resampler.py``, branch ``LLaVA-UHD-v2`` of thunlp/LLaVA-UHD):

* a RoI (x1, y1, x2, y2) is scaled by ``spatial_scale`` (and shifted by -0.5 when ``aligned``); its size is
  ``x2 - x1``, **stretched to at least 1 px when not aligned**; bin = size / pooled;
* the sampling grid of every bin is ``sampling_ratio`` if > 0, else **adaptive per RoI**: ceil(size / pooled);
* sample i of bin p sits at ``start + p * bin + (i + .5) * bin / grid``; bilinear interpolation with the kernel's
  border rules: a sample with y < -1 or y > H (or x likewise) is 0, y <= 0 clamps to 0, a sample whose low row is
  >= H - 1 snaps to the last row;
* a bin is the mean of its grid_h x grid_w samples (out-of-range samples count, as zeros).

Every rule acts on y and x separately, so one RoI's output is ``A_y @ F @ A_x^T`` per channel, with ``A_y``
(pooled_h, H) and ``A_x`` (pooled_w, W) holding the grid-averaged bilinear weights (:func:`axis_weights`). Same
arithmetic as the kernel with the sums reordered (differences ~1e-7); differentiable in the features (boxes are
data, no gradient, like torchvision's); no gather, no compiled extension. The weights are built on the CPU from
the box numbers, so the feature map may live on any device, ``meta`` included (FLOP counting).
:func:`roi_align_grid` serves boxes that form a grid (rows x columns sharing their y / x intervals, as Hiwin's
12 x 12 windows): all windows of a map in two einsums.

Shapes: ``roi_align(input (N, C, H, W), boxes (K, 5) rows [batch, x1, y1, x2, y2] or a list of (K_i, 4)) ->
(K, C, ph, pw)``; ``roi_align_grid(x (N, H, W, C) channels last, rows [(y1, y2)] * R, cols [(x1, x2)] * Q,
(ph, pw)) -> (N, R, Q, ph, pw, C)``.

[IMPORTANT] fidelity traps: ``aligned=False`` (no half-pixel shift, RoIs < 1 px stretched); the adaptive grid
uses float32 arithmetic like the kernel (ceil(size / pooled) decides how many samples a bin averages).
"""

from __future__ import annotations

from typing import Sequence

import torch


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def axis_weights(starts, ends, pooled: int, size: int, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                 aligned: bool = False) -> torch.Tensor:
    """(K, pooled, size) float32 CPU weights: row p of RoI k averages the bilinear weights of its bin's samples
    along one axis (box edges ``starts[k]``..``ends[k]`` in input coordinates, map length ``size``)."""
    s = torch.as_tensor(starts, dtype=torch.float32, device="cpu").reshape(-1)
    e = torch.as_tensor(ends, dtype=torch.float32, device="cpu").reshape(-1)
    off = 0.5 if aligned else 0.0
    s, e = s * spatial_scale - off, e * spatial_scale - off
    length = e - s
    if not aligned:
        length = length.clamp(min=1.0)
    bin_ = length / pooled
    k = s.shape[0]
    if sampling_ratio > 0:
        grid = torch.full((k,), sampling_ratio, dtype=torch.long, device="cpu")
    else:
        grid = torch.ceil(length / pooled).long()
    g = max(int(grid.max()), 1) if k else 1
    p = torch.arange(pooled, dtype=torch.float32, device="cpu")[None, :, None]
    i = torch.arange(g, dtype=torch.float32, device="cpu")[None, None, :]
    gf = grid.clamp(min=1).to(torch.float32)[:, None, None]
    pos = s[:, None, None] + p * bin_[:, None, None] + (i + 0.5) * bin_[:, None, None] / gf  # (K, P, G)
    valid = (i < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)
    y = pos.clamp(min=0.0)
    low = y.floor().long()
    snap = low >= size - 1
    low = torch.where(snap, torch.full_like(low, size - 1), low)
    high = torch.where(snap, low, low + 1)
    y = torch.where(snap, low.to(torch.float32), y)
    ly = y - low.to(torch.float32)
    w = valid.to(torch.float32) / gf
    out = torch.zeros(k, pooled, size, dtype=torch.float32, device="cpu")
    out.scatter_add_(2, low.clamp(0, size - 1), (1.0 - ly) * w)
    out.scatter_add_(2, high.clamp(0, size - 1), ly * w)
    return out


def _boxes_tensor(boxes) -> torch.Tensor:
    if isinstance(boxes, (list, tuple)):
        rows = [torch.cat([torch.full((b.shape[0], 1), float(i), device="cpu"),
                           torch.as_tensor(b, dtype=torch.float32).cpu()], 1)
                for i, b in enumerate(boxes)]
        return torch.cat(rows, 0) if rows else torch.zeros(0, 5, device="cpu")
    b = torch.as_tensor(boxes).detach().to("cpu", torch.float32)
    if b.ndim != 2 or b.shape[1] != 5:
        raise ValueError(f"boxes must be (K, 5) [batch, x1, y1, x2, y2] or a list of (K_i, 4), got {tuple(b.shape)}")
    return b


def roi_align(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> torch.Tensor:
    """``torchvision.ops.roi_align`` in pure torch: (N, C, H, W) features, boxes -> (K, C, ph, pw)."""
    ph, pw = _pair(output_size)
    n, c, h, w = input.shape
    b = _boxes_tensor(boxes)
    ay = axis_weights(b[:, 2], b[:, 4], ph, h, spatial_scale, sampling_ratio, aligned)
    ax = axis_weights(b[:, 1], b[:, 3], pw, w, spatial_scale, sampling_ratio, aligned)
    ay, ax = ay.to(input.device, input.dtype), ax.to(input.device, input.dtype)
    batch = b[:, 0].long().tolist()
    parts, order = [], []
    for bi in sorted(set(batch)):
        idx = [k for k, v in enumerate(batch) if v == bi]
        sel = torch.tensor(idx, dtype=torch.long, device="cpu")
        t = torch.einsum("kpy,cyx->kcpx", ay[sel.to(ay.device)], input[bi])
        parts.append(torch.einsum("kcpx,kqx->kcpq", t, ax[sel.to(ax.device)]))
        order += idx
    if not parts:
        return input.new_zeros(0, c, ph, pw)
    out = torch.cat(parts, 0)
    inv = torch.empty(len(order), dtype=torch.long, device="cpu")
    inv[torch.tensor(order, device="cpu")] = torch.arange(len(order), device="cpu")
    return out[inv.to(out.device)]


def roi_align_grid(x: torch.Tensor, rows: Sequence[tuple[float, float]], cols: Sequence[tuple[float, float]],
                   output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                   aligned: bool = False) -> torch.Tensor:
    """RoI-align of every box (cols[j] x rows[i]) of a grid on a channels-last map.

    ``x`` (N, H, W, C); ``rows`` the (y1, y2) of each grid row, ``cols`` the (x1, x2) of each column ->
    (N, R, Q, ph, pw, C), equal to :func:`roi_align` with the boxes ``[x1_j, y1_i, x2_j, y2_i]``.
    """
    ph, pw = _pair(output_size)
    _, h, w, _ = x.shape
    ay = axis_weights([r[0] for r in rows], [r[1] for r in rows], ph, h, spatial_scale, sampling_ratio, aligned)
    ax = axis_weights([q[0] for q in cols], [q[1] for q in cols], pw, w, spatial_scale, sampling_ratio, aligned)
    t = torch.einsum("rpy,nyxc->nrpxc", ay.to(x.device, x.dtype), x)
    return torch.einsum("nrpxc,qsx->nrqpsc", t, ax.to(x.device, x.dtype))
