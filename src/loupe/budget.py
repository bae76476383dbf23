"""Visual-token budgets: the largest setting of a method's own knobs whose token count fits.

One family of functions serves the server's per-request cap (:func:`choose_slicer`, one image, the slicer's knob
only: the model's weights are fixed) and the equal-budget comparison (:func:`fit_config`, a set of image sizes, the
slicer's knob *and* the connector's pooling knob: the model is trained at the fitted configuration). Both read the
same two knob tables, :data:`SLICER_KNOBS` and :data:`CONNECTOR_KNOBS`, and count with the same
:class:`~loupe.geometry.ImageGeometry` (slicer ``plan`` + encoder grid + connector ``num_tokens``), the pure
functions the processor and the model use; no pixels are read.

Slicer knobs (:func:`settings`; the configured value is the ceiling — the preset is the method's largest released
configuration, a budget only shrinks it):

* ``anyres`` (LLaVA-NeXT, LLaVA-OneVision, FILA): the pinpoint set. A setting is a subset of the configured
  pinpoints; for one image the largest that fits is *every pinpoint whose own canvas fits* (``select_best_resolution``
  over that subset then picks one of them, so the result always fits, and equals the unbudgeted choice when that one
  fits). Over several sizes: the pinpoints that fit every size, then (greedily, in configured order) each further
  pinpoint whose addition keeps every size within the budget and adds tokens;
* ``uhd`` (LLaVA-UHD): ``max_slice_nums``, from the configured value down to 1 (overview only);
* ``aspect`` (ConvLLaVA): ``short_side``, from the configured value down in steps of ``stride``;
* ``internvl``: ``max_num`` (tile count cap), from the configured value down to ``min_num``;
* ``native`` (Qwen2-VL): ``max_pixels`` of the resized image; the fit is exact: the largest ``max_pixels`` of the form
  ``t * factor^2`` (``factor`` = patch x merge, 28) whose count fits (by bisection: counts grow with it);
* ``pad`` (LLaVA-1.5, ConvLLaVA's square presets), ``dcm`` (INF-LLaVA) and any other slicer: fixed (one setting).

Connector knobs (:func:`connector_settings`; every valid value, the configured one first, then by distance from it —
a budget may pool less than the preset as well as more):

* ``mlp`` (LLaVA-1.5, ConvLLaVA, the demo arms): ``pool``, k x k average pooling of each tile's map (1 = official),
  up to the smallest map side (a wider pool leaves a tile no token);
* ``hiwin`` (LLaVA-UHD v2): ``grid_size``, windows per side, ``grid_size^2`` tokens per slice (official 12), up to
  the largest feature-map side (a finer window than a patch only up-samples);
* ``dem`` (INF-LLaVA): ``out_scale``, the output grid as a multiple of one tile's grid (official 1), up to the local
  tile grid's side (beyond, the mosaic is up-sampled);
* ``anyres_max`` (LLaVA-OneVision): ``max_num_patches``, the tiles' worth of tokens above which the unpadded map is
  bilinearly down-sampled (official 9), up to the largest pinpoint's tile count (beyond, nothing changes);
* ``pixel_shuffle`` (InternVL): ``scale`` = 1/k, k x k patches folded into one token (official 0.5);
* ``patch_merge`` (Qwen2-VL): ``merge_size``, m x m patches merged into one token (official 2); the ``native``
  slicer's ``merge_size`` and the tower's ``spatial_merge_size`` follow it (the patch order depends on it);
* ``llava_next`` (LLaVA-NeXT, FILA) and any other connector: fixed (tokens follow the slicer alone).

:func:`fit_slicer` returns the slicer config (a plain dict, the form ``LoupeConfig.slicer`` takes) of the largest
setting whose count for this image is ``<= max_tokens``, or raises :class:`~loupe.errors.LoupeError` naming the
smallest count any setting reaches. :func:`smallest_slicer` is OpenAI's ``detail="low"``: the setting with the
fewest tokens for this image. :func:`fit_config` returns a :class:`Fit` (slicer, vision and connector configs, the
count per size): over every connector setting, the best slicer fit, the one with the most tokens (the largest
count over the sizes, then the largest total; ties: the setting nearest the preset), or raises naming the minimum.

The processor applies a chosen config per image with ``LoupeProcessor(..., image_slicers=[cfg, ...])`` (or
``max_image_tokens=N``), and returns the layouts for the model (``image_layouts``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

from .errors import LoupeError
from .geometry import ImageGeometry
from .registry import CONNECTORS, ENCODERS, SLICERS

#: the name of each slicer's budget knob (for messages and ``/v1/loupe/plan``)
SLICER_KNOBS = {"anyres": "pinpoints", "uhd": "max_slice_nums", "aspect": "short_side", "internvl": "max_num",
                "native": "max_pixels"}
KNOBS = SLICER_KNOBS  # the name the server and older callers use
#: the name of each connector's pooling / compression knob (see the module doc)
CONNECTOR_KNOBS = {"mlp": "pool", "hiwin": "grid_size", "dem": "out_scale", "anyres_max": "max_num_patches",
                   "pixel_shuffle": "scale", "patch_merge": "merge_size"}


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


def _geometry(slicer: dict, vision: dict, connector: dict) -> ImageGeometry:
    return ImageGeometry(slicer, vision, connector)


def count(slicer: dict, vision: dict, connector: dict, image_size: Sequence[int]) -> int:
    """Visual tokens of an image of (width, height) under ``slicer``."""
    return _geometry(slicer, vision, connector).num_tokens(tuple(int(v) for v in image_size))


def _counts(slicer: dict, vision: dict, connector: dict, sizes) -> list[int]:
    geo = _geometry(slicer, vision, connector)
    return [geo.num_tokens(tuple(int(v) for v in s)) for s in sizes]


def _fit_native(cfg: dict, vision: dict, connector: dict, sizes, max_tokens: int):
    """(config, counts) of the largest ``max_pixels = t * factor^2`` whose count fits ``max_tokens`` for every size,
    else None. Counts grow with ``max_pixels`` (``smart_resize`` scales both sides by one factor, then rounds to the
    factor), so ``t`` is found by bisection over [min_pixels, max_pixels] and checked with the geometry."""
    from .slicers.native import smart_resize

    f = int(cfg["patch_size"]) * int(cfg["merge_size"])
    lo_px, top = int(cfg["min_pixels"]), int(cfg["max_pixels"])
    ratio = float(cfg["max_ratio"])

    def fits(t: int) -> bool:
        for w, h in sizes:
            rw, rh = smart_resize((int(w), int(h)), f, lo_px, t * f * f, ratio)
            if (rw // f) * (rh // f) > max_tokens:  # the patch_merge count; checked with the geometry below
                return False
        return True

    lo, hi = -(-lo_px // (f * f)), top // (f * f)
    if lo > hi or not fits(lo):
        return None
    while lo < hi:  # largest t in [lo, hi] that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    for t in range(lo, 0, -1):
        if t * f * f < lo_px:
            break
        c = dict(cfg, max_pixels=t * f * f)
        n = _counts(c, vision, connector, sizes)
        if max(n) <= max_tokens:
            return c, n
    return None


def _fit_sizes(cfg: dict, vision: dict, connector: dict, sizes, max_tokens: int):
    """(slicer config, counts per size) of the largest slicer setting whose count fits ``max_tokens`` for every
    size, or (None, the smallest largest-count any setting reaches). ``cfg`` is normalised."""
    name = cfg["name"]
    full = _counts(cfg, vision, connector, sizes)
    if max(full) <= max_tokens:
        return cfg, full
    cands = settings(cfg)
    per = [_counts(c, vision, connector, sizes) for c in cands]
    if name == "anyres":
        pins = [list(p) for p in cfg["pinpoints"]]
        fits = [c["pinpoints"][0] for c, n in zip(cands, per) if max(n) <= max_tokens]
        if fits:
            best = _counts(dict(cfg, pinpoints=fits), vision, connector, sizes)
            if len(sizes) > 1:  # a pinpoint too big for one size may still be the pick (and fit) for another
                for p in pins:
                    if p in fits:
                        continue
                    trial = [q for q in pins if q in fits or q == p]
                    n = _counts(dict(cfg, pinpoints=trial), vision, connector, sizes)
                    if max(n) <= max_tokens and sum(n) > sum(best):
                        fits, best = trial, n
            return dict(cfg, pinpoints=fits), best
    elif name == "native":
        found = _fit_native(cfg, vision, connector, sizes, max_tokens)
        if found is not None:
            return found
    else:
        for c, n in zip(cands, per):
            if max(n) <= max_tokens:
                return c, n
    return None, min(max(n) for n in per + [full])


def fit_slicer(slicer: dict, vision: dict, connector: dict, image_size: Sequence[int], max_tokens: int) -> dict:
    """The slicer config of the largest knob setting whose token count for ``image_size`` fits ``max_tokens``."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise LoupeError(f"max_image_tokens must be a positive integer, got {max_tokens!r}")
    cfg = SLICERS.normalise(slicer)
    found, n = _fit_sizes(cfg, vision, connector, [tuple(image_size)], max_tokens)
    if found is not None:
        return found
    w, h = (int(v) for v in image_size)
    knob = SLICER_KNOBS.get(cfg["name"])
    how = f"the smallest {knob} setting" if knob else f"the {cfg['name']} slicer (it has no budget knob)"
    raise LoupeError(
        f"max_image_tokens={max_tokens} is below the minimum for this {w}x{h} image: {n} visual tokens "
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


# --- the equal-budget chooser: slicer knob x connector knob ----------------------------------------------------------
def _norm_all(slicer: dict, vision: dict, connector: dict) -> tuple[dict, dict, dict]:
    return SLICERS.normalise(slicer), ENCODERS.normalise(vision), CONNECTORS.normalise(connector)


def _extent(slicer: dict, vision: dict, connector: dict, sizes) -> tuple[int, int, int]:
    """(largest feature-map side of any tile, largest local-tile grid side, most local tiles of any anyres pinpoint)
    over ``sizes`` under the configured slicer: the ranges the connector knobs need."""
    geo = _geometry(slicer, vision, connector)
    side, tiles = 1, 1
    for s in sizes:
        lay = geo.layout(tuple(s))
        side = max([side] + [v for g in geo.grids(lay) for v in g])
        tiles = max([tiles] + list(lay.grid))
    most = 1
    if slicer["name"] == "anyres":
        t = int(slicer["tile_size"])
        most = max((int(p[0]) // t) * (int(p[1]) // t) for p in slicer["pinpoints"])
    return side, tiles, most


def _by_distance(values, configured):
    vals = sorted(set(values) | {configured})
    return sorted(vals, key=lambda v: (abs(v - configured), v))


def connector_settings(slicer: dict, vision: dict, connector: dict, sizes) -> list[tuple[dict, dict, dict]]:
    """(slicer, vision, connector) per setting of the connector's knob (:data:`CONNECTOR_KNOBS`), the configured
    one first, then by distance from it; a connector without a knob gives the configuration alone. Settings whose
    counts the parts reject (a pooling that does not divide a grid) are left out."""
    s, v, c = _norm_all(slicer, vision, connector)
    knob = CONNECTOR_KNOBS.get(c["name"])
    if knob is None:
        return [(s, v, c)]
    side, tiles, most = _extent(s, v, c, sizes)
    name = c["name"]
    out = []
    if name == "pixel_shuffle":
        k0 = round(1 / float(c["scale"]))
        for k in _by_distance(range(1, side + 1), k0):
            out.append((s, v, dict(c, scale=1.0 / k)))
    elif name == "patch_merge":
        for m in _by_distance(range(1, 5), int(c["merge_size"])):
            s2 = dict(s, merge_size=m) if "merge_size" in s else s
            v2 = v
            if isinstance(v.get("hf_config"), dict) and "spatial_merge_size" in v["hf_config"]:
                v2 = dict(v, hf_config=dict(v["hf_config"], spatial_merge_size=m))
            out.append((s2, v2, dict(c, merge_size=m)))
    else:
        top = {"pool": side, "grid_size": side, "out_scale": tiles, "max_num_patches": most}[knob]
        for val in _by_distance(range(1, max(top, 1) + 1), int(c[knob])):
            out.append((s, v, dict(c, **{knob: val})))
    keep = []
    for trip in out:
        try:
            if name == "mlp":  # pooling past a tile's side leaves it no token
                geo = _geometry(*trip)
                p = int(trip[2]["pool"])
                if any(min(g) < p for sz in sizes for g in geo.grids(geo.layout(tuple(sz)))):
                    continue
            _counts(*trip, sizes)
        except (LoupeError, ValueError):
            continue
        keep.append(trip)
    return keep


def _knob_value(cfg: dict, knob: str | None):
    if knob is None:
        return None
    val = cfg.get(knob)
    return [list(p) for p in val] if knob == "pinpoints" else val


@dataclass
class Fit:
    """A method fitted to a visual-token budget over a set of image sizes (:func:`fit_config`)."""

    slicer: dict
    vision: dict
    connector: dict
    budget: int
    sizes: list
    counts: list  # visual tokens per size, in ``sizes`` order
    knobs: dict = field(default_factory=dict)  # {"slicer": {knob: value}, "connector": {knob: value}}

    @property
    def max_tokens(self) -> int:
        return max(self.counts)

    @property
    def mean_tokens(self) -> float:
        return sum(self.counts) / len(self.counts)

    @property
    def below_budget(self) -> int:
        """How far the largest count sits below the budget (0: equal)."""
        return self.budget - self.max_tokens

    def overrides(self) -> dict:
        """``loupe.build(preset, **fit.overrides())`` builds the fitted model and processor."""
        return {"slicer": dict(self.slicer), "vision": dict(self.vision), "connector": dict(self.connector)}

    def to_json(self) -> dict:
        return json.loads(json.dumps({
            "budget": self.budget, "sizes": [list(s) for s in self.sizes], "counts": self.counts,
            "max_tokens": self.max_tokens, "mean_tokens": round(self.mean_tokens, 2),
            "below_budget": self.below_budget, "knobs": self.knobs, **self.overrides()}, default=list))


def fit_config(slicer: dict, vision: dict, connector: dict, budget: int, image_sizes: Sequence) -> Fit:
    """Fit a method to ``budget`` visual tokens per image over ``image_sizes`` ((W, H) each): one configuration for
    all sizes, through the slicer's knob and the connector's knob (module doc), whose largest count over the sizes
    is ``<= budget`` and as large as possible (then the largest total; ties: the connector setting nearest the
    preset). Raises :class:`~loupe.errors.LoupeError` naming the minimum when no setting fits."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise LoupeError(f"the visual-token budget must be a positive integer, got {budget!r}")
    sizes = [tuple(int(v) for v in s) for s in image_sizes]
    if not sizes:
        raise LoupeError("fit_config needs at least one image size")
    best, low = None, None
    for s, v, c in connector_settings(slicer, vision, connector, sizes):
        found, n = _fit_sizes(s, v, c, sizes, budget)
        if found is None:
            low = n if low is None else min(low, n)
            continue
        score = (max(n), sum(n))
        if best is None or score > best[0]:
            best = (score, found, v, c, n)
    s0, _, c0 = _norm_all(slicer, vision, connector)
    if best is None:
        sk, ck = SLICER_KNOBS.get(s0["name"]), CONNECTOR_KNOBS.get(c0["name"])
        knobs = " and ".join(f"{part} {k}" for part, k in ((s0["name"], sk), (c0["name"], ck)) if k) or "no knob"
        shown = ", ".join(f"{w}x{h}" for w, h in sizes[:4]) + (", ..." if len(sizes) > 4 else "")
        raise LoupeError(f"a budget of {budget} visual tokens is below the minimum for this method "
                         f"({s0['name']} slicer, {c0['name']} connector) on {shown}: {low} visual tokens at the "
                         f"smallest setting ({knobs})")
    _, s, v, c, n = best
    sk, ck = SLICER_KNOBS.get(s["name"]), CONNECTOR_KNOBS.get(c["name"])
    knobs = {"slicer": {sk: _knob_value(s, sk)} if sk else {}, "connector": {ck: _knob_value(c, ck)} if ck else {}}
    return Fit(slicer=s, vision=v, connector=c, budget=budget, sizes=sizes, counts=list(n), knobs=knobs)


def fit_preset(preset: str, budget: int, image_sizes: Sequence) -> Fit:
    """:func:`fit_config` on a registered preset's parts."""
    from .configuration import LoupeConfig
    from .presets import get_preset

    cfg = LoupeConfig(**get_preset(preset)["config"])
    return fit_config(cfg.slicer, cfg.vision, cfg.connector, budget, image_sizes)
