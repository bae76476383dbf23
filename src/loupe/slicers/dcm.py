"""``dcm`` — INF-LLaVA's Dual-perspective Cropping Module (INF-LLaVA paper arXiv 2407.16198 §4.2, Eq. 9-17;
official
``LlavaMetaForCausalLM.encode_images`` in ``INF_llava/model/llava_arch.py``).

``layout="official"`` (default): ``expand2square`` with the mean colour (LLaVA-1.5 arithmetic, reused from
:mod:`.pad`), bicubic resize to ``size`` (1008 = 3 x 336; any multiple of ``tile_size``, n = size / tile).
``layout="paper"``: the paper's general form on the image's own resolution W_h x H_h: n_W = floor(W_h/W_l),
n_H = floor(H_h/H_l) (Eq. 9-10), the canvas being the top-left n_W*W_l x n_H*H_l crop (Eq. 13 crops from
the origin; the remainder is dropped). An image with a side < ``tile_size`` is first *upscaled* (bicubic,
aspect kept) so that side equals the tile; ``max_grid`` caps n by downscaling the image first (a side that
then falls below one tile is stretched to it).

On the canvas X (H_c, W_c, 3), vectorised (reshape/transpose, no loops over pixels):

* local tiles: contiguous crops ``X[r*t:(r+1)*t, c*t:(c+1)*t]``, row-major (Eq. 11-13);
* global tiles: stride phases ``X[i::n_H, j::n_W]``, i (row phase) major (Eq. 16-17: tile (i, j) pixel
  (u, v) = X(x = j + u*n_W, y = i + v*n_H)); each covers the whole canvas;
* the overview: the canvas resized to ``tile_size`` x ``tile_size``.

Order as the official code: n_W*n_H local, n_W*n_H global, overview (9 + 9 + 1 = 19 at 1008).

[IMPORTANT] The official overview is ``F.interpolate(X, 336, mode="bicubic", align_corners=False)`` of the
normalised 1008 tensor: torch's bicubic *without antialiasing*. For an odd integer factor n every output
sample lands exactly on an input pixel, so it **equals the centre-phase global tile** ``X[n//2::n, n//2::n]``
(e.g. ``X[1::3, 1::3]``), not a smoothed thumbnail. ``overview="torch"`` reproduces it (exact for odd n; for
other factors computed in float and rounded to uint8 before normalisation, a <= 0.5/255 deviation);
``overview="pil"`` is PIL's antialiased bicubic resize instead.

Memory: ``plan`` refuses (:class:`~loupe.errors.LoupeError`) an image whose expand2square canvas (official) or
resized image (paper) is over ``max_canvas_pixels`` (default :data:`loupe.images.MAX_CANVAS_PIXELS`), before
``canvas`` allocates it (a 40000x1 strip needs a 1.6 G pixel square officially, a 336 x 13.4 M pixel image in
the paper layout); the official tiles are PIL resamples of that square, not reproducible exactly without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..images import CLIP_MEAN, DEFAULT_MAX_PIXELS, MAX_CANVAS_PIXELS, to_rgb
from ..registry import SLICERS
from .base import Layout, Slicer
from .geometry import check_canvas, check_size, dcm_grid
from .pad import expand2square, square_paste_offset
from ..validation import bounded


def torch_bicubic(x: np.ndarray, out_h: int, out_w: int, a: float = -0.75) -> np.ndarray:
    """(H, W, C) -> float64 (out_h, out_w, C), as ``F.interpolate(mode="bicubic", align_corners=False)``
    (no antialias; source = (dst + 0.5) * in/out - 0.5; taps clamped at the border)."""

    def weights(n_in: int, n_out: int):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.floor(src).astype(np.int64)
        t = (src - i0)[:, None]
        d = np.abs(np.concatenate([t + 1, t, 1 - t, 2 - t], axis=1))  # distances to taps i0-1 .. i0+2
        w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
        idx = np.clip(i0[:, None] + np.arange(-1, 3), 0, n_in - 1)
        return idx, w

    iy, wy = weights(x.shape[0], out_h)
    ix, wx = weights(x.shape[1], out_w)
    cols, ix = np.unique(ix, return_inverse=True)  # only the <= 4 * out_w columns the second pass reads
    rows = np.einsum("ok,okwc->owc", wy, x[:, cols][iy].astype(np.float64))
    return np.einsum("pk,opkc->opc", wx, rows[:, ix.reshape(out_w, 4)])


@SLICERS.register("dcm")
class DCMSlicer(Slicer):
    @dataclass
    class Config:
        tile_size: int = bounded(336, min=1)
        size: int = bounded(1008, min=1)  # official canvas side (a multiple of tile_size); layout="official" only
        layout: str = "official"  # "official" (pad to square, resize to size) | "paper" (native W_h x H_h)
        max_grid: int = bounded(0, min=0)  # layout="paper": cap on n_W and n_H (0 = none)
        overview: str = "torch"  # "torch" (official F.interpolate, no antialias) | "pil"
        fill: tuple = bounded(CLIP_MEAN, min=0.0, max=1.0)  # expand2square colour, int(x * 255)
        max_pixels: int | None = bounded(DEFAULT_MAX_PIXELS, min=1)
        max_canvas_pixels: int | None = bounded(MAX_CANVAS_PIXELS, min=1)  # cap on the padded square / resized image (None: none)

        def __post_init__(self):
            if self.layout not in ("official", "paper"):
                raise ValueError(f"layout must be 'official' or 'paper', got {self.layout!r}")
            if self.overview not in ("torch", "pil"):
                raise ValueError(f"overview must be 'torch' or 'pil', got {self.overview!r}")
            if self.size <= 0 or self.size % self.tile_size:
                raise ValueError(f"size {self.size} must be a positive multiple of tile_size {self.tile_size}")

    def _source(self, w: int, h: int):
        """(resized image size, canvas size): the image is resized to the first, the canvas cut from it."""
        t, c = self.config.tile_size, self.config
        if c.layout == "official":
            return (c.size, c.size), (c.size, c.size)
        s = max(1.0, t / min(w, h))  # upscale so the short side is at least one tile
        if c.max_grid and max(w, h) * s >= (c.max_grid + 1) * t:
            s = c.max_grid * t / max(w, h)
        rw, rh = max(t, math.floor(w * s + 1e-6)), max(t, math.floor(h * s + 1e-6))  # 1e-6: float noise
        nw, nh = dcm_grid((rw, rh), (t, t))
        return (rw, rh), (nw * t, nh * t)

    def plan(self, image_size) -> Layout:
        w, h = check_size(image_size, self.config.max_pixels)
        t = self.config.tile_size
        (rw, rh), (cw, ch) = self._source(w, h)
        nw, nh = cw // t, ch // t
        cap = self.config.max_canvas_pixels  # the buffers canvas() allocates, checked before it does
        if self.config.layout == "official" and w != h:
            side = max(w, h)
            check_canvas("dcm", (w, h), (side, side), cap, "expand2square canvas")
        check_canvas("dcm", (w, h), (rw, rh), cap, "resized image")
        if self.config.layout == "official":  # canvas px -> square px (* side/size) -> image px (- offset)
            side, x0, y0 = square_paste_offset(w, h)
            f = side / cw
            to_img = lambda x, y: (x * f - x0, y * f - y0)  # noqa: E731
            content = (round(x0 / f), round(y0 / f), round((x0 + w) / f), round((y0 + h) / f))
        else:
            to_img = lambda x, y: (x * w / rw, y * h / rh)  # noqa: E731
            content = (0, 0, cw, ch)
        local = []
        for r in range(nh):
            for c in range(nw):
                local.append(to_img(c * t, r * t) + to_img((c + 1) * t, (r + 1) * t))
        whole = to_img(0, 0) + to_img(cw, ch)
        n = nw * nh
        return Layout(
            image_size=(w, h),
            tile_sizes=((t, t),) * (2 * n + 1),
            roles=("local",) * n + ("global",) * n + ("overview",),
            grid=(nw, nh),
            canvas_size=(cw, ch),
            content_box=content,
            boxes=tuple(tuple(float(v) for v in b) for b in local + [whole] * (n + 1)),
            meta={"resized_size": (rw, rh)},
        )

    def canvas(self, image: Image.Image) -> tuple[np.ndarray, Layout]:
        """The (H_c, W_c, 3) uint8 canvas the tiles are cut from, and the layout."""
        layout = self.plan(image.size)
        image = to_rgb(image)
        cw, ch = layout.canvas_size
        if self.config.layout == "official":
            image = expand2square(image, self.config.fill)
        rsz = tuple(layout.meta["resized_size"])
        if image.size != rsz:
            image = image.resize(rsz, resample=Image.BICUBIC)
        return np.asarray(image)[:ch, :cw], layout

    def slice(self, image: Image.Image):
        x, layout = self.canvas(image)
        t = self.config.tile_size
        nw, nh = layout.grid
        local = x.reshape(nh, t, nw, t, 3).transpose(0, 2, 1, 3, 4).reshape(nh * nw, t, t, 3)
        glob = x.reshape(t, nh, t, nw, 3).transpose(1, 3, 0, 2, 4).reshape(nh * nw, t, t, 3)
        if self.config.overview == "pil":
            over = np.asarray(Image.fromarray(x).resize((t, t), resample=Image.BICUBIC))
        elif nw % 2 == 1 and nh % 2 == 1:  # exact: every bicubic tap lands on a pixel (module docstring)
            over = x[nh // 2 :: nh, nw // 2 :: nw]
        else:
            over = np.clip(np.rint(torch_bicubic(x, t, t)), 0, 255).astype(np.uint8)
        return list(local) + list(glob) + [np.ascontiguousarray(over)], layout
