"""FILA's hybrid encoder (spec §4): zero-init = plain CLIP, region alignment of the ConvNeXt branch, the canvas
rebuilt from the tiles, interaction-layer plans, fusion variants, loading, FLOPs. Small random towers, CPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPVisionConfig, CLIPVisionModel, ConvNextConfig, ConvNextModel

from loupe.encoders.hybrid import HybridEncoder
from loupe.errors import LoupeError
from loupe.presets import get_preset
from loupe.registry import ENCODERS
from loupe.slicers import build as build_slicer
from loupe.slicers.base import normalize

TINY = get_preset("fila-tiny")["config"]


def encoder(**over) -> HybridEncoder:
    torch.manual_seed(0)
    return HybridEncoder(ENCODERS.config({**TINY["vision"], **over})).eval()


def tiles_for(size, seed=0):
    """(pixel_values, layout) of one random image of (W, H) through the fila-tiny anyres slicer."""
    slicer = build_slicer(TINY["slicer"])
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    tiles, layout = slicer.slice(img)
    return torch.from_numpy(normalize(np.stack(tiles), *_stats())), layout


def _stats():
    c = ENCODERS.config(TINY["vision"])
    return c.image_mean, c.image_std


def randomise_cvfm(enc: HybridEncoder, std=0.5):
    torch.manual_seed(1)
    for m in enc.cvfm:
        nn.init.normal_(m.last_layer().weight, std=std)


def plain_clip(enc: HybridEncoder, x: torch.Tensor) -> torch.Tensor:
    """transformers' own CLIPVisionModel on the same weights: hidden_states[-2], CLS dropped."""
    ref = CLIPVisionModel(CLIPVisionConfig(**enc.config.hf_config)).eval()
    ref.load_state_dict(enc.vision_model.state_dict())
    with torch.no_grad():
        return ref(x, output_hidden_states=True).hidden_states[-2][:, 1:]


@pytest.mark.parametrize("over", [{}, {"fusion": "add"}, {"fusion": "cross_attn"}, {"align": "conv"},
                                  {"align": "bilinear", "mlp_depth": 1}, {"interaction_layers": "stage_ends",
                                                                          "stages": (2, 4)}])
def test_zero_initialised_cvfm_is_exactly_plain_clip(over):
    enc = encoder(**over)
    x, lay = tiles_for((150, 100))
    with torch.no_grad():
        out = enc(x, [lay])
    assert out.shape == (5, 4, 4, 64)
    torch.testing.assert_close(out.reshape(5, 16, 64), plain_clip(enc, x), rtol=0, atol=0)
    randomise_cvfm(enc)
    with torch.no_grad():
        assert not torch.allclose(enc(x, [lay]).reshape(5, 16, 64), plain_clip(enc, x))


def test_zero_init_survives_model_post_init_and_fusion_none_is_clip():
    import loupe

    model = loupe.build_model("fila-tiny")
    assert all(float(m.last_layer().weight.detach().abs().sum()) == 0 for m in model.vision_tower.cvfm)
    none = loupe.build_model("fila-tiny", vision={"name": "hybrid", "fusion": "none"})
    assert none.vision_tower.conv_branch is None and none.vision_tower.cvfm is None
    assert not any("conv_branch" in n or "cvfm" in n for n, _ in none.named_parameters())
    clip = loupe.build_model("llava-next-tiny", vision={"name": "clip", "hf_config": TINY["vision"]["hf_config"]})
    # same ViT keys as the ``clip`` encoder: a LLaVA-NeXT tower loads into FILA's ViT unchanged
    assert set(clip.vision_tower.state_dict()) == set(none.vision_tower.state_dict())
    none.vision_tower.load_state_dict(clip.vision_tower.state_dict())
    x, lay = tiles_for((112, 56))
    with torch.no_grad():
        torch.testing.assert_close(none.vision_tower(x, [lay]), clip.vision_tower(x, [lay]), rtol=0, atol=0)


