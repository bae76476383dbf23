"""Reading images safely: any file, any mode, with clear errors.

Every image that enters Loupe (processor, data, eval, server) passes through :func:`load_image`:

* a missing path, a file that is not an image, a truncated or corrupt file, a 0-pixel side, or an image
  over the pixel cap (a decompression bomb) raise :class:`~loupe.errors.LoupeError` naming the file and
  the problem, before any pixel is decoded where possible;
* every mode becomes 8-bit RGB: alpha (RGBA, LA, PA, P with transparency) is composited over **white**
  (transformers' ``convert_rgb`` convention; LLaVA's ``.convert('RGB')`` drops alpha, which turns
  transparent areas black), CMYK/YCbCr/LAB/HSV convert through PIL, 16/32-bit integer and float images are
  rescaled from their range to 0..255.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import LoupeError

#: Default cap on width x height (about 8192 x 8192); configurable per processor and per call.
DEFAULT_MAX_PIXELS = 1 << 26

ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


def _name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    return f"<{type(source).__name__}>"


def check_size(width: int, height: int, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image") -> None:
    """Reject 0-pixel sides and images over the pixel cap."""
    if width <= 0 or height <= 0:
        raise LoupeError(f"{name} has a zero-size side ({width}x{height} pixels)")
    if max_pixels is not None and width * height > max_pixels:
        raise LoupeError(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the cap of {max_pixels:,} "
            f"(possible decompression bomb); raise max_image_pixels if this is intended"
        )


def load_image(source: ImageLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``source`` (path, bytes, PIL image or HxW[xC] array) as a fully decoded 8-bit RGB PIL image."""
    name = _name(source)
    if isinstance(source, np.ndarray):
        source = _array_to_pil(source, name)
    if isinstance(source, Image.Image):
        check_size(*source.size, max_pixels=max_pixels, name=name)
        return to_rgb(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise LoupeError(f"image file not found: {path}")
        if not path.is_file():
            raise LoupeError(f"image path is not a file: {path}")
        fp: Any = str(path)
    elif isinstance(source, bytes):
        fp = io.BytesIO(source)
    else:
        raise LoupeError(f"cannot read an image from {type(source).__name__}; give a path, bytes or a PIL image")

    old_cap = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # our own cap below applies, before decoding
        with Image.open(fp) as img:
            check_size(*img.size, max_pixels=max_pixels, name=name)
            try:
                img.load()
            except (OSError, SyntaxError, ValueError) as e:
                raise LoupeError(f"image {name} is truncated or corrupt: {e}") from None
            return to_rgb(img)
    except UnidentifiedImageError:
        raise LoupeError(f"cannot read image {name}: not a recognised image format (or the file is corrupt)") from None
    except (OSError, SyntaxError) as e:
        raise LoupeError(f"cannot read image {name}: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_cap


def _array_to_pil(a: np.ndarray, name: str) -> Image.Image:
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4)):
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.dtype != np.uint8:
            a = _rescale_to_uint8(a.astype(np.float64))
        return Image.fromarray(a)
    raise LoupeError(f"{name}: an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")


def _rescale_to_uint8(a: np.ndarray) -> np.ndarray:
    lo, hi = float(np.nanmin(a)) if a.size else 0.0, float(np.nanmax(a)) if a.size else 0.0
    if lo >= 0 and hi <= 1.0:  # float images in [0, 1]
        scale, lo = 255.0, 0.0
    elif lo >= 0 and hi <= 255:
        scale, lo = 1.0, 0.0
    elif lo >= 0 and hi <= 65535:  # 16-bit
        scale, lo = 255.0 / 65535.0, 0.0
    else:
        scale = 255.0 / max(hi - lo, 1e-12)
    return np.clip(np.nan_to_num((a - lo) * scale), 0, 255).round().astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB (alpha composited on white, high bit depths rescaled)."""
    mode = img.mode
    if mode == "RGB":
        return img.copy() if getattr(img, "fp", None) is not None else img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in ("I", "F") or mode.startswith("I;"):
        a = np.asarray(img)
        if mode.startswith("I;16"):
            a = a.astype(np.float64) * (255.0 / 65535.0)
            return Image.fromarray(np.clip(a.round(), 0, 255).astype(np.uint8)).convert("RGB")
        return Image.fromarray(_rescale_to_uint8(a.astype(np.float64))).convert("RGB")
    return img.convert("RGB")


ImageFile.LOAD_TRUNCATED_IMAGES = False
