"""The equal-budget chooser (loupe.budget.fit_config): on every demo and tiny preset, the fitted configuration's
counts fit the budget and nothing in the joint space of slicer knob x connector knob gives more tokens (checked by
brute force, built here independently of the chooser); the next knob step up overshoots; below the minimum it is
refused with the minimum named."""

import itertools

import pytest

from loupe import budget
from loupe.configuration import LoupeConfig
from loupe.errors import LoupeError
from loupe.presets import get_preset
from loupe.presets.demo import DEMO_SIZES

TINY_SIZES = [(300, 200), (120, 300), (200, 200)]
PRESETS = ["demo-lowres", "demo-anyres", "demo-inf-llava", "demo-convllava", "demo-uhd-v2", "demo-fila",
           "llava15-tiny", "llava-next-tiny", "fila-tiny", "inf-llava-tiny", "convllava-tiny", "llava-uhd-v2-tiny",
           "internvl-tiny", "llava-onevision-tiny", "qwen2-vl-tiny"]
BUDGETS = [4, 16, 64, 256]


def _parts(name):
    c = LoupeConfig(**get_preset(name)["config"])
    return c.slicer, c.vision, c.connector


def _counts(s, v, c, sizes):
    try:
        return [budget.count(s, v, c, sz) for sz in sizes]
    except (LoupeError, ValueError):
        return None


def _connector_space(s, v, c, sizes):
    """Every connector knob value 1..12 (scale 1/k), built here from the knob table's names only; the documented
    ranges: a window (hiwin) or DEM output cell no finer than the map it pools (beyond, the map is up-sampled)."""
    from loupe.geometry import ImageGeometry

    knob = budget.CONNECTOR_KNOBS.get(c["name"])
    if knob is None:
        return [(s, v, c)]
    geo = ImageGeometry(s, v, c)
    lays = [geo.layout(sz) for sz in sizes]
    side = max(x for lay in lays for g in geo.grids(lay) for x in g)
    tiles = max([1] + [x for lay in lays for x in lay.grid])
    out = []
    for k in range(1, 13):
        if (knob == "grid_size" and k > side) or (knob == "out_scale" and k > tiles):
            continue
        if knob == "scale":
            out.append((s, v, dict(c, scale=1.0 / k)))
        elif knob == "merge_size":
            if k > 4:
                continue
            out.append((dict(s, merge_size=k), dict(v, hf_config=dict(v["hf_config"], spatial_merge_size=k)),
                        dict(c, merge_size=k)))
        else:
            out.append((s, v, dict(c, **{knob: k})))
    return out