def test_canvas_is_rebuilt_exactly_from_the_tiles_then_resized():
    enc1 = encoder(conv_scale=1.0)
    x, lay = tiles_for((150, 100), seed=3)
    jobs = enc1.conv_jobs(x, [lay])
    assert [(j.tiles, j.grid) for j in jobs] == [([0], (1, 1)), ([1, 2, 3, 4], (2, 2))]
    # the canvas the anyres slicer pasted the image on (black padding), normalised, independently rebuilt
    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (100, 150, 3), dtype=np.uint8))
    (cw, ch), (x0, y0, x1, y1) = lay.canvas_size, lay.content_box
    canvas = np.zeros((ch, cw, 3), np.uint8)
    canvas[y0:y1, x0:x1] = np.asarray(img.resize((x1 - x0, y1 - y0), Image.BICUBIC))
    want = torch.from_numpy(normalize(canvas[None], *_stats()))[0]
    torch.testing.assert_close(jobs[1].image, want, rtol=0, atol=0)
    jobs = encoder().conv_jobs(x, [lay])  # default: 32/14 x -> 128 px per 56 px tile
    assert tuple(jobs[0].image.shape) == (3, 128, 128) and tuple(jobs[1].image.shape) == (3, 256, 256)
    up = torch.nn.functional.interpolate(want[None], size=(256, 256), mode="bicubic", antialias=True,
                                         align_corners=False)
    torch.testing.assert_close(jobs[1].image, up[0])


