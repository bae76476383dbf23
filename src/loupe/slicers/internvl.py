"""``internvl`` — InternVL 1.5 / 2 / 2.5 / 3 dynamic aspect-ratio tiling.

Official ``dynamic_preprocess`` (InternVL's ``internvl_chat`` README / ``eval`` loaders) and transformers'
``GotOcr2ImageProcessor.crop_image_to_patches`` + ``get_optimal_tiled_canvas`` (the InternVL3 port):

1. candidates: every (cols, rows) with ``min_num <= cols * rows <= max_num``, sorted by tile count (stable);
2. the grid whose ``cols / rows`` is closest to ``W / H`` wins; on an exact tie of that difference the later
   (larger) candidate wins only while the image area is more than half of the candidate canvas
   (``area > 0.5 * tile^2 * cols * rows``, the "area rule": 633x633 -> 1 tile, 634x634 -> 2x2);
3. the image is resized (squashed, bicubic) to ``(cols * tile, rows * tile)`` and cut row-major;
4. a thumbnail, the whole image squashed to ``tile x tile``, is appended LAST, and only when there is more
   than one tile (``use_thumbnail`` and ``len(tiles) != 1``).

No padding anywhere: tile boxes map straight back to the image. ``max_num``: 12 (InternVL 1.5-3 chat
default; InternVL3's transformers processor uses ``max_patches=12``), ``tile_size``: 448.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..images import DEFAULT_MAX_PIXELS, to_rgb
from ..registry import SLICERS
from .base import Layout, Slicer
from .geometry import check_size
from ..validation import bounded


def internvl_candidates(min_num: int, max_num: int) -> list[tuple[int, int]]:
    """(cols, rows) with ``min_num <= cols*rows <= max_num``, sorted by ``cols*rows`` (stable, cols-major)."""
    grids = [(i, j) for i in range(1, max_num + 1) for j in range(1, max_num + 1) if min_num <= i * j <= max_num]
    return sorted(grids, key=lambda g: g[0] * g[1])


def internvl_grid(image_size, tile: int = 448, min_num: int = 1, max_num: int = 12) -> tuple[int, int]:
    """(cols, rows) of ``find_closest_aspect_ratio`` / ``get_optimal_tiled_canvas`` for an image of (W, H)."""
    w, h = image_size
    aspect, area = w / h, w * h
    best, best_diff = (1, 1), float("inf")
    for g in internvl_candidates(min_num, max_num):
        diff = abs(aspect - g[0] / g[1])
        if diff < best_diff:
            best, best_diff = g, diff
        elif diff == best_diff and area > 0.5 * tile * tile * g[0] * g[1]:
            best = g
    return best


@SLICERS.register("internvl")
class InternVLSlicer(Slicer):
    @dataclass
    class Config:
        tile_size: int = bounded(448, min=1)
        min_num: int = bounded(1, min=1)
        max_num: int = bounded(12, min=1)
        use_thumbnail: bool = True
        resample: int = bounded(3, min=0, max=5)  # PIL.Image.BICUBIC (``Image.resize``'s default; transformers' processor too)
        max_pixels: int | None = bounded(DEFAULT_MAX_PIXELS, min=1)

        def __post_init__(self):
            if self.tile_size <= 0:
                raise ValueError(f"tile_size must be positive, got {self.tile_size}")
            if not 1 <= self.min_num <= self.max_num:
                raise ValueError(f"need 1 <= min_num <= max_num, got {self.min_num}, {self.max_num}")

    def grid(self, image_size) -> tuple[int, int]:
        c = self.config
        return internvl_grid(image_size, c.tile_size, c.min_num, c.max_num)

    def plan(self, image_size) -> Layout:
        w, h = check_size(image_size, self.config.max_pixels)
        t = self.config.tile_size
        cols, rows = self.grid((w, h))
        sx, sy = w / (cols * t), h / (rows * t)
        boxes = [(c * t * sx, r * t * sy, (c + 1) * t * sx, (r + 1) * t * sy) for r in range(rows) for c in range(cols)]
        n = cols * rows
        thumb = self.config.use_thumbnail and n != 1
        return Layout(
            image_size=(w, h),
            tile_sizes=((t, t),) * (n + thumb),
            roles=("local",) * n + ("overview",) * thumb,
            grid=(cols, rows),
            canvas_size=(cols * t, rows * t),
            content_box=(0, 0, cols * t, rows * t),
            boxes=tuple(boxes) + (((0.0, 0.0, float(w), float(h)),) if thumb else ()),
        )

    def slice(self, image: Image.Image):
        layout = self.plan(image.size)
        image = to_rgb(image)
        t, rs = self.config.tile_size, self.config.resample
        cols, rows = layout.grid
        canvas = np.asarray(image.resize((cols * t, rows * t), resample=rs), dtype=np.uint8)
        tiles = list(canvas.reshape(rows, t, cols, t, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, t, t, 3))
        if len(layout.tile_sizes) > len(tiles):
            tiles.append(np.asarray(image.resize((t, t), resample=rs), dtype=np.uint8))
        return tiles, layout
