"""Per-request visual-token budget: the largest setting of a slicer's own knob whose token count fits.

Every slicer has one natural knob that trades resolution for tokens:

* ``anyres`` (LLaVA-NeXT, FILA): the pinpoint set. A setting is a subset of the configured pinpoints; the
  largest that fits is *every pinpoint whose own canvas fits* (``select_best_resolution`` over that subset then
  picks one of them, so the result always fits, and equals the unbudgeted choice when that one fits);
* ``uhd`` (LLaVA-UHD): ``max_slice_nums``, from the configured value down to 1 (overview only);
* ``aspect`` (ConvLLaVA): ``short_side``, from the configured value down in steps of ``stride``;
* ``internvl``: ``max_num`` (tile count cap), from the configured value down to ``min_num``;
* ``native`` (Qwen2-VL): ``max_pixels`` of the resized image; the fit is exact: the largest ``max_pixels`` of the form
  ``t * factor^2`` (``factor`` = patch x merge, 28) whose count fits, found from ``t = max_tokens`` downwards;
* ``pad`` (LLaVA-1.5), ``dcm`` (INF-LLaVA) and any other slicer: fixed (one setting).

:func:`fit_slicer` returns the slicer config (a plain dict, the form ``LoupeConfig.slicer`` takes) of the largest
setting whose count for this image is ``<= max_tokens``, or raises :class:`~loupe.errors.LoupeError` naming the
smallest count any setting reaches. :func:`smallest_slicer` is OpenAI's ``detail="low"``: the setting with the
fewest tokens for this image. Counts come from :class:`~loupe.geometry.ImageGeometry` (slicer ``plan`` + encoder
grid + connector ``num_tokens``), the same pure functions the processor and the model use; no pixels are read.

The processor applies a chosen config per image with ``LoupeProcessor(..., image_slicers=[cfg, ...])`` (or
``max_image_tokens=N``), and returns the layouts for the model (``image_layouts``).
"""

from __future__ import annotations

from typing import Sequence

from .errors import LoupeError
from .geometry import ImageGeometry
from .registry import SLICERS

#: the name of each slicer's budget knob (for messages and ``/v1/loupe/plan``)
KNOBS = {"anyres": "pinpoints", "uhd": "max_slice_nums", "aspect": "short_side", "internvl": "max_num",
         "native": "max_pixels"}


def settings(slicer: dict) -> list[dict]:
    """Candidate slicer configs for ``slicer``, largest budget first (anyres: one per pinpoint, see module doc)."""
    cfg = SLICERS.normalise(slicer)
    name = cfg["name"]
    if name == "anyres":
        return [dict(cfg, pinpoints=[list(p)]) for p in cfg["pinpoints"]]
    if name == "uhd":
        return [dict(cfg, max_slice_nums=n) for n in range(int(cfg["max_slice_nums"]), 0, -1)]
    if name == "aspect":
        stride = int(cfg["stride"])
        top = int(cfg["short_side"])
        return [dict(cfg, short_side=s) for s in range(top, stride - 1, -stride) if s % stride == 0 or s == top]
    if name == "internvl":
        lo = int(cfg.get("min_num", 1))
        return [dict(cfg, max_num=n) for n in range(int(cfg["max_num"]), lo - 1, -1)]
    if name == "native":  # halving steps for detail="low"; fit_slicer searches exactly
        top, lo = int(cfg["max_pixels"]), int(cfg["min_pixels"])
        out, mp = [], top
        while mp > lo:
            out.append(dict(cfg, max_pixels=mp))
            mp //= 2
        return out + [dict(cfg, max_pixels=lo)]
    return [cfg]


def _fit_native(cfg: dict, vision: dict, connector: dict, image_size, max_tokens: int) -> dict | None:
    """The largest ``max_pixels = t * factor^2`` (t from ``max_tokens`` down) whose count fits, else None."""
    from .slicers.native import smart_resize

    f = int(cfg["patch_size"]) * int(cfg["merge_size"])
    lo, top = int(cfg["min_pixels"]), int(cfg["max_pixels"])
    w, h = (int(v) for v in image_size)
    t = min(max_tokens, top // (f * f))
    while t >= 1 and t * f * f >= lo:
        mp = t * f * f
        rw, rh = smart_resize((w, h), f, lo, mp, float(cfg["max_ratio"]))
        if (rw // f) * (rh // f) <= max_tokens:  # the patch_merge count; checked with the geometry below
            c = dict(cfg, max_pixels=mp)
            if count(c, vision, connector, image_size) <= max_tokens:
                return c
        t -= 1
    return None


def _geometry(slicer: dict, vision: dict, connector: dict) -> ImageGeometry:
    return ImageGeometry(slicer, vision, connector)


def count(slicer: dict, vision: dict, connector: dict, image_size: Sequence[int]) -> int:
    """Visual tokens of an image of (width, height) under ``slicer``."""
    return _geometry(slicer, vision, connector).num_tokens(tuple(int(v) for v in image_size))


def fit_slicer(slicer: dict, vision: dict, connector: dict, image_size: Sequence[int], max_tokens: int) -> dict:
    """The slicer config of the largest knob setting whose token count for ``image_size`` fits ``max_tokens``."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise LoupeError(f"max_image_tokens must be a positive integer, got {max_tokens!r}")
    cfg = SLICERS.normalise(slicer)
    cands = settings(cfg)
    counts = [count(c, vision, connector, image_size) for c in cands]
    name = cfg["name"]
    if name == "anyres":
        fits = [c["pinpoints"][0] for c, n in zip(cands, counts) if n <= max_tokens]
        if fits:
            return dict(cfg, pinpoints=fits)
    elif name == "native":
        if count(cfg, vision, connector, image_size) <= max_tokens:
            return cfg
        found = _fit_native(cfg, vision, connector, image_size, max_tokens)
        if found is not None:
            return found
    else:
        full = count(cfg, vision, connector, image_size)
        if full <= max_tokens:
            return cfg
        for c, n in zip(cands, counts):
            if n <= max_tokens:
                return c
    w, h = (int(v) for v in image_size)
    knob = KNOBS.get(name)
    how = f"the smallest {knob} setting" if knob else f"the {name} slicer (it has no budget knob)"
    raise LoupeError(
        f"max_image_tokens={max_tokens} is below the minimum for this {w}x{h} image: {min(counts)} visual tokens "
        f"with {how}"
    )


def smallest_slicer(slicer: dict, vision: dict, connector: dict, image_size: Sequence[int]) -> dict:
    """OpenAI ``detail="low"``: the knob setting with the fewest visual tokens for this image (ties: the first)."""
    cands = settings(slicer)
    counts = [count(c, vision, connector, image_size) for c in cands]
    return cands[counts.index(min(counts))]


def choose_slicer(
    slicer: dict, vision: dict, connector: dict, image_size: Sequence[int],
    max_tokens: int | None = None, detail: str | None = None,
) -> dict:
    """Apply ``detail`` (``"low"``, ``"high"``, ``"auto"`` or None) then ``max_tokens`` (None: no cap)."""
    if detail not in (None, "auto", "high", "low"):
        raise LoupeError(f"detail must be 'low', 'high' or 'auto', got {detail!r}")
    cfg = SLICERS.normalise(slicer)
    if detail == "low":
        cfg = smallest_slicer(cfg, vision, connector, image_size)
    if max_tokens is not None:
        cfg = fit_slicer(cfg, vision, connector, image_size, max_tokens)
    return cfg
