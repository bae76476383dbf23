"""One helper per fact (#18): one pad-to-square, one size check, one CLIP mean, and the pad fill follows the
encoder's own mean in every preset (LLaVA's ``tuple(int(x * 255) for x in image_processor.image_mean)``)."""

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import loupe
from loupe import LoupeError, slicers
from loupe.images import CLIP_MEAN, check_size
from loupe.presets import get_preset, list_presets
from loupe.registry import ENCODERS, SLICERS
from loupe.slicers import geometry
from loupe.slicers.pad import expand2square, fill_colour

SRC = Path(loupe.__file__).parent


def test_clip_mean_is_defined_once():
    from loupe.encoders import clip
    from loupe.slicers import pad

    assert clip.CLIP_MEAN is pad.CLIP_MEAN is CLIP_MEAN
    literal = "0.48145466"
    defined = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if literal in p.read_text()]
    assert defined == ["images.py"], defined


def test_one_expand2square_in_the_slicers():
    """``Image.new`` (a padded canvas) is written once, in ``pad.paste_on_canvas`` (behind ``expand2square`` and the
    canvas mode); dcm and aspect call it."""
    calls = {}
    for p in (SRC / "slicers").glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "new":
                calls.setdefault(p.name, []).append(node.lineno)
    assert list(calls) == ["pad.py"] and len(calls["pad.py"]) == 1, calls


@pytest.mark.parametrize("spec", [{"name": "pad", "tile_size": 60}, {"name": "aspect", "mode": "square", "short_side": 64},
                                  {"name": "dcm", "tile_size": 20, "size": 60, "overview": "pil"}], ids=lambda s: s["name"])
@pytest.mark.parametrize("fill", [None, (0.5, 0.25, 1.0)])
def test_square_slicers_pad_with_expand2square(spec, fill):
    """The three padding slicers see exactly ``expand2square(image, fill)``: slicing the padded square gives the same
    tiles as slicing the original (odd padding, any fill)."""
    spec = dict(spec) if fill is None else {**spec, "fill": fill}
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (31, 52, 3), dtype=np.uint8))
    sq = expand2square(img, fill or CLIP_MEAN)
    assert sq.size == (52, 52) and sq.getpixel((0, 0)) == fill_colour(fill or CLIP_MEAN)
    assert sq.getpixel((0, 51)) == fill_colour(fill or CLIP_MEAN)  # the odd row goes to the bottom
    s = slicers.build(spec)
    a, _ = s.slice(img)
    b, _ = s.slice(sq)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert expand2square(sq) is sq  # a square image is returned as is


@pytest.mark.parametrize("size,cap", [((0, 5), None), ((5, -1), None), ((300, 300), 1000)])
def test_one_size_check(size, cap):
    """The slicers' check and the loader's are one function: the same message for the same size."""
    with pytest.raises(LoupeError) as a:
        geometry.check_size(size, cap)
    with pytest.raises(LoupeError) as b:
        check_size(*size, max_pixels=cap, knob="max_pixels")
    assert str(a.value) == str(b.value)
    assert "zero-size side" in str(a.value) or "over the cap of 1,000 (possible decompression bomb); raise max_pixels" in str(a.value)
    assert "demo-convllava" in PADDING and len(PADDING) >= 10
    assert geometry.check_size((7.0, 3), None) == (7, 3) == check_size(7.0, 3)
    assert not hasattr(slicers.Slicer, "check_image_size")


PADDING = [n for n in sorted(list_presets()) if "fill" in SLICERS.normalise(get_preset(n)["config"]["slicer"])]


@pytest.mark.parametrize("name", PADDING)
def test_pad_fill_is_the_encoders_mean(name):
    """LLaVA's rule (``expand2square(image, tuple(int(x*255) for x in image_processor.image_mean))``): the padding
    normalises to ~0. ``demo-convllava`` and ``demo-lowres`` used to normalise with 0.5 and pad with CLIP's mean."""
    cfg = get_preset(name)["config"]
    s = SLICERS.normalise(cfg["slicer"])
    assert fill_colour(s["fill"]) == fill_colour(ENCODERS.config(cfg["vision"]).image_mean)


# What a package user does not have: the development specs' section numbers and paths. Docstrings cite the paper
# and section, or the official repository file and function, instead.
PRIVATE = ("spec §", "../shared", "shared/specs", "shared/papers", "performance-anchors", "performance anchors §",
           "demo-learning-facts", "errata", "seed-methods.md")


def test_docstrings_cite_no_private_paths():
    found = [f"{p.relative_to(SRC).as_posix()}:{i}: {line.strip()}"
             for p in sorted(SRC.rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if any(s in line for s in PRIVATE)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("name,opts,grid,out", [("mlp", {"pool": 2}, (24, 24), (12, 12)),
                                                ("pixel_shuffle", {}, (32, 32), (16, 16)),
                                                ("patch_merge", {}, (8, 6), (4, 3))])
def test_per_tile_plan_is_one_helper(name, opts, grid, out):
    """The connectors that keep tiles apart build their plan with ``tokens.per_tile`` (one Visual per tile)."""
    from loupe.registry import CONNECTORS
    from loupe.tokens import Visual, per_tile

    cls = CONNECTORS.get(name)
    lay = slicers.Layout(image_size=(10, 10), tile_sizes=((1, 1),) * 2, roles=("overview", "local"))
    plan = [s for s in cls.token_plan(CONNECTORS.config({"name": name, **opts}), lay, [grid, grid])
            if isinstance(s, Visual)]
    assert tuple(plan) == per_tile([out, out], lay.roles)
    assert plan[0] == Visual(out[0] * out[1], grid=out, role="overview")