def test_region_alignment_feature_level(monkeypatch):
    """A change in stage-k features inside tile (r, c)'s block changes that tile's tokens only; fused after the last
    block, exactly the ViT tokens whose f x f block holds the changed cell."""
    enc = encoder(interaction_layers=(3,), stages=(2,))  # stage 2 (f = 4) after the last ViT block run
    randomise_cvfm(enc)
    x, lay = tiles_for((112, 112))  # 2x2 grid of 56 px tiles -> canvas stage-2 map 32x32, 16x16 per tile
    assert lay.grid == (2, 2)
    with torch.no_grad():
        base = enc(x, [lay])
    real = enc.conv_stage_maps

    def poked(images, last):
        maps = real(images, last)
        if images.shape[-1] == 256:  # the canvas pass: poke cell (y, x) = (21, 6): tile (1, 0), token (1, 1)
            maps[2] = maps[2].clone()
            maps[2][:, :, 21, 6] += 5.0
        return maps

    monkeypatch.setattr(enc, "conv_stage_maps", poked)
    with torch.no_grad():
        out = enc(x, [lay])
    changed = (out - base).abs().amax(-1) > 0  # (5 tiles, 4, 4)
    expect = torch.zeros_like(changed)
    expect[1 + 2 * 1 + 0, (21 - 16) // 4, 6 // 4] = True  # tile index 3 = row 1, col 0 (overview first)
    assert torch.equal(changed, expect)


def test_region_alignment_pixel_level():
    """A perturbation of the ConvNeXt input inside one tile's region, invisible to the ViT (its tiles are unchanged),
    changes only that tile's tokens when the ConvNeXt is local (depth 0: a pure patchify pyramid); with real blocks
    it also reaches the neighbour across the crop boundary, which is the point of the branch."""
    x, lay = tiles_for((168, 56), seed=5)  # 3x1 grid
    cols, rows = lay.grid
    assert (cols, rows) == (3, 1)
    for depths, neighbour_changes in (((0, 0, 0, 0), False), ((1, 1, 1, 1), True)):
        enc = encoder(convnext={**TINY["vision"]["convnext"], "depths": depths})
        randomise_cvfm(enc)
        jobs = enc.conv_jobs(x, [lay])
        with torch.no_grad():
            base = enc(x, [lay], jobs=jobs)
        canvas = jobs[1].image.clone()  # tile (r, c) = (0, 1) owns rows 0..127, cols 128..255 at 128 px per tile
        canvas[:, 10:120, 130:150] += torch.randn(3, 110, 20)
        jobs[1] = dataclasses.replace(jobs[1], image=canvas)
        with torch.no_grad():
            out = enc(x, [lay], jobs=jobs)
        changed = (out - base).abs().flatten(1).amax(1) > 0
        target = 1 + 0 * cols + 1
        assert bool(changed[target])
        assert bool(changed[target - 1]) == neighbour_changes  # tile (0, 0), left of the poked border
        if not neighbour_changes:
            assert changed.nonzero().flatten().tolist() == [target]


def test_interaction_plans_and_bad_options():
    c7 = ENCODERS.config(get_preset("fila-7b")["config"]["vision"])
    assert c7.plan() == [(6, 1), (12, 2), (18, 3), (23, 4)]
    assert [round(c7.factor(s), 9) for s in (1, 2, 3, 4)] == [8, 4, 2, 1]
    assert dataclasses.replace(c7, interaction_layers="blog").plan() == [(2, 1), (6, 2), (12, 3), (20, 4)]
    assert dataclasses.replace(c7, stages=(3, 4)).plan() == [(12, 3), (23, 4)]
    assert dataclasses.replace(c7, interaction_layers=(8, 16)).plan() == [(8, 3), (16, 4)]
    assert dataclasses.replace(c7, select_layer=-1).plan()[-1] == (24, 4)
    assert ENCODERS.config(TINY["vision"]).plan() == [(1, 1), (2, 2), (3, 3), (3, 4)]
    for bad, msg in (({"interaction_layers": (30,)}, "must lie in"), ({"interaction_layers": "quarters"}, "stage_ends"),
                     ({"fusion": "gate"}, "fusion must be"), ({"align": "max"}, "align must be"),
                     ({"stages": (1, 2)}, "2 stages"), ({"convnext": {"depth": 3}}, "bad convnext options")):
        with pytest.raises(LoupeError, match=msg):
            ENCODERS.config({**TINY["vision"], **bad, **({"interaction_layers": (1, 2, 3)} if "stages" in bad else {})})
    with pytest.raises(LoupeError, match="whole number"):
        HybridEncoder(ENCODERS.config({**TINY["vision"], "conv_scale": 2.0, "align": "conv"}))


def test_zero_init_still_learns():
    """The zero last layer gets gradient, so one step moves the encoder off plain CLIP; the ViT is untouched."""
    enc = encoder()
    enc.train()
    x, lay = tiles_for((112, 56))
    params = [p for m in enc.cvfm for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    enc(x, [lay]).pow(2).mean().backward()
    assert all(float(m.last_layer().weight.grad.abs().sum()) > 0 for m in enc.cvfm)
    opt.step()
    with torch.no_grad():
        assert not torch.allclose(enc(x, [lay]).reshape(3, 16, 64), plain_clip(enc, x))


def test_conv_overview_off_leaves_the_overview_plain():
    enc = encoder(conv_overview=False)
    randomise_cvfm(enc)
    x, lay = tiles_for((112, 112))
    with torch.no_grad():
        out = enc(x, [lay]).reshape(5, 16, 64)
    ref = plain_clip(enc, x)
    torch.testing.assert_close(out[0], ref[0], rtol=0, atol=0)
    assert not torch.allclose(out[1:], ref[1:])


def test_load_clip_and_convnext_folders(tmp_path):
    enc = encoder()
    clip = CLIPVisionModel(CLIPVisionConfig(**enc.config.hf_config))
    conv = ConvNextModel(ConvNextConfig(num_stages=4, depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 48, 64]))
    clip.save_pretrained(tmp_path / "clip")
    conv.save_pretrained(tmp_path / "convnext")
    enc.load_pretrained(str(tmp_path))
    torch.testing.assert_close(enc.vision_model.embeddings.patch_embedding.weight,
                               clip.embeddings.patch_embedding.weight)
    torch.testing.assert_close(enc.conv_branch.convnext.encoder.stages[2].layers[0].dwconv.weight,
                               conv.encoder.stages[2].layers[0].dwconv.weight)
    with pytest.raises(LoupeError, match="not found"):
        enc.load_pretrained(str(tmp_path / "nope"))


def test_analytic_flops_match_a_counted_forward():
    enc = encoder()
    x, lay = tiles_for((112, 112))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        enc(x, [lay])
    analytic = lay.num_tiles * HybridEncoder.flops(enc.config, (56, 56))["total"]
    assert abs(fc.get_total_flops() - analytic) / analytic < 0.02
