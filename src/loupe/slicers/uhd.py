"""``uhd`` — LLaVA-UHD adaptive slicing: native-aspect slices + an overview, no padding anywhere.

``variant="v2"`` (default; LLaVA-UHD v2 paper arXiv 2412.13871 §3.1, official ``slice_image_minicpm`` in
``llava/slice_process.py`` of the LLaVA-UHD-v2 branch, the MiniCPM-V algorithm; also the current v1 code, branch
``LLaVA-UHD-v1``):

* ``multiple = min(ceil(W*H / 336^2), max_slice_nums)``; ``multiple <= 1``: **no slicing**, the only image is
  ``find_best_resize(up=True)`` (native aspect, area ~336^2, *upscaled* if small).
* else the grid (cols, rows) minimising ``|log(W/H) - log(cols/rows)|`` over slice counts {m-1, m, m+1}
  (first strict minimum, in floats: for 2048x512 |log 4 - log 8| is 2e-16 below |log 4 - log 2|, so the
  later 8x1 beats 4x2); the whole image is resized (bicubic) to ``get_refine_size`` (cell =
  ``find_best_resize(up=True)`` of the ``ensure_divide``-d cell) and cut into equal cells, row-major; the
  overview is ``find_best_resize(up=False)`` (area <= ~336^2).
* sides are multiples of ``patch_size`` (14), the aspect is the image's: tiles are *not* 336x336 (the
  processor zero-pads them to the batch's largest; ``Layout.tile_sizes`` keeps each true size).

``max_slice_nums``: 9 = official evaluation (``model_vqa_loader.py``, the default here), 7 = training.
The official evaluation also resizes to long side 1024 first (``resize_image_keep_ratio``): ``resize_long_side``.

``variant="v1"`` (the ECCV 2024 paper, arXiv 2403.11703 §3.1, as fixed in ``llava_uhd/slice_logic.py`` of
ParadoxZW/LLaVA-UHD-Better):
N = min(ceil(WH/336^2), 6), candidates {N, N+1} (N <= 2) or {N-1, N, N+1} including 1x1, so there is always
>= 1 slice; slices are ``W // cols`` x ``H // rows`` crops (the last column/row takes the remainder), each
resized (LANCZOS) by ``adapt_size`` to <= 576 patches of native aspect; the overview likewise.

Order (official v2 tokens: ``[slice_1, sep_1, ..., slice_n, sep_n, overview]``): slices row-major, then the
overview LAST. ``layout.meta["separators"]``: one id per slice, ``comma_id`` (29892, Llama ',') inside a row,
``newline_id`` (13, Llama '\\n') at a row end. [IMPORTANT] the ids are hard-coded officially even for Qwen2,
where they are other tokens: replicate the ids, not the strings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..images import DEFAULT_MAX_PIXELS, MAX_CANVAS_PIXELS, to_rgb
from ..registry import SLICERS
from .base import Layout, Slicer
from .geometry import (adapt_size, check_canvas, check_size, find_best_resize, uhd_grid, uhd_refine_size, uhd_separators,
                       uhd_v1_grid)
from ..validation import bounded


def keep_ratio_size(size, max_size: int) -> tuple[int, int]:
    """Official ``resize_image_keep_ratio``: long side -> ``max_size``, the other truncated (int)."""
    w, h = size
    if w > h:
        return max_size, max(1, int((max_size / w) * h))
    return max(1, int((max_size / h) * w)), max_size


@SLICERS.register("uhd")
class UHDSlicer(Slicer):
    @dataclass
    class Config:
        tile_size: int = bounded(336, min=1)  # the official ``scale_resolution``
        patch_size: int = bounded(14, min=1)
        max_slice_nums: int = bounded(9, min=1)  # 9 official evaluation, 7 official training
        variant: str = "v2"  # "v2" (MiniCPM-V code, official) | "v1" (ECCV paper)
        never_split: bool = False  # official flag: overview only (pretraining's ``--single True``)
        resize_long_side: int = bounded(0, min=0)  # >0: official eval's resize_image_keep_ratio first (1024; 1536 textvqa)
        comma_id: int = bounded(29892, min=0)
        newline_id: int = bounded(13, min=0)
        max_pixels: int | None = bounded(DEFAULT_MAX_PIXELS, min=1)
        max_canvas_pixels: int | None = bounded(MAX_CANVAS_PIXELS, min=1)  # cap on the refined canvas and on every tile

        def __post_init__(self):
            if self.variant not in ("v1", "v2"):
                raise ValueError(f"variant must be 'v1' or 'v2', got {self.variant!r}")
            if self.max_slice_nums < 1 or self.tile_size % self.patch_size:
                raise ValueError("max_slice_nums must be >= 1 and tile_size a multiple of patch_size")

    def plan(self, image_size) -> Layout:
        """The layout; :class:`LoupeError` when the refined canvas or a tile would be over ``max_canvas_pixels``
        (a 1 x 2^26 strip: 14 x 917,504 px slices on a 14 x 8,257,536 canvas), before ``slice`` allocates it."""
        layout = self._plan(image_size)
        cap, grid = self.config.max_canvas_pixels, layout.grid
        if self.config.variant == "v2" and grid != (0, 0):
            check_canvas("uhd", layout.image_size, layout.canvas_size, cap, f"refined canvas ({grid[0]}x{grid[1]} grid)")
        for i in sorted({layout.tile_sizes.index(s) for s in layout.tile_sizes}):
            check_canvas("uhd", layout.image_size, layout.tile_sizes[i], cap, f"{layout.roles[i]} tile")
        return layout

    def _plan(self, image_size) -> Layout:
        c = self.config
        w, h = check_size(image_size, c.max_pixels)
        sw, sh = keep_ratio_size((w, h), c.resize_long_side) if c.resize_long_side else (w, h)
        meta = {"source_size": (sw, sh), "variant": c.variant}
        if c.variant == "v1":
            cols, rows = uhd_v1_grid((sw, sh), c.tile_size)
            cell_w, cell_h = max(sw // cols, 1), max(sh // rows, 1)
            crops = [(i * cell_w, j * cell_h, sw if i == cols - 1 else (i + 1) * cell_w,
                      sh if j == rows - 1 else (j + 1) * cell_h) for j in range(rows) for i in range(cols)]
            maxp = (c.tile_size // c.patch_size) ** 2
            sizes = [adapt_size((cell_w, cell_h), c.patch_size, maxp)] * len(crops)
            over = adapt_size((sw, sh), c.patch_size, maxp)
            meta["crops"] = tuple(crops)  # boxes in the (pre-resized) source image
            canvas = (sw, sh)
        elif c.never_split or uhd_grid((sw, sh), c.max_slice_nums, c.tile_size) is None:
            over = find_best_resize((sw, sh), c.tile_size, c.patch_size, allow_upscale=True)
            return Layout(image_size=(w, h), tile_sizes=(over,), roles=("overview",), grid=(0, 0),
                          canvas_size=over, content_box=(0, 0) + over, boxes=((0.0, 0.0, float(w), float(h)),),
                          meta={**meta, "separators": []})
        else:
            cols, rows = uhd_grid((sw, sh), c.max_slice_nums, c.tile_size)
            canvas = uhd_refine_size((sw, sh), (cols, rows), c.tile_size, c.patch_size)
            cw, ch = canvas[0] // cols, canvas[1] // rows
            crops = [(i * cw, j * ch, (i + 1) * cw, (j + 1) * ch) for j in range(rows) for i in range(cols)]
            sizes = [(cw, ch)] * len(crops)
            over = find_best_resize((sw, sh), c.tile_size, c.patch_size, allow_upscale=False)
        fx, fy = w / canvas[0], h / canvas[1]
        boxes = [(x0 * fx, y0 * fy, x1 * fx, y1 * fy) for x0, y0, x1, y1 in crops] + [(0.0, 0.0, float(w), float(h))]
        return Layout(
            image_size=(w, h),
            tile_sizes=tuple(sizes) + (over,),
            roles=("local",) * len(sizes) + ("overview",),
            grid=(cols, rows),
            canvas_size=canvas,
            content_box=(0, 0) + tuple(canvas),
            boxes=tuple(boxes),
            meta={**meta, "separators": uhd_separators((cols, rows), c.comma_id, c.newline_id)},
        )

    def slice(self, image: Image.Image):
        c = self.config
        layout = self.plan(image.size)
        src = to_rgb(image)
        if c.resize_long_side:
            src = _resize(image, layout.meta["source_size"], Image.BICUBIC)
        if layout.grid == (0, 0):
            return [np.asarray(_resize(src, layout.tile_sizes[0], Image.BICUBIC))], layout
        if c.variant == "v1":
            tiles = [np.asarray(_resize(src.crop(b), s, Image.LANCZOS))
                     for b, s in zip(layout.meta["crops"], layout.tile_sizes)]
            return tiles + [np.asarray(_resize(src, layout.tile_sizes[-1], Image.LANCZOS))], layout
        cols, rows = layout.grid
        cw, ch = layout.tile_sizes[0]
        refined = np.asarray(_resize(src, layout.canvas_size, Image.BICUBIC))
        cells = refined.reshape(rows, ch, cols, cw, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, ch, cw, 3)
        return list(cells) + [np.asarray(_resize(src, layout.tile_sizes[-1], Image.BICUBIC))], layout


def _resize(img: Image.Image, size, resample) -> Image.Image:
    size = (int(size[0]), int(size[1]))
    return img if img.size == size else img.resize(size, resample=resample)
