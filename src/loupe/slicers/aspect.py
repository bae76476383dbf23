"""``aspect`` — ConvLLaVA's any-aspect-ratio input: one tile, short side resized to ``short_side``.

ConvLLaVA's *released* preprocessing is pad-to-square (``image_aspect_ratio="pad"`` in
alibaba/conv-llava and the checkpoints' ``preprocessor_config.json``: ``expand2square`` with the mean colour,
then CLIPImageProcessor at R in {768, 1024, 1536}) -- that is ``mode="square"`` here (the same arithmetic
as the ``pad`` slicer at ``tile_size=R``) and what the ConvLLaVA presets should use. The paper's any-aspect
evaluation (ConvLLaVA paper, "any aspect ratio", Table 7: "we cancel padding and center cropping ... the
short side of the image should just be resized to 1536 and keep the original aspect ratio") is
``mode="aspect"``, this slicer's default, for which the issue asks.

[INF] The paper does not say how sides that the five-stage encoder's 64x stride does not divide are handled;
here each side is rounded to the nearest multiple of ``stride`` (>= one stride), so the encoder sees
(H/64) x (W/64) = exactly that many tokens. The long side is capped at ``max_long_side`` (default 4 x 1536;
``None`` = no cap) by scaling the whole image down (an image of 1x2000 would otherwise become 1536 x
3,072,000). Small images are *upscaled* (bicubic, PIL, as CLIPImageProcessor).

Shapes: ``slice`` -> one uint8 (H', W', 3) tile; ``layout.tile_sizes == ((W', H'),)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..images import CLIP_MEAN, DEFAULT_MAX_PIXELS, MAX_CANVAS_PIXELS, to_rgb
from ..registry import SLICERS
from .base import Layout, Slicer
from .geometry import aspect_size, check_canvas, check_size
from .pad import expand2square, square_paste_offset
from ..validation import bounded


@SLICERS.register("aspect")
class AspectSlicer(Slicer):
    @dataclass
    class Config:
        short_side: int = bounded(1536, min=1)  # R; the square side in mode="square"
        stride: int = bounded(64, min=1)  # the encoder's total stride (five-stage ConvNeXt: 64)
        mode: str = "aspect"  # "aspect" (paper Table 7) | "square" (released code: pad to square, resize)
        max_long_side: int | None = bounded(6144, min=1)
        fill: tuple = bounded(CLIP_MEAN, min=0.0, max=1.0)
        max_pixels: int | None = bounded(DEFAULT_MAX_PIXELS, min=1)
        max_canvas_pixels: int | None = bounded(MAX_CANVAS_PIXELS, min=1)  # cap on the padded square / the resized tile

        def __post_init__(self):
            if self.mode not in ("aspect", "square"):
                raise ValueError(f"mode must be 'aspect' or 'square', got {self.mode!r}")
            if self.stride <= 0 or self.short_side <= 0 or self.short_side % self.stride:
                raise ValueError(f"short_side {self.short_side} must be a positive multiple of stride {self.stride}")
            if self.max_long_side is not None and self.max_long_side < self.short_side:
                raise ValueError("max_long_side must be >= short_side")

    def plan(self, image_size) -> Layout:
        c = self.config
        w, h = check_size(image_size, c.max_pixels)
        if c.mode == "square":
            side, x0, y0 = square_paste_offset(w, h)
            if w != h:  # slice pastes on a side x side canvas: check before allocating
                check_canvas("aspect", (w, h), (side, side), c.max_canvas_pixels, "expand2square canvas")
            r = c.short_side
            f = r / side
            return Layout(image_size=(w, h), tile_sizes=((r, r),), roles=("overview",), canvas_size=(r, r),
                          content_box=(round(x0 * f), round(y0 * f), round((x0 + w) * f), round((y0 + h) * f)),
                          boxes=((float(-x0), float(-y0), float(side - x0), float(side - y0)),))
        size = aspect_size((w, h), c.short_side, c.stride, c.max_long_side)
        check_canvas("aspect", (w, h), size, c.max_canvas_pixels, "resized tile")  # max_long_side=None: unbounded
        return Layout(image_size=(w, h), tile_sizes=(size,), roles=("overview",), canvas_size=size,
                      content_box=(0, 0) + size, boxes=((0.0, 0.0, float(w), float(h)),))

    def slice(self, image: Image.Image):
        layout = self.plan(image.size)
        image = to_rgb(image)
        if self.config.mode == "square":
            image = expand2square(image, self.config.fill)
        size = layout.tile_sizes[0]
        if image.size != size:
            image = image.resize(size, resample=Image.BICUBIC)
        return [np.asarray(image)], layout