def _slicer_space(s):
    if s["name"] == "anyres":
        pins = [list(p) for p in s["pinpoints"]]
        if len(pins) <= 6:
            return [dict(s, pinpoints=list(sub)) for r in range(1, len(pins) + 1)
                    for sub in itertools.combinations(pins, r)]
        return [dict(s, pinpoints=[p]) for p in pins] + [s]
    if s["name"] == "native":
        f = s["patch_size"] * s["merge_size"]
        return [dict(s, max_pixels=t * f * f) for t in range(1, s["max_pixels"] // (f * f) + 1)
                if t * f * f >= s["min_pixels"]]
    return budget.settings(s)


def _brute_best(s0, v0, c0, sizes, cap):
    best = None
    for s, v, c in _connector_space(s0, v0, c0, sizes):
        if c["name"] == "mlp":  # a pooling wider than a tile's map leaves that tile no token: not a setting
            from loupe.geometry import ImageGeometry

            geo = ImageGeometry(s, v, c)
            if any(min(g) < c["pool"] for sz in sizes for g in geo.grids(geo.layout(sz))):
                continue
        for ss in _slicer_space(s):
            n = _counts(ss, v, c, sizes)
            if n is not None and max(n) <= cap:
                best = max(best or (0, 0), (max(n), sum(n)))
    return best


@pytest.mark.parametrize("preset", PRESETS)
def test_fit_config_is_maximal_under_the_budget(preset):
    s, v, c = _parts(preset)
    sizes = [tuple(x) for x in DEMO_SIZES] if preset.startswith("demo-") else TINY_SIZES
    for cap in BUDGETS:
        best = _brute_best(s, v, c, sizes, cap)
        if best is None:
            with pytest.raises(LoupeError, match=r"below the minimum.*: \d+ visual tokens at the smallest setting"):
                budget.fit_config(s, v, c, cap, sizes)
            continue
        fit = budget.fit_config(s, v, c, cap, sizes)
        n = [budget.count(fit.slicer, fit.vision, fit.connector, sz) for sz in sizes]
        assert n == fit.counts and max(n) <= cap and fit.below_budget == cap - max(n)
        # nothing in the joint knob space fits with more tokens (exhaustive up to 6 pinpoints, where the fit is itself
        # in the space, so this is equality; LLaVA-OneVision's 36: singles and the full set)
        assert (max(n), sum(n)) >= best, (preset, cap)
        # the next slicer step up (same connector) overshoots
        sname = fit.slicer["name"]
        if sname in ("uhd", "aspect", "internvl"):
            knob = budget.SLICER_KNOBS[sname]
            up = dict(fit.slicer, **{knob: fit.slicer[knob] + (fit.slicer.get("stride", 1) if sname == "aspect" else 1)})
            if up[knob] <= budget.SLICERS.normalise(s)[knob]:
                assert max(budget.count(up, fit.vision, fit.connector, sz) for sz in sizes) > cap
        if sname == "native":
            f = fit.slicer["patch_size"] * fit.slicer["merge_size"]
            up = dict(fit.slicer, max_pixels=fit.slicer["max_pixels"] + f * f)
            if up["max_pixels"] <= s["max_pixels"]:
                assert max(budget.count(up, fit.vision, fit.connector, sz) for sz in sizes) > cap
        # the next connector step toward less compression (same slicer) overshoots, or adds nothing
        ck = budget.CONNECTOR_KNOBS.get(fit.connector["name"])
        if ck in ("pool", "scale") and fit.connector[ck] != 1:
            less = dict(fit.connector, **{ck: fit.connector[ck] - 1 if ck == "pool"
                                          else 1.0 / (round(1 / fit.connector[ck]) - 1)})
            m = _counts(fit.slicer, fit.vision, less, sizes)
            assert m is None or max(m) > cap or m == n
        elif ck in ("grid_size", "out_scale", "max_num_patches"):
            more = dict(fit.connector, **{ck: fit.connector[ck] + 1})
            if more in [t[2] for t in _connector_space(s, v, c, sizes)]:  # inside the documented range
                m = _counts(fit.slicer, fit.vision, more, sizes)
                assert m is None or max(m) > cap or m == n


def test_fit_config_examples_and_the_server_path_share_the_tables():
    # demo-anyres at 64: 4x4 maps pooled 2x2, the 160x96 / 96x160 canvases only (128x128 alone would be 68)
    fit = budget.fit_preset("demo-anyres", 64, DEMO_SIZES)
    assert fit.counts == [64, 64, 64] and fit.knobs == {"slicer": {"pinpoints": [[160, 96], [96, 160]]},
                                                         "connector": {"pool": 2}}
    # the baseline has no slicer knob: its pooling goes down to 1 and stops (16 tokens, 48 below a budget of 64)
    low = budget.fit_preset("demo-lowres", 64, DEMO_SIZES)
    assert low.counts == [16, 16, 16] and low.below_budget == 48 and low.knobs["connector"] == {"pool": 1}
    # one image and the configured connector: fit_config picks the slicer setting fit_slicer (the server) picks
    s, v, c = _parts("llava-uhd-v2-tiny")
    for cap in (40, 90, 150):
        fs = budget.fit_slicer(s, v, c, (300, 200), cap)
        only = [t for t in budget.connector_settings(s, v, c, [(300, 200)]) if t[2] == budget.CONNECTORS.normalise(c)]
        assert len(only) == 1
        assert budget._fit_sizes(*only[0], [(300, 200)], cap)[0] == fs
    assert set(budget.KNOBS) == set(budget.SLICER_KNOBS)


def test_fit_config_refuses_bad_budgets_and_names_the_minimum():
    s, v, c = _parts("demo-anyres")
    with pytest.raises(LoupeError, match="below the minimum.*16 visual tokens"):
        budget.fit_config(s, v, c, 15, DEMO_SIZES)
    for bad in (0, -3, 2.5, True, "64"):
        with pytest.raises(LoupeError, match="positive integer"):
            budget.fit_config(s, v, c, bad, DEMO_SIZES)
    with pytest.raises(LoupeError, match="at least one image size"):
        budget.fit_config(s, v, c, 64, [])
