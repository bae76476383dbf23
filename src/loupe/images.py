"""Reading images safely: any file, any mode, with clear errors.

Every image that enters Loupe (processor, data, eval, server) passes through :func:`load_image`:

* a missing path, a file that is not an image, a truncated or corrupt file, a 0-pixel side, or an image
  over the pixel cap (a decompression bomb) raise :class:`~loupe.errors.LoupeError` naming the file and
  the problem, before any pixel is decoded where possible;
* the EXIF ``Orientation`` tag is applied (``PIL.ImageOps.exif_transpose``, as transformers' ``load_image``)
  for paths, bytes, data URIs and PIL images, so a phone photo with Orientation=6 reaches the slicer upright;
* sources: a path, ``bytes``, a PIL image, an HxW[xC] numpy array, a torch tensor (CHW or HWC, uint8 or
  float in [0, 1]; channels-first wins when both readings fit, transformers' ``infer_channel_dimension_format``
  rule), a ``data:image/...;base64,...`` URI, and, only with ``allow_urls=True``, an ``http(s)://`` URL
  (fetched with ``urllib`` under :data:`URL_TIMEOUT_S` and :data:`MAX_URL_BYTES`);
* every mode becomes 8-bit RGB: alpha (RGBA, LA, PA, P with transparency) is composited over **white**
  (transformers' ``convert_rgb`` convention; LLaVA's ``.convert('RGB')`` drops alpha, which turns
  transparent areas black), CMYK/YCbCr/LAB/HSV convert through PIL, 16/32-bit integer and float images are
  rescaled from their range to 0..255.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import LoupeError

#: OpenAI CLIP's image normalisation (``CLIPImageProcessor`` of ``openai/clip-vit-large-patch14-336``): the
#: mean and std of every CLIP-based preset, and the mean whose ``int(x * 255)`` is LLaVA's ``expand2square`` fill.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Default cap on width x height (about 8192 x 8192); configurable per processor and per call.
DEFAULT_MAX_PIXELS = 1 << 26
#: Default cap on any buffer a slicer allocates besides the image itself (a padded square, an intermediate
#: resize, a refined canvas, one tile): 2^27 = 134,217,728 pixels (402 MB as 8-bit RGB), e.g. the
#: expand2square canvas of any image whose long side is <= 11,585 px. Each slicer's ``max_canvas_pixels``.
MAX_CANVAS_PIXELS = 1 << 27
#: ``allow_urls=True``: seconds before a URL fetch gives up, and the most bytes read from one URL.
URL_TIMEOUT_S = 10.0
MAX_URL_BYTES = 64 << 20
#: EXIF tag 0x0112 (Orientation)
_ORIENTATION = 0x0112

ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray, "torch.Tensor"]  # noqa: F821


def _name(source: Any) -> str:
    if isinstance(source, str) and source[:5].lower() == "data:":
        return f"<data URI, {len(source)} characters>"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    if _is_tensor(source) or isinstance(source, np.ndarray):
        return f"<{type(source).__name__} {tuple(source.shape)} {str(source.dtype).replace('torch.', '')}>"
    return f"<{type(source).__name__}>"


def check_size(width: int, height: int, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image",
               knob: str = "max_image_pixels") -> tuple[int, int]:
    """``(width, height)`` as ints; :class:`LoupeError` on a 0-pixel side or more than ``max_pixels`` pixels.

    The one size check of the package: :func:`load_image`, the processor and every slicer's ``plan``
    (through :func:`loupe.slicers.geometry.check_size`) call it. ``name`` names the image in the message,
    ``knob`` the option that raises the cap.
    """
    w, h = int(width), int(height)
    if w <= 0 or h <= 0:
        raise LoupeError(f"{name} has a zero-size side ({w}x{h} pixels)")
    if max_pixels is not None and w * h > max_pixels:
        raise LoupeError(
            f"{name} is {w}x{h} = {w * h:,} pixels, over the cap of {max_pixels:,} "
            f"(possible decompression bomb); raise {knob} if this is intended"
        )
    return w, h


def load_image(source: ImageLike, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, allow_urls: bool = False,
               url_timeout: float = URL_TIMEOUT_S, max_url_bytes: int = MAX_URL_BYTES) -> Image.Image:
    """Open ``source`` as a fully decoded, EXIF-upright 8-bit RGB PIL image (sources: module docstring).

    The pixel cap is checked from the header, before any pixel is decoded. URLs are refused unless
    ``allow_urls=True`` (a library should not reach the network unasked); then they are fetched with
    ``urllib`` (``url_timeout`` seconds, at most ``max_url_bytes`` bytes).
    """
    name = _name(source)
    if _is_tensor(source):
        source = _tensor_to_array(source, name)
    if isinstance(source, np.ndarray):
        source = _array_to_pil(source, name)
    if isinstance(source, Image.Image):
        check_size(*source.size, max_pixels=max_pixels, name=name)
        return to_rgb(_upright(source))
    if isinstance(source, str) and source[:5].lower() == "data:":
        source = _decode_data_uri(source, name)
    elif isinstance(source, str) and source.split("://", 1)[0].lower() in ("http", "https") and "://" in source:
        if not allow_urls:
            raise LoupeError(f"image {source} is a URL; loading URLs is off by default: download it first, or "
                             f"pass allow_urls=True to load_image")
        source = _fetch_url(source, url_timeout, max_url_bytes)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise LoupeError(f"image file not found: {path}")
        if not path.is_file():
            raise LoupeError(f"image path is not a file: {path}")
        fp: Any = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(source))
    else:
        raise LoupeError(f"cannot read an image from {type(source).__name__}; give a path, bytes, a PIL image, "
                         f"an array, a torch tensor or a data: URI")

    old_cap = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # our own cap below applies, before decoding
        with Image.open(fp) as img:
            check_size(*img.size, max_pixels=max_pixels, name=name)
            try:
                img.load()
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                raise LoupeError(f"image {name} is truncated or corrupt: {e}") from None
            return to_rgb(_upright(img))
    except UnidentifiedImageError:
        raise LoupeError(f"cannot read image {name}: not a recognised image format (or the file is corrupt)") from None
    except (OSError, SyntaxError, EOFError) as e:
        raise LoupeError(f"cannot read image {name}: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_cap


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag (2..8) with ``ImageOps.exif_transpose``; other images pass unchanged."""
    try:
        orientation = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # an unreadable EXIF block is not worth refusing the pixels for
        return img
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return img
    try:
        return ImageOps.exif_transpose(img)
    except Exception as e:
        raise LoupeError(f"cannot apply the EXIF orientation {orientation} of {_name(img)}: {e}") from None


