"""``native`` — Qwen2-VL native resolution: the whole image, resized once to multiples of 28, no tiles.

Official ``smart_resize`` (Qwen2-VL's ``qwen_vl_utils`` and transformers' ``Qwen2VLImageProcessor``), with
``factor = patch_size * merge_size`` (14 * 2 = 28):

* refuse an aspect ratio over 200 (as officially);
* ``h_bar = round(H / factor) * factor``, likewise ``w_bar`` (Python's ``round``: half to even);
* if ``h_bar * w_bar > max_pixels``: ``beta = sqrt(H W / max_pixels)``, each side
  ``max(factor, floor(side / beta / factor) * factor)``;
* elif ``h_bar * w_bar < min_pixels``: ``beta = sqrt(min_pixels / (H W))``, each side
  ``ceil(side * beta / factor) * factor``.

The image is resized (bicubic) to ``(w_bar, h_bar)`` and fed as one native-aspect tile (role ``overview``);
the 2x2 ``patch_merge`` connector then gives ``(h_bar / 28) * (w_bar / 28)`` visual tokens.

``max_pixels``: transformers' default is 28*28*1280 = 1,003,520; the released Qwen2-VL-7B-Instruct
``preprocessor_config.json`` uses 12,845,056 (the ``qwen2-vl-7b`` preset uses the released value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import LoupeError
from ..images import DEFAULT_MAX_PIXELS, to_rgb
from ..registry import SLICERS
from .base import Layout, Slicer
from .geometry import check_size
from ..validation import bounded

QWEN2_VL_MIN_PIXELS = 56 * 56
QWEN2_VL_MAX_PIXELS = 28 * 28 * 1280  # transformers' default
QWEN2_VL_7B_MAX_PIXELS = 12845056  # released Qwen2-VL-7B-Instruct preprocessor_config.json


def smart_resize(image_size, factor: int = 28, min_pixels: int = QWEN2_VL_MIN_PIXELS,
                 max_pixels: int = QWEN2_VL_MAX_PIXELS, max_ratio: float = 200) -> tuple[int, int]:
    """(w_bar, h_bar) of Qwen2-VL's ``smart_resize`` for an image of (W, H)."""
    width, height = image_size
    if max(height, width) / min(height, width) > max_ratio:
        raise LoupeError(f"image of {width}x{height} has an aspect ratio of "
                         f"{max(height, width) / min(height, width):.1f}, over the native slicer's limit of {max_ratio:g}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return w_bar, h_bar


@SLICERS.register("native")
class NativeSlicer(Slicer):
    @dataclass
    class Config:
        patch_size: int = bounded(14, min=1)
        merge_size: int = bounded(2, min=1)
        min_pixels: int = bounded(QWEN2_VL_MIN_PIXELS, min=1)
        max_pixels: int = bounded(QWEN2_VL_MAX_PIXELS, min=1)  # of the resized image (the budget knob)
        max_ratio: float = bounded(200.0, gt=0.0)
        resample: int = bounded(3, min=0, max=5)  # PIL.Image.BICUBIC
        max_image_pixels: int | None = bounded(DEFAULT_MAX_PIXELS, min=1)  # of the input image (a decompression-bomb cap)

        def __post_init__(self):
            if self.patch_size <= 0 or self.merge_size <= 0:
                raise ValueError(f"patch_size and merge_size must be positive, got {self.patch_size}, {self.merge_size}")
            if not 0 < self.min_pixels <= self.max_pixels:
                raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")

    @property
    def factor(self) -> int:
        return self.config.patch_size * self.config.merge_size

    def plan(self, image_size) -> Layout:
        w, h = check_size(image_size, self.config.max_image_pixels)
        c = self.config
        rw, rh = smart_resize((w, h), self.factor, c.min_pixels, c.max_pixels, c.max_ratio)
        return Layout(
            image_size=(w, h),
            tile_sizes=((rw, rh),),
            roles=("overview",),
            grid=(0, 0),
            canvas_size=(rw, rh),
            content_box=(0, 0, rw, rh),
            boxes=((0.0, 0.0, float(w), float(h)),),
        )

    def slice(self, image: Image.Image):
        layout = self.plan(image.size)
        tile = np.asarray(to_rgb(image).resize(layout.tile_sizes[0], resample=self.config.resample), dtype=np.uint8)
        return [tile], layout
