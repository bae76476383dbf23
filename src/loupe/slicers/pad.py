"""``pad`` — LLaVA-1.5: pad to a square with the mean colour, resize to the encoder size (Liu et al., "Improved
Baselines with Visual Instruction Tuning", arXiv 2310.03744; ``image_aspect_ratio="pad"`` in LLaVA's
``llava/train/train.py``).

Official arithmetic (``expand2square`` in LLaVA's ``mm_utils.py``): the canvas side is max(W, H), the fill
colour is ``tuple(int(x * 255) for x in image_mean)`` = (122, 116, 104) for CLIP, and the image is pasted at
``((S - W) // 2, (S - H) // 2)``, so an odd extra pixel of padding goes to the bottom/right. Then
CLIPImageProcessor resizes the square to ``tile_size`` (bicubic) and centre-crops (a no-op on a square).
transformers' re-implementation lost one pixel for odd sizes (PR #37819); this one follows the original.

``mode="resize"`` squashes the image to the square instead (no padding), for ablations.

``mode="canvas"`` [LOUPE] pastes the image at its own scale on a ``tile_size`` square of the fill colour, at
offset ``((T - W) // 2, (T - H) // 2)`` (``expand2square``'s rule on a fixed canvas); an image larger than the
canvas is first shrunk to fit (aspect kept, bicubic). No resampling when it fits, so a fine detail keeps its
pixels and its place on the encoder's patch grid: the demo's ConvLLaVA arm (:mod:`loupe.presets.demo`) reads its
images this way, where a 0.8x resize made the tag unreadable to a from-scratch encoder.

Memory: ``plan`` refuses (:class:`~loupe.errors.LoupeError`) an image whose expand2square canvas (or crop-mode
resize) is over ``max_canvas_pixels`` (default :data:`loupe.images.MAX_CANVAS_PIXELS`), before ``slice``
allocates it: a 196-byte 40000x1 PNG would otherwise take a 1.6 G pixel canvas. Refusing, not computing the
tile another way: PIL's resample of the padded square cannot be reproduced bit-exactly without it.
``mode="crop"`` is the llava-hf LLaVA-1.5 preprocessing (their ``CLIPImageProcessor``): resize the shortest
edge to ``tile_size`` (the long side ``int(tile_size * long / short)``, bicubic), then a centre crop at offset
``(side - tile_size) // 2`` (transformers ``get_resize_output_image_size`` / ``center_crop``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..images import CLIP_MEAN, MAX_CANVAS_PIXELS
from ..registry import SLICERS
from .base import Layout, Slicer, pil_resize
from .geometry import check_canvas, check_size
from ..validation import bounded


def fill_colour(mean=CLIP_MEAN) -> tuple[int, int, int]:
    """LLaVA's ``tuple(int(x * 255) for x in image_processor.image_mean)``."""
    return tuple(int(x * 255) for x in mean)


def square_paste_offset(width: int, height: int) -> tuple[int, int, int]:
    """(side, x_offset, y_offset) of ``expand2square``."""
    side = max(width, height)
    return side, (side - width) // 2, (side - height) // 2


def expand2square(image: Image.Image, mean=CLIP_MEAN) -> Image.Image:
    """LLaVA's ``expand2square`` (``llava/mm_utils.py``): ``image`` pasted at :func:`square_paste_offset` on a
    max(W, H) square of :func:`fill_colour` ``(mean)``; a square image is returned as is. The one padding of the
    ``pad``, ``dcm`` (official layout) and ``aspect`` (``mode="square"``) slicers."""
    if image.size[0] == image.size[1]:
        return image
    side, x0, y0 = square_paste_offset(*image.size)
    return paste_on_canvas(image, side, (x0, y0), mean)


def paste_on_canvas(image: Image.Image, side: int, offset: tuple[int, int], mean=CLIP_MEAN) -> Image.Image:
    """``image`` pasted at ``offset`` on a ``side`` square of :func:`fill_colour` ``(mean)``: the one padded canvas
    of the slicers (:func:`expand2square`, ``mode="canvas"``)."""
    canvas = Image.new("RGB", (side, side), fill_colour(mean))
    canvas.paste(image, offset)
    return canvas


