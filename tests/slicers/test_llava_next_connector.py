"""``llava_next`` connector: counts equal outputs, the official merge order, and the tiny preset end to end."""

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

import loupe
from loupe import connectors, slicers
from loupe.geometry import ImageGeometry
from loupe.presets import get_preset


def reference_merge(feats, proj, newline, grid, image_size):
    """The official spatial_unpad merge written out: permute(4,0,2,1,3), transformers' unpad_image, newline."""
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    x = proj(feats)  # (1 + n, gh, gw, D)
    base, tiles = x[0].flatten(0, 1), x[1:]
    cols, rows = grid
    gh, gw, d = tiles.shape[1:]
    f = tiles.view(rows, cols, gh, gw, d).permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)  # (D, rows*gh, cols*gw)
    f = unpad_image(f, (image_size[1], image_size[0]))
    f = torch.cat([f, newline[:, None, None].expand(*f.shape[:-1], 1)], dim=-1)
    return torch.cat([base, f.flatten(1, 2).transpose(0, 1)], 0)


def make(merge="spatial_unpad", tile=56, pins=None, rounding="transformers"):
    pins = pins or [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]
    slicer = slicers.build({"name": "anyres", "tile_size": tile, "pinpoints": pins})
    cfg = connectors.get("llava_next").Config(merge=merge, unpad_rounding=rounding)
    torch.manual_seed(0)
    return slicer, connectors.get("llava_next")(cfg, in_dim=8, out_dim=6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4096), st.integers(1, 4096), st.sampled_from(["spatial_unpad", "spatial", "flat"]),
       st.sampled_from(["transformers", "official"]))
@example(1, 2000, "spatial_unpad", "transformers")
@example(3000, 20, "spatial_unpad", "official")
def test_num_tokens_equals_forward(w, h, merge, rounding):
    slicer, con = make(merge, rounding=rounding)
    lay = slicer.plan((w, h))
    grids = [(4, 4)] * lay.num_tiles
    feats = torch.randn(lay.num_tiles, 4, 4, 8)
    (out,) = con(feats, [lay])
    assert out.shape == (con.num_tokens(con.config, lay, grids), 6)


@pytest.mark.parametrize("size", [(1000, 700), (700, 1000), (100, 30), (168, 56), (1, 2000)])
def test_forward_equals_official_merge(size):
    slicer, con = make()
    lay = slicer.plan(size)
    feats = torch.randn(lay.num_tiles, 4, 4, 8)
    with torch.no_grad():
        (out,) = con(feats, [lay])
        ref = reference_merge(feats, con.proj, con.image_newline, lay.grid, size)
    assert torch.equal(out, ref)


def test_batch_of_images_equals_one_by_one():
    slicer, con = make()
    lays = [slicer.plan(s) for s in [(100, 30), (200, 200), (30, 170)]]
    feats = torch.randn(sum(lay.num_tiles for lay in lays), 4, 4, 8)
    with torch.no_grad():
        batch = con(feats, lays)
        singles, k = [], 0
        for lay in lays:
            singles += con(feats[k : k + lay.num_tiles], [lay])
            k += lay.num_tiles
    assert all(torch.equal(a, b) for a, b in zip(batch, singles))


def test_flat_and_spatial_counts_and_newline_init():
    c = get_preset("llava-next-7b")["config"]
    counts = {m: ImageGeometry(c["slicer"], c["vision"], {**c["connector"], "merge": m}).num_tokens((672, 672))
              for m in ("spatial_unpad", "spatial", "flat")}
    assert counts == {"spatial_unpad": 2928, "spatial": 5 * 576, "flat": 5 * 576}
    torch.manual_seed(0)
    con = connectors.get("llava_next")(connectors.get("llava_next").Config(), in_dim=1024, out_dim=4096)
    assert abs(float(con.image_newline.detach().std()) - 4096**-0.5) < 2e-3  # randn(D) / sqrt(D)
    assert set(con.state_dict()) == {"proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias", "image_newline"}


def test_real_size_meta_2928():
    with torch.device("meta"):
        model = loupe.build_model("llava-next-7b")
    lay = model.geometry.layout((672, 672))
    feats = model.vision_tower(torch.empty(lay.num_tiles, 3, 336, 336, device="meta"))
    assert model.connector(feats, [lay])[0].shape == (2928, 4096) and model.geometry.num_tokens((672, 672)) == 2928


@pytest.fixture(scope="module")
def tiny_next():
    torch.manual_seed(0)
    model, proc = loupe.build("llava-next-tiny")
    return model.eval(), proc


@pytest.mark.parametrize("size", [(56, 56), (100, 40), (30, 170), (200, 200), (1, 1), (400, 90)])
def test_tiny_preset_end_to_end_counts(tiny_next, size):
    model, proc = tiny_next
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    batch = proc(images=[img], text=["USER: <image>\nwhat is it? ASSISTANT:"])
    n = proc.num_image_tokens(img)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == n
    with torch.no_grad():
        out = model(**batch)
    assert out.image_hidden_states[0].shape == (n, model.config.text_config.hidden_size)
    assert proc.num_image_tokens(size) == n


def test_save_load_round_trip(tiny_next, tmp_path):
    model, proc = tiny_next
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    proc2 = loupe.LoupeProcessor.from_pretrained(str(tmp_path))
    model2 = loupe.LoupeForConditionalGeneration.from_pretrained(str(tmp_path))
    assert proc2.image_processor.slicer == proc.image_processor.slicer
    sizes = [(300, 100), (88, 55), (1000, 700)]
    assert [proc2.num_image_tokens(s) for s in sizes] == [proc.num_image_tokens(s) for s in sizes]
    assert torch.equal(model2.connector.image_newline, model.connector.image_newline)
