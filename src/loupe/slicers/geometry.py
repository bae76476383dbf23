"""Pure slicing arithmetic (no torch, no PIL, no pixels): grids, fit sizes, unpadded feature sizes.

Sizes are ``(width, height)`` throughout, as in PIL and the official LLaVA code. Every function here is a
transcription of one official function, named in its docstring, and keeps the official *float*
expressions where they decide a branch or a rounding, because that is where re-implementations drift.

[IMPORTANT] Two LLaVA-NeXT fidelity traps, both measured against transformers 5.23:

* **Pinpoint order.** The official ``select_best_resolution`` (LLaVA ``mm_utils.py``) reads each pinpoint
  as (W, H); transformers reads the same literal list as (H, W). The llava-1.6 list is symmetric as a set,
  so the two agree except on ties (equal effective and wasted area), where the *first* candidate wins:
  every image with both sides <= 336 gets the tall 336x672 canvas officially and the wide 672x336 canvas
  in transformers (e.g. 300x100: 200 unpadded tokens officially, 784 in transformers).
  ``select_best_resolution(..., order="hw")`` reproduces transformers' reading.
* **Unpad rounding.** Official ``unpad_image`` keeps ``int(H * (cur_w / W))`` rows; transformers'
  processor and model use ``int(round(H * (cur_w / W), 7))``. They differ when the product lands just
  below an integer (55 * (24/88) = 14.999999999999998) and the count changes when that flips the parity of
  the padding: 88x55 on the 336x672 canvas keeps 16 feature rows in transformers, 14 officially (42 image
  sizes up to 1500x1500 at the llava-1.6 config). Default: ``"transformers"`` (counts equal transformers').
"""

from __future__ import annotations

import math
from typing import Sequence

from ..errors import LoupeError
from ..images import check_size as _check_size

Size = tuple[int, int]

#: LLaVA-1.6 ``image_grid_pinpoints``, each (W, H)
LLAVA_16_PINPOINTS: tuple[Size, ...] = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


def check_size(image_size: Sequence[int], max_pixels: int | None = None) -> Size:
    """(W, H) as ints for a slicer's ``plan``: :func:`loupe.images.check_size` with the slicer's ``max_pixels``."""
    return _check_size(image_size[0], image_size[1], max_pixels, knob="max_pixels")


def check_canvas(slicer: str, image_size: Sequence[int], buffer_size: Sequence[int], limit: int | None,
                 what: str = "canvas") -> None:
    """Refuse, before anything is allocated, a buffer of ``buffer_size`` (W, H) pixels over ``limit``.

    Every slicer calls this from ``plan`` for each buffer ``slice`` would allocate besides the image itself
    (a padded square, an intermediate resize, a refined canvas, a tile): a 196-byte 40000x1 PNG is under any
    pixel cap but its expand2square canvas is 1.6 G pixels.
    """
    if limit is None:
        return
    bw, bh = int(buffer_size[0]), int(buffer_size[1])
    if bw * bh > limit:
        w, h = int(image_size[0]), int(image_size[1])
        raise LoupeError(
            f"{slicer} slicer: an image of {w}x{h} pixels needs a {bw}x{bh} {what} = {bw * bh:,} pixels, over the "
            f"limit of {limit:,} (max_canvas_pixels); resize or crop the image first, or raise max_canvas_pixels"
        )


# --- LLaVA-NeXT anyres (LLaVA ``llava/mm_utils.py``) --------------------------------------------------------
def select_best_resolution(image_size: Size, pinpoints: Sequence[Sequence[int]], order: str = "wh") -> Size:
    """Official ``select_best_resolution``: max effective area, then min wasted area, first wins ties.

    ``order="wh"``: each pinpoint is (W, H) (official). ``"hw"``: each is (H, W) (transformers' reading of
    the same list). Returns the chosen canvas as (W, H) either way.
    """
    if order not in ("wh", "hw"):
        raise LoupeError(f"pinpoint order must be 'wh' or 'hw', got {order!r}")
    ow, oh = image_size
    best, max_eff, min_waste = None, 0, float("inf")
    for p in pinpoints:
        w, h = (int(p[0]), int(p[1])) if order == "wh" else (int(p[1]), int(p[0]))
        scale = min(w / ow, h / oh)
        dw, dh = int(ow * scale), int(oh * scale)
        eff = min(dw * dh, ow * oh)
        waste = w * h - eff
        if eff > max_eff or (eff == max_eff and waste < min_waste):
            max_eff, min_waste, best = eff, waste, (w, h)
    if best is None:  # every candidate has 0 effective pixels and none beat inf waste: impossible
        raise LoupeError(f"no pinpoint fits an image of {ow}x{oh}")
    return best