@SLICERS.register("pad")
class PadSlicer(Slicer):
    @dataclass
    class Config:
        tile_size: int = bounded(336, min=1)
        mode: str = "pad"  # "pad" (expand2square, official) | "resize" (squash) | "crop" (llava-hf CLIP) | "canvas"
        fill: tuple = bounded(CLIP_MEAN, min=0.0, max=1.0)  # mean colour in [0, 1]; the fill is int(x * 255) per channel
        max_canvas_pixels: int | None = bounded(MAX_CANVAS_PIXELS, min=1)  # cap on the padded square / resized image (None: none)

        def __post_init__(self):
            if self.mode not in ("pad", "resize", "crop", "canvas"):
                raise ValueError(f"mode must be 'pad', 'resize', 'crop' or 'canvas', got {self.mode!r}")

    def plan(self, image_size) -> Layout:
        w, h = check_size(image_size)
        t = self.config.tile_size
        if self.config.mode == "pad":
            side, x0, y0 = square_paste_offset(w, h)
            canvas, content = (side, side), (x0, y0, x0 + w, y0 + h)
            box = (-x0, -y0, side - x0, side - y0)
        elif self.config.mode == "canvas":
            (rw, rh), (x0, y0) = canvas_fit(w, h, t)
            s = w / rw  # canvas pixel -> original pixel
            canvas, content = (t, t), (x0, y0, x0 + rw, y0 + rh)
            box = (-x0 * s, -y0 * s, (t - x0) * s, (t - y0) * s)
        elif self.config.mode == "crop":
            (rw, rh), (cx, cy) = crop_resize_size(w, h, t)
            s = min(w, h) / t  # resized pixel -> original pixel
            canvas, content, box = (w, h), (0, 0, w, h), (cx * s, cy * s, (cx + t) * s, (cy + t) * s)
        else:
            canvas, content, box = (w, h), (0, 0, w, h), (0, 0, w, h)
        if self.config.mode == "pad" and w != h:  # slice pastes on a side x side canvas: check before allocating
            check_canvas("pad", (w, h), canvas, self.config.max_canvas_pixels, "expand2square canvas")
        elif self.config.mode == "crop":
            check_canvas("pad", (w, h), (rw, rh), self.config.max_canvas_pixels, "shortest-edge resize")
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
            image = expand2square(image, self.config.fill)
        if self.config.mode == "crop":
            (rw, rh), (cx, cy) = crop_resize_size(*image.size, t)
            resized = np.asarray(pil_resize(image, (rw, rh)), dtype=np.uint8)
            return [np.ascontiguousarray(resized[cy : cy + t, cx : cx + t])], layout
        if self.config.mode == "canvas":
            (rw, rh), (x0, y0) = canvas_fit(*image.size, t)
            if (rw, rh) != image.size:
                image = pil_resize(image, (rw, rh))
            return [np.asarray(paste_on_canvas(image, t, (x0, y0), self.config.fill), dtype=np.uint8)], layout
        tile = np.asarray(pil_resize(image, (t, t)), dtype=np.uint8)
        return [tile], layout


def canvas_fit(width: int, height: int, tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``mode="canvas"``: ((W', H') of the pasted image, (x, y) of its paste offset) on a ``tile`` square. The image
    keeps its size when it fits; otherwise it is shrunk so its long side is ``tile`` (short side >= 1)."""
    if max(width, height) > tile:
        k = tile / max(width, height)
        width, height = (max(1, min(tile, round(width * k))), max(1, min(tile, round(height * k))))
    return (width, height), ((tile - width) // 2, (tile - height) // 2)


def crop_resize_size(width: int, height: int, tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``mode="crop"``: ((W', H') after the shortest-edge resize, (x, y) of the centre crop)."""
    if width <= height:
        rw, rh = tile, int(tile * height / width)
    else:
        rw, rh = int(tile * width / height), tile
    return (rw, rh), ((rw - tile) // 2, (rh - tile) // 2)
