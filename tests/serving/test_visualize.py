"""loupe.visualize: token regions match the layout for every tiny preset, the attention map sums to 1 over the
visual tokens, the pixel density is exact, and ``loupe show`` writes PNG / HTML and refuses bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

import loupe
from loupe.errors import LoupeError
from loupe.presets import list_presets
from loupe.visualize import attention_map, density, token_regions, tokens_per_tile

TINY = [n for n in list_presets() if n.endswith("-tiny")]
SIZES = [(180, 120), (90, 160)]


def _geom(name):
    return loupe.build_processor(name).image_processor.geometry


def _area(b):
    return (b[2] - b[0]) * (b[3] - b[1])


def _bbox(boxes):
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def test_every_method_is_covered():
    assert {"llava15-tiny", "llava-next-tiny", "fila-tiny", "llava-uhd-v2-tiny", "inf-llava-tiny",
            "convllava-tiny"} <= set(TINY)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("size", SIZES)
def test_token_regions_match_the_layout(name, size):
    geom = _geom(name)
    layout = geom.layout(size)
    regions = token_regions(geom, layout)
    assert len(regions) == geom.num_tokens(layout)
    canvas = _bbox(layout.boxes)
    for r in regions:
        if r is not None:
            assert canvas[0] - 1e-6 <= r[0] < r[2] <= canvas[2] + 1e-6
            assert canvas[1] - 1e-6 <= r[1] < r[3] <= canvas[3] + 1e-6
    # tiles with their own block of tokens: those tokens' cells tile exactly that tile's box
    per, other = tokens_per_tile(geom, layout)
    assert sum(p for p in per if p is not None) + other == len(regions)
    start = 0
    name_ = type(geom.connector_cls).__name__
    if name_ in ("MLPConnector", "PixelShuffleConnector", "PatchMergeConnector"):
        for i, n in enumerate(per):
            cells = regions[start:start + n]
            assert _bbox(cells) == pytest.approx(layout.boxes[i])
            assert sum(map(_area, cells)) == pytest.approx(_area(layout.boxes[i]))
            start += n


def test_llava_next_unpadded_map_covers_the_image_not_the_padding():
    geom = _geom("llava-next-tiny")
    layout = geom.layout((150, 90))  # the 2x2 canvas pads above and below
    regions = token_regions(geom, layout)
    ov = layout.indices("overview")[0]
    n_ov = tokens_per_tile(geom, layout)[0][ov]
    assert _bbox(regions[:n_ov]) == pytest.approx(layout.boxes[ov])
    local = [r for r in regions[n_ov:] if r is not None]
    x0, y0, x1, y1 = _bbox(local)
    cell = local[0][3] - local[0][1]
    canvas = _bbox([layout.boxes[i] for i in layout.indices("local")])
    assert canvas[1] < -cell and canvas[3] > 90 + cell  # there is padding to remove
    # unpadding keeps the image's rows only (to the rounding of whole feature rows: within one cell)
    assert abs(y0) < cell and abs(y1 - 90) < cell and (y0, y1) != pytest.approx((canvas[1], canvas[3]))
    assert (x0, x1) == pytest.approx((canvas[0], canvas[2]))
    rows = sum(r is None for r in regions)
    assert rows == round((y1 - y0) / cell) and regions[-1] is None  # one newline per row, at the row end


def _tagged_connector(name, size):
    """The preset's connector with an identity projector, and per-tile features tagged with (tile, x, y)."""
    model, processor = loupe.build(name)
    geom = processor.image_processor.geometry
    layout = geom.layout(size)
    grids = geom.grids(layout)
    gw, gh = grids[0]
    feats = torch.zeros(layout.num_tiles, gh, gw, 3)
    for t in range(layout.num_tiles):
        feats[t, :, :, 0] = t
        feats[t, :, :, 1] = torch.arange(gw)[None, :].float()
        feats[t, :, :, 2] = torch.arange(gh)[:, None].float()
    return model.connector, geom, layout, feats