def fit_size(image_size: Size, target: Size) -> Size:
    """Official ``resize_and_pad_image`` size: fitted side = target, other = ceil(side*scale) capped."""
    ow, oh = image_size
    tw, th = target
    sw, sh = tw / ow, th / oh
    if sw < sh:
        return tw, min(math.ceil(oh * sw), th)
    return min(math.ceil(ow * sh), tw), th


def centre_offset(inner: Size, outer: Size) -> Size:
    """Paste offset of ``inner`` centred in ``outer``; the odd pixel goes right/bottom (``(T - n) // 2``)."""
    return (outer[0] - inner[0]) // 2, (outer[1] - inner[1]) // 2


def unpadded_size(image_size: Size, feature_size: Size, rounding: str = "transformers") -> Size:
    """(w, h) of the (cur_w, cur_h) feature map after ``unpad_image`` for an original image of (W, H).

    ``rounding="official"``: LLaVA ``unpad_image`` (``int(H * scale)``); ``"transformers"``:
    ``int(round(H * (cur_w / W), 7))``. The padding removed is ``(cur - new) // 2`` on *both* sides, so an
    odd difference keeps one extra row/column.
    """
    ow, oh = image_size
    cw, ch = feature_size
    if ow / oh > cw / ch:
        v = oh * (cw / ow)
        new = int(round(v, 7)) if rounding == "transformers" else int(v)
        return cw, ch - 2 * ((ch - new) // 2)
    v = ow * (ch / oh)
    new = int(round(v, 7)) if rounding == "transformers" else int(v)
    return cw - 2 * ((cw - new) // 2), ch


# --- MiniCPM-V / LLaVA-UHD v2 (``slice_image_minicpm``, ``llava/slice_process.py``) -------------------------
def ensure_divide(length: float, patch: int) -> int:
    """``max(floor(length / patch) * patch, patch)``."""
    return max(math.floor(length / patch) * patch, patch)


def find_best_resize(size, scale_resolution: int = 336, patch: int = 14, allow_upscale: bool = False) -> Size:
    """Native-aspect size of area ~``scale_resolution``^2, both sides multiples of ``patch``."""
    w, h = size
    if w * h > scale_resolution * scale_resolution or allow_upscale:
        r = w / h
        h = int(scale_resolution / math.sqrt(r))
        w = int(h * r)
    return ensure_divide(w, patch), ensure_divide(h, patch)


def uhd_grid(image_size: Size, max_slice_nums: int = 9, scale_resolution: int = 336) -> Size | None:
    """(cols, rows) of ``slice_image_minicpm``, or None for no slicing (``multiple <= 1``).

    Candidates {m-1, m, m+1} minus 1 and > max; grids [cols=d, rows=n/d] by n then d ascending; the first
    strict minimum of ``|log(W/H) - log(cols/rows)|`` wins.
    """
    w, h = image_size
    log_ratio = math.log(w / h)
    multiple = min(math.ceil(w * h / (scale_resolution * scale_resolution)), max_slice_nums)
    if multiple <= 1:
        return None
    best, min_err = (1, 1), float("inf")
    for n in (multiple - 1, multiple, multiple + 1):
        if n == 1 or n > max_slice_nums:
            continue
        for m in range(1, n + 1):
            if n % m == 0:
                err = abs(log_ratio - math.log(m / (n // m)))
                if err < min_err:
                    best, min_err = (m, n // m), err
    return best


def uhd_refine_size(image_size: Size, grid: Size, scale_resolution: int = 336, patch: int = 14) -> Size:
    """``get_refine_size(allow_upscale=True)``: the size the whole image is resized to before cutting."""
    cols, rows = grid
    cell = (ensure_divide(image_size[0], cols) / cols, ensure_divide(image_size[1], rows) / rows)
    cw, ch = find_best_resize(cell, scale_resolution, patch, allow_upscale=True)
    return cw * cols, ch * rows


def uhd_separators(grid: Size, comma: int = 29892, newline: int = 13) -> list[int]:
    """``ind_tokens``: per slice, row-major: ``comma`` inside a row, ``newline`` after the last of a row."""
    cols, rows = grid
    return [newline if c == cols - 1 else comma for _ in range(rows) for c in range(cols)]


# --- LLaVA-UHD v1, ECCV paper variant (``llava_uhd/slice_logic.py`` of LLaVA-UHD-Better) ----------------
def uhd_v1_grid(image_size: Size, tile: int = 336, max_slices: int = 6) -> Size:
    """``cal_num_of_slices``: N = min(ceil(WH/tile^2), 6); candidates N, N+1 (N <= 2) or N-1..N+1."""
    w, h = image_size
    n = min(math.ceil(w * h / (tile * tile)), max_slices)
    counts = (n, n + 1) if n <= 2 else (n - 1, n, n + 1)
    log_ratio = math.log(w / h)
    best, min_dif = (0, 0), 1000.0
    for k in counts:
        for i in range(1, k + 1):
            if k % i == 0 and min_dif > abs(math.log(i / (k / i)) - log_ratio):
                min_dif, best = abs(math.log(i / (k / i)) - log_ratio), (i, k // i)
    return best


def adapt_size(size: Size, patch: int = 14, max_patches: int = 576) -> Size:
    """``adapt_size``: native-aspect (W, H), multiples of ``patch``, at most ~``max_patches`` patches."""
    w, h = size
    scale = math.sqrt(max_patches * (patch / h) * (patch / w))
    nh = max(min(math.floor(scale * h / patch), max_patches), 1)
    nw = max(min(math.floor(scale * w / patch), max_patches), 1)
    return nw * patch, nh * patch


# --- INF-LLaVA DCM (paper arXiv 2407.16198 §4.2, Eq. 9-17; ``encode_images``) -------------------------------
def dcm_grid(canvas_size: Size, tile: Size) -> Size:
    """(n_W, n_H) = (floor(W_h / W_l), floor(H_h / H_l)) (Eq. 9-10, 14-15)."""
    return canvas_size[0] // tile[0], canvas_size[1] // tile[1]


def dcm_local_boxes(grid: Size, tile: Size) -> list[tuple[int, int, int, int]]:
    """Canvas boxes of the local tiles, row-major (Eq. 11-13)."""
    n_w, n_h = grid
    return [(c * tile[0], r * tile[1], (c + 1) * tile[0], (r + 1) * tile[1]) for r in range(n_h) for c in range(n_w)]


def dcm_global_phases(grid: Size) -> list[Size]:
    """(x, y) phase of each global tile, row-phase major: tile (i, j) pixel (u, v) = canvas(j + u n_W, i + v n_H)."""
    n_w, n_h = grid
    return [(j, i) for i in range(n_h) for j in range(n_w)]


# --- ConvLLaVA any-aspect (paper §4 "any aspect ratio", Table 7) -------------------------------------------
def aspect_size(image_size: Size, short_side: int = 1536, stride: int = 64, max_long_side: int | None = None) -> Size:
    """Short side -> ``short_side``, aspect kept, each side rounded to the nearest multiple of ``stride``
    (at least one stride); when the long side would pass ``max_long_side`` the whole image is scaled so the
    long side equals it instead (the short side then ends below ``short_side``)."""
    w, h = image_size
    scale = short_side / min(w, h)
    if max_long_side is not None and max(w, h) * scale > max_long_side:
        scale = max_long_side / max(w, h)
    return tuple(max(stride, int(round(v * scale / stride)) * stride) for v in (w, h))  # type: ignore[return-value]
