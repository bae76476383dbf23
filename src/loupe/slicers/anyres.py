"""``anyres`` — LLaVA-NeXT / LLaVA-1.6 dynamic-resolution slicing (Liu et al., "LLaVA-NeXT: Improved
reasoning, OCR, and world knowledge", 2024; official
``process_anyres_image`` in LLaVA's ``mm_utils.py``).

1. Pick the canvas (W_c, H_c) from ``pinpoints`` with ``select_best_resolution`` (max effective area, then
   min wasted area, first wins ties).
2. Resize the image into it keeping aspect (bicubic; the fitted side = the canvas side, the other =
   ceil(side * scale) capped) and paste it centred on a **black** canvas (odd pixel right/bottom).
3. Cut the canvas into ``tile_size`` tiles, row-major.
4. The overview is the whole image *squashed* to ``tile_size`` x ``tile_size`` (no padding).

Tile order = the official tensor order ``[overview, tile_1 .. tile_n]`` (an overview FIRST, unlike UHD).
Layout: ``grid`` (cols, rows), ``canvas_size`` (W_c, H_c), ``content_box`` (the pasted image in the canvas).
The unpadding of the feature map and the ``image_newline`` tokens are the connector's
(:mod:`loupe.connectors.llava_next`), computed from ``image_size`` and ``grid`` as the official model does.

Images smaller than a tile are *upscaled* into the smallest canvas (as officially); an image of both sides
<= 336 always ties and gets the first smallest canvas: 336x672 (W x H) officially, 672x336 in transformers
(``pinpoint_order="hw"``; see :mod:`loupe.slicers.geometry`).

Fast path (this is the hot loop of LLaVA-NeXT preprocessing): two PIL resizes per image (canvas content,
overview; ~85% of the time, PIL's own resize is the floor), run concurrently on large images
(``parallel_resize``: one helper thread per process, PIL releases the GIL; the pixels are identical), then the
paste and the tile cut are numpy copies.
Shapes: ``slice`` -> ``1 + cols*rows`` uint8 arrays of (tile, tile, 3).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import LoupeError
from ..images import DEFAULT_MAX_PIXELS, MAX_CANVAS_PIXELS, to_rgb
from ..registry import SLICERS
from .base import Layout, Slicer
from .geometry import LLAVA_16_PINPOINTS, centre_offset, check_canvas, check_size, fit_size, select_best_resolution
from ..validation import bounded


@SLICERS.register("anyres")
class AnyResSlicer(Slicer):
    @dataclass
    class Config:
        tile_size: int = bounded(336, min=1)
        pinpoints: tuple = LLAVA_16_PINPOINTS  # canvases, each a multiple of tile_size
        pinpoint_order: str = "wh"  # "wh": each pinpoint is (W, H) (official); "hw": transformers' reading
        resample: int = bounded(3, min=0, max=5)  # PIL.Image.BICUBIC, the default of ``image.resize`` in the official code
        max_pixels: int | None = bounded(DEFAULT_MAX_PIXELS, min=1)
        max_canvas_pixels: int | None = bounded(MAX_CANVAS_PIXELS, min=1)  # cap on the canvas (a configured pinpoint)
        parallel_resize: bool = True  # overview resize on a helper thread (PIL frees the GIL); same pixels

        def __post_init__(self):
            self.pinpoints = tuple(tuple(int(v) for v in p) for p in self.pinpoints)
            if not self.pinpoints:
                raise ValueError("pinpoints must not be empty")
            if self.pinpoint_order not in ("wh", "hw"):
                raise ValueError(f"pinpoint_order must be 'wh' or 'hw', got {self.pinpoint_order!r}")
            t = self.tile_size
            bad = [p for p in self.pinpoints if len(p) != 2 or p[0] <= 0 or p[1] <= 0 or p[0] % t or p[1] % t]
            if bad:
                raise ValueError(f"pinpoints {bad} are not positive multiples of tile_size {t}")

    def canvas(self, image_size) -> tuple[int, int]:
        """The chosen canvas (W_c, H_c)."""
        return select_best_resolution(image_size, self.config.pinpoints, self.config.pinpoint_order)

    def plan(self, image_size) -> Layout:
        w, h = check_size(image_size, self.config.max_pixels)
        t = self.config.tile_size
        cw, ch = self.canvas((w, h))
        check_canvas("anyres", (w, h), (cw, ch), self.config.max_canvas_pixels)  # the fitted image is inside it
        fw, fh = fit_size((w, h), (cw, ch))
        x0, y0 = centre_offset((fw, fh), (cw, ch))
        cols, rows = cw // t, ch // t
        sx, sy = w / fw, h / fh  # canvas pixel -> original pixel
        boxes = [(0.0, 0.0, float(w), float(h))]
        for r in range(rows):
            for c in range(cols):
                boxes.append(((c * t - x0) * sx, (r * t - y0) * sy, ((c + 1) * t - x0) * sx, ((r + 1) * t - y0) * sy))
        return Layout(
            image_size=(w, h),
            tile_sizes=((t, t),) * (1 + cols * rows),
            roles=("overview",) + ("local",) * (cols * rows),
            grid=(cols, rows),
            canvas_size=(cw, ch),
            content_box=(x0, y0, x0 + fw, y0 + fh),
            boxes=tuple(boxes),
        )

    def slice(self, image: Image.Image):
        layout = self.plan(image.size)
        return list(self.slice_array(image, layout)), layout

    def slice_array(self, image: Image.Image, layout: Layout | None = None) -> np.ndarray:
        """All tiles as one contiguous uint8 array (1 + cols*rows, tile, tile, 3), overview first."""
        layout = layout or self.plan(image.size)
        image = to_rgb(image)
        t, rs = self.config.tile_size, self.config.resample
        cols, rows = layout.grid
        x0, y0, x1, y1 = layout.content_box
        out = np.empty((1 + cols * rows, t, t, 3), dtype=np.uint8)  # every element is written below
        image.load()
        over = None
        if self.config.parallel_resize and image.size[0] * image.size[1] >= _PARALLEL_MIN_PIXELS:
            over = _pool().submit(_resize, image, (t, t), rs)
        fitted = _resize(image, (x1 - x0, y1 - y0), rs)
        out[0] = _asarray(over.result() if over is not None else _resize(image, (t, t), rs))
        # paste on black, then cut: (rows*t, cols*t, 3) -> (rows, t, cols, t, 3) -> (rows, cols, t, t, 3)
        canvas = np.zeros((rows * t, cols * t, 3), dtype=np.uint8)
        canvas[y0:y1, x0:x1] = _asarray(fitted)
        out[1:] = canvas.reshape(rows, t, cols, t, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, t, t, 3)
        return out


_PARALLEL_MIN_PIXELS = 1 << 18  # below this, a thread hand-off costs more than it saves
_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """One helper thread per process (re-created after a fork, e.g. in DataLoader workers)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="loupe-anyres"))
    return _POOL[1]


def _resize(img: Image.Image, size, resample) -> Image.Image:
    return img if img.size == tuple(size) else img.resize(tuple(size), resample=resample)


def _asarray(img: Image.Image) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3:
        raise LoupeError(f"expected an RGB image, got an array of shape {a.shape}")
    return a