def _decode_data_uri(uri: str, name: str) -> bytes:
    """``data:[<media type>][;base64],<data>`` (RFC 2397) -> bytes; only image/* media types (or none)."""
    head, sep, payload = uri[5:].partition(",")
    if not sep:
        raise LoupeError(f"malformed data URI {name}: no ',' between the header and the data")
    params = [p.strip() for p in head.split(";")]
    media = params[0].lower()
    if media and not media.startswith("image/"):
        raise LoupeError(f"data URI {name} has media type {params[0]!r}, not an image/* type")
    if "base64" in (p.lower() for p in params[1:]):
        try:
            data = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise LoupeError(f"malformed data URI {name}: invalid base64 ({e})") from None
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if not data:
        raise LoupeError(f"data URI {name} holds no data")
    return data


def _fetch_url(url: str, timeout: float, max_bytes: int) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise LoupeError(f"cannot fetch image {url}: {e}") from None
    if len(data) > max_bytes:
        raise LoupeError(f"image {url} is larger than the limit of {max_bytes:,} bytes (max_url_bytes)")
    return data


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _tensor_to_array(t: Any, name: str) -> np.ndarray:
    """A CHW/HWC/HW torch tensor, uint8 or float in [0, 1] -> an HxW[xC] uint8 array."""
    import torch

    if t.ndim == 3 and t.shape[0] in (1, 3, 4):  # channels first (wins ties, like transformers)
        t = t.permute(1, 2, 0)
    elif not (t.ndim == 2 or (t.ndim == 3 and t.shape[2] in (1, 3, 4))):
        raise LoupeError(f"{name}: an image tensor must be CxHxW or HxWxC with C in 1, 3, 4, or HxW, "
                         f"got shape {tuple(t.shape)}" + (" (one image at a time, not a batch)" if t.ndim == 4 else ""))
    t = t.detach().cpu()
    if t.dtype == torch.uint8:
        return t.contiguous().numpy()
    if not t.is_floating_point():
        raise LoupeError(f"{name}: an image tensor must be uint8 or float in [0, 1], got {t.dtype}")
    a = t.float().numpy()
    if a.size:
        lo, hi = float(a.min()), float(a.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise LoupeError(f"{name}: a float image tensor must hold values in [0, 1], got {lo:g}..{hi:g} "
                             f"(already normalised? give the unnormalised image)")
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


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