def test_llava_next_regions_follow_the_connectors_own_token_order():
    """Run the real connector on features that carry their (tile, x, y): every output token's tag must lie in
    the region token_regions gives it (and the newlines are the None entries)."""
    conn, geom, layout, feats = _tagged_connector("llava-next-tiny", (180, 70))
    conn.proj = torch.nn.Identity()
    conn.image_newline = torch.nn.Parameter(torch.full((3,), -1.0))
    out = conn(feats, [layout])[0]
    regions = token_regions(geom, layout)
    assert out.shape[0] == len(regions)
    for tok, r in zip(out.tolist(), regions):
        t, x, y = tok
        if r is None:
            assert t == -1
            continue
        assert t >= 0
        bx0, by0, bx1, by1 = layout.boxes[int(t)]
        gw, gh = geom.grids(layout)[int(t)]
        cx, cy = bx0 + (x + 0.5) * (bx1 - bx0) / gw, by0 + (y + 0.5) * (by1 - by0) / gh  # the feature's centre
        assert r[0] - 1e-6 <= cx <= r[2] + 1e-6 and r[1] - 1e-6 <= cy <= r[3] + 1e-6


@pytest.mark.parametrize("order", ["official", "stitched"])
def test_hiwin_regions_follow_organise(order):
    model, processor = loupe.build("llava-uhd-v2-tiny")
    geom = processor.image_processor.geometry
    conn = model.connector
    conn.config.token_order = order
    geom.connector_cfg.token_order = order
    layout = geom.layout((180, 120))
    g = conn.config.grid_size
    tokens = torch.zeros(layout.num_tiles, g * g, 3)
    for t in range(layout.num_tiles):
        tokens[t, :, 0] = t
        tokens[t, :, 1] = torch.arange(g).repeat(g).float()
        tokens[t, :, 2] = torch.arange(g).repeat_interleave(g).float()
    out = conn.organise(tokens, layout)  # the visual tokens; the separators are the plan's text spans
    regions = token_regions(geom, layout)
    from loupe.tokens import Visual

    is_visual = [isinstance(s, Visual) for s in geom.token_plan(layout) for _ in range(s.n)]
    assert len(regions) == len(is_visual) == geom.num_tokens(layout)
    assert all(r is None for r, v in zip(regions, is_visual) if not v)  # separators have no region
    visual_regions = [r for r, v in zip(regions, is_visual) if v]
    assert out.shape[0] == len(visual_regions) == geom.num_visual_tokens(layout)
    for (t, x, y), r in zip(out.tolist(), visual_regions):
        bx0, by0, bx1, by1 = layout.boxes[int(t)]
        cx, cy = bx0 + (x + 0.5) * (bx1 - bx0) / g, by0 + (y + 0.5) * (by1 - by0) / g
        assert r[0] - 1e-6 <= cx <= r[2] + 1e-6 and r[1] - 1e-6 <= cy <= r[3] + 1e-6


def test_density_is_exact_for_fractional_boxes():
    d = density([(0.5, 0.5, 2.5, 1.5), None, (-2.0, 0.0, 2.0, 1.0)], [1.0, 5.0, 1.0], (3, 2))
    want = np.zeros((2, 3))
    # box 1 (area 2, density 1/2): rows 0 and 1 half covered, columns 0 and 2 half, column 1 whole
    want += [[0.125, 0.25, 0.125], [0.125, 0.25, 0.125]]
    want[0, :2] += 0.25  # box 2 (area 4, density 1/4): pixels (0, 0) and (1, 0) whole; the half outside is lost
    assert d == pytest.approx(want)


