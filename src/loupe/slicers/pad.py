"""``pad`` — LLaVA-1.5: pad to a square with the mean colour, resize to the encoder size (spec §0.1).

Official arithmetic (``expand2square`` in LLaVA's ``mm_utils.py``): the canvas side is max(W, H), the fill
colour is ``tuple(int(x * 255) for x in image_mean)`` = (122, 116, 104) for CLIP, and the image is pasted at
``((S - W) // 2, (S - H) // 2)``, so an odd extra pixel of padding goes to the bottom/right. Then
CLIPImageProcessor resizes the square to ``tile_size`` (bicubic) and centre-crops (a no-op on a square).
transformers' re-implementation lost one pixel for odd sizes (PR #37819); this one follows the original.

``mode="resize"`` squashes the image to the square instead (no padding), for ablations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..registry import SLICERS
from .base import Layout, Slicer, pil_resize

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


def fill_colour(mean=CLIP_MEAN) -> tuple[int, int, int]:
    """LLaVA's ``tuple(int(x * 255) for x in image_processor.image_mean)``."""
    return tuple(int(x * 255) for x in mean)


def square_paste_offset(width: int, height: int) -> tuple[int, int, int]:
    """(side, x_offset, y_offset) of ``expand2square``."""
    side = max(width, height)
    return side, (side - width) // 2, (side - height) // 2


@SLICERS.register("pad")
class PadSlicer(Slicer):
    @dataclass
    class Config:
        tile_size: int = 336
        mode: str = "pad"  # "pad" (expand2square, official) | "resize" (squash)
        fill: tuple = CLIP_MEAN  # mean colour in [0, 1]; the fill is int(x * 255) per channel

        def __post_init__(self):
            if self.mode not in ("pad", "resize"):
                raise ValueError(f"mode must be 'pad' or 'resize', got {self.mode!r}")

    def plan(self, image_size) -> Layout:
        w, h = self.check_image_size(image_size)
        t = self.config.tile_size
        if self.config.mode == "pad":
            side, x0, y0 = square_paste_offset(w, h)
            canvas, content = (side, side), (x0, y0, x0 + w, y0 + h)
            box = (-x0, -y0, side - x0, side - y0)
        else:
            canvas, content, box = (w, h), (0, 0, w, h), (0, 0, w, h)
        return Layout(
            image_size=(w, h),
            tile_sizes=((t, t),),
            roles=("overview",),
            grid=(0, 0),
            canvas_size=canvas,
            content_box=content,
            boxes=(tuple(float(v) for v in box),),
        )

    def slice(self, image: Image.Image):
        layout = self.plan(image.size)
        t = self.config.tile_size
        if self.config.mode == "pad":
            side, x0, y0 = square_paste_offset(*image.size)
            if image.size[0] != image.size[1]:
                canvas = Image.new("RGB", (side, side), fill_colour(self.config.fill))
                canvas.paste(image, (x0, y0))
                image = canvas
        tile = np.asarray(pil_resize(image, (t, t)), dtype=np.uint8)
        return [tile], layout