@pytest.mark.parametrize("name", TINY)
def test_attention_map_sums_to_one_over_visual_tokens(name, img):
    torch.manual_seed(0)
    model, processor = loupe.build(name)
    model.eval()
    image = Image.open(__import__("io").BytesIO(img.png(150, 100, seed=5)))
    a = attention_map(model, processor, image, "what is here?", max_new_tokens=3)
    geom = processor.image_processor.geometry
    assert len(a.weights) == geom.num_tokens(a.layout) == processor.num_image_tokens(image)
    assert a.weights.sum() == pytest.approx(1.0) and (a.weights >= 0).all()
    assert a.layout.boxes == geom.layout(image.size).boxes
    assert a.regions == token_regions(geom, a.layout)
    assert a.dropped == [i for i, r in enumerate(a.regions) if r is None]
    assert a.dropped_mass == pytest.approx(float(a.weights[a.dropped].sum()) if a.dropped else 0.0)
    # the heat map holds the kept tokens' renormalised weight, minus what falls on the canvas padding
    kept = np.array([0.0 if r is None else w for w, r in zip(a.weights, a.regions)])
    kept /= kept.sum()
    W, H = image.size
    inside = sum(k * max(0, min(r[2], W) - max(r[0], 0)) * max(0, min(r[3], H) - max(r[1], 0)) / _area(r)
                 for k, r in zip(kept, a.regions) if r is not None)
    assert a.heat.shape == (H, W) and a.heat.sum() == pytest.approx(inside)
    assert a.answer_tokens >= 1


def test_attention_map_under_a_budget(img):
    from loupe.budget import choose_slicer

    torch.manual_seed(0)
    model, processor = loupe.build("llava-next-tiny")
    image = Image.open(__import__("io").BytesIO(img.png(150, 100, seed=6)))
    ip = processor.image_processor
    cfg = choose_slicer(ip.slicer, ip.vision, ip.connector, image.size, detail="low")
    a = attention_map(model, processor, image, "what?", max_new_tokens=2, slicer=cfg)
    assert len(a.weights) < processor.num_image_tokens(image)
    assert a.weights.sum() == pytest.approx(1.0)


# --- loupe show -----------------------------------------------------------------------------------------------------

def _show(capsys, *argv):
    from loupe.cli.main import main

    rc = main(["show", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_show_preset_png_and_html(tmp_path, capsys, img):
    path = tmp_path / "p.png"
    path.write_bytes(img.png(160, 100, seed=1))
    rc, out, err = _show(capsys, path, "--preset", "inf-llava-tiny", "--output", tmp_path / "o.png")
    assert rc == 0, err
    assert Image.open(tmp_path / "o.png").size[0] > 300
    assert "19 tiles, 16 visual tokens" in out
    rc, out, err = _show(capsys, path, "--preset", "llava-next-tiny", "--output", tmp_path / "o.html",
                         "--detail", "low")
    assert rc == 0, err
    page = (tmp_path / "o.html").read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page and "<table>" in page


def test_show_model_question_answers_like_chat(tmp_path, capsys, saved_model, img):
    from loupe.serving.chat import ChatSession, load

    path = tmp_path / "q.png"
    path.write_bytes(img.png(120, 90, seed=2))
    rc, out, err = _show(capsys, path, "--model", saved_model, "--question", "what is it?", "--max-new-tokens", 5,
                         "--output", tmp_path / "a.png")
    assert rc == 0, err
    model, processor = load(str(saved_model))
    answer = ChatSession(model, processor, max_new_tokens=5).ask("what is it?", [Image.open(path).convert("RGB")])
    assert f"answer: {answer}\n" in out
    assert "no spatial source" in out  # llava-next's newlines are dropped, and said so
    assert (tmp_path / "a.png").stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["--preset", "llava15-tiny", "--question", "hi"], "--question needs --model"),
    (["--preset", "llava15-tiny", "--output", "x.jpg"], "--output must end in .png or .html"),
    (["--preset", "no-such-preset"], "unknown preset"),
    (["--preset", "llava-next-tiny", "--max-image-tokens", "2"], "below the minimum"),
])
def test_show_refuses_bad_input(tmp_path, capsys, img, argv, message):
    path = tmp_path / "b.png"
    path.write_bytes(img.png(80, 60))
    rc, out, err = _show(capsys, path, *argv)
    assert rc == 2 and message in err and "Traceback" not in err


def test_show_refuses_a_missing_image(tmp_path, capsys):
    rc, out, err = _show(capsys, tmp_path / "nope.png", "--preset", "llava15-tiny")
    assert rc == 2 and "nope.png" in err
