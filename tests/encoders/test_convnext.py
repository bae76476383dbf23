"""ConvLLaVA's ConvNeXt encoder (spec §2.1, §2.4; paper §3.1, Tables 2-5): sizes, tokens, FLOPs, key maps, freezing.

Real sizes are checked on the ``meta`` device (no weights); numerics use small random towers. The timm/open_clip
names are listed here independently of :mod:`loupe.encoders.convnext` (from timm's ``ConvNeXt`` layout), and a
pure-torch reference forward over those names checks the map and the forward together.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

import loupe
from loupe.encoders.convnext import (CONVNEXT_L, CONVNEXT_L_5STAGE, ConvNeXtEncoder, convert_hf_to_timm,
                                     load_state_dict_any, match_state_dict)
from loupe.errors import LoupeError
from loupe.geometry import ImageGeometry
from transformers import ConvNextConfig, ConvNextModel

SMALL = dict(depths=(2, 1, 2, 1), hidden_sizes=(8, 16, 24, 32))
SMALL5 = dict(depths=(2, 1, 2, 1, 2), hidden_sizes=(8, 16, 24, 32, 40))


def enc(select_layer=-1, **arch) -> ConvNeXtEncoder:
    return ConvNeXtEncoder(ConvNeXtEncoder.Config(**arch, select_layer=select_layer))


def timm_shapes(depths, hidden_sizes, head=True) -> dict:
    """Key -> shape of a timm ``convnext_*`` trunk (open_clip ``visual.trunk``), written out from timm's layout."""
    c0, out = hidden_sizes[0], {}
    out.update({"stem.0.weight": (c0, 3, 4, 4), "stem.0.bias": (c0,), "stem.1.weight": (c0,), "stem.1.bias": (c0,)})
    prev = c0
    for s, (d, c) in enumerate(zip(depths, hidden_sizes)):
        if s > 0:
            out.update({f"stages.{s}.downsample.0.weight": (prev,), f"stages.{s}.downsample.0.bias": (prev,),
                        f"stages.{s}.downsample.1.weight": (c, prev, 2, 2), f"stages.{s}.downsample.1.bias": (c,)})
        for b in range(d):
            p = f"stages.{s}.blocks.{b}."
            out.update({p + "gamma": (c,), p + "conv_dw.weight": (c, 1, 7, 7), p + "conv_dw.bias": (c,),
                        p + "norm.weight": (c,), p + "norm.bias": (c,), p + "mlp.fc1.weight": (4 * c, c),
                        p + "mlp.fc1.bias": (4 * c,), p + "mlp.fc2.weight": (c, 4 * c), p + "mlp.fc2.bias": (c,)})
        prev = c
    if head:
        out.update({"head.norm.weight": (prev,), "head.norm.bias": (prev,)})
    return out


def random_sd(shapes: dict, seed=0, dtype=torch.float32) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g, dtype=dtype) * 0.2 for k, s in shapes.items()}


def timm_reference(sd: dict, x: torch.Tensor, depths) -> torch.Tensor:
    """timm ConvNeXt forward written directly over timm names (LayerNorm2d = LN over channels)."""
    def ln2d(x, p):
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], sd[p + ".weight"], sd[p + ".bias"], 1e-6)
        return y.permute(0, 3, 1, 2)

    x = ln2d(F.conv2d(x, sd["stem.0.weight"], sd["stem.0.bias"], stride=4), "stem.1")
    for s, d in enumerate(depths):
        if s > 0:
            x = F.conv2d(ln2d(x, f"stages.{s}.downsample.0"), sd[f"stages.{s}.downsample.1.weight"],
                         sd[f"stages.{s}.downsample.1.bias"], stride=2)
        for b in range(d):
            p = f"stages.{s}.blocks.{b}."
            y = F.conv2d(x, sd[p + "conv_dw.weight"], sd[p + "conv_dw.bias"], padding=3, groups=x.shape[1])
            y = y.permute(0, 2, 3, 1)
            y = F.layer_norm(y, y.shape[-1:], sd[p + "norm.weight"], sd[p + "norm.bias"], 1e-6)
            y = F.linear(F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                         sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
            x = x + (sd[p + "gamma"] * y).permute(0, 3, 1, 2)
    return x.permute(0, 2, 3, 1)


# --- sizes and tokens (meta device) ------------------------------------------------------------------------
def test_parameter_counts_meta():
    with torch.device("meta"):
        e4, e5 = enc(**CONVNEXT_L), enc(**CONVNEXT_L_5STAGE)
    n4, n5 = (sum(p.numel() for p in e.parameters()) for e in (e4, e5))
    s5 = sum(p.numel() for p in e5.stage_modules()["stage5"].parameters())
    assert n4 == 196_227_264 == ConvNeXtEncoder.num_parameters(e4.config)
    assert abs(n4 + 1536 * 1000 + 1000 + 2 * 1536 - 197.77e6) / 197.77e6 < 1e-4  # timm convnext_large with head
    assert abs(n4 - 200e6) / 200e6 < 0.02  # paper Table 2 prints "200M" (rounded)
    assert s5 == 472_934_400 and abs(s5 - 0.47e9) / 0.47e9 < 0.01  # spec §2.1 "about 0.47B"
    assert n5 == n4 + s5 == ConvNeXtEncoder.num_parameters(e5.config)


@pytest.mark.parametrize("res,tokens", [(768, 144), (1024, 256), (1536, 576)])
def test_token_counts_five_stage(res, tokens):
    cfg = loupe.build_config(f"convllava-7b-{res}")
    assert ImageGeometry.from_config(cfg).num_tokens((res, res)) == tokens
    assert ImageGeometry.from_config(cfg).num_tokens((res // 2, res * 3)) == tokens  # padded to a square


def test_four_stage_tokens_and_non_square_meta_forward():
    for name, res, tokens in [("convnext-l-512", 512, 256), ("convnext-l-768", 768, 576)]:
        assert ImageGeometry.from_config(loupe.build_config(name)).num_tokens((res, res)) == tokens
    cfg = ConvNeXtEncoder.Config(**CONVNEXT_L_5STAGE)
    assert ConvNeXtEncoder.feature_grid(cfg, (2304, 1536)) == (36, 24)  # (W, H) -> (grid_w, grid_h)
    with torch.device("meta"):
        e = ConvNeXtEncoder(cfg)
        assert e(torch.empty(1, 3, 1536, 2304)).shape == (1, 24, 36, 3072)
        assert e(torch.empty(2, 3, 1536, 1536)).shape == (2, 24, 24, 3072)


def test_flops_analytic_equals_flop_counter_and_anchors():
    cfg5, cfg4 = ConvNeXtEncoder.Config(**CONVNEXT_L_5STAGE), ConvNeXtEncoder.Config(**CONVNEXT_L)
    for cfg, res, anchor in [(cfg5, 1536, 3.776e12), (cfg4, 768, 0.808e12), (cfg5, 1024, 1.678e12)]:
        with torch.device("meta"):
            e = ConvNeXtEncoder(cfg)
            with FlopCounterMode(display=False) as fc:
                e(torch.empty(1, 3, res, res))
        f = ConvNeXtEncoder.flops(cfg, (res, res))
        assert fc.get_total_flops() == f["total"]
        assert abs(f["total"] - anchor) / anchor < 1e-3  # performance-anchors.md §4
    f = ConvNeXtEncoder.flops(cfg5, (1536, 1536))
    assert [round(f[k] / 1e12, 2) for k in ("stage2", "stage3", "stage4", "stage5")] == [0.29, 2.39, 0.28, 0.54]


# --- weights in both namings -----------------------------------------------------------------------------
def test_timm_and_hf_namings_load_strictly_and_agree():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96, 64, dtype=torch.float64)
    timm_sd = random_sd(timm_shapes(**SMALL), dtype=torch.float64)
    a = enc(**SMALL).double()
    rep = load_state_dict_any(a, timm_sd)
    assert (rep.naming, rep.initialised, rep.ignored) == ("timm", [], ["layernorm.weight", "layernorm.bias"])
    assert rep.loaded == len(a.convnext.state_dict())
    torch.testing.assert_close(a(x), timm_reference(timm_sd, x, SMALL["depths"]), rtol=1e-10, atol=1e-10)
    # HF names: from the loaded tower; round trip through the timm names, and under LLaVA/open_clip prefixes
    hf_sd = dict(a.convnext.state_dict())
    assert set(convert_hf_to_timm(hf_sd)) == set(timm_shapes(**SMALL, head=False))
    for sd in (hf_sd, {"model.vision_tower.vision_tower." + k: v for k, v in hf_sd.items()},
               {**{"visual.trunk." + k: v for k, v in timm_sd.items()}, "visual.head.proj.weight": torch.ones(2)}):
        b = enc(**SMALL).double()
        rep = load_state_dict_any(b, sd)
        assert rep.loaded == len(hf_sd) and rep.initialised == []
        assert torch.equal(b(x), a(x))


def test_real_size_key_names_map_one_to_one_on_meta():
    with torch.device("meta"):
        e4, e5 = enc(**CONVNEXT_L), enc(**CONVNEXT_L_5STAGE)
        hf = ConvNextModel(ConvNextConfig(depths=[3, 3, 27, 3], hidden_sizes=[192, 384, 768, 1536])).state_dict()
    timm = {k: torch.empty(s, device="meta") for k, s in timm_shapes(**CONVNEXT_L).items()}
    shapes = {k: tuple(v.shape) for k, v in convert_hf_to_timm(hf).items()}
    assert shapes == {k: tuple(v.shape) for k, v in timm.items()}
    for sd in (hf, timm):
        mapped, rep = match_state_dict(e4, sd)
        assert rep.loaded == len(e4.convnext.state_dict()) == len(sd) - 2 and rep.initialised == []
        mapped, rep = match_state_dict(e5, sd)  # the LAION 4-stage tower into ConvNeXt†: stage 5 is fresh
        assert rep.initialised == ["stage5"] and rep.ignored == ["layernorm.weight", "layernorm.bias"]


def test_missing_unexpected_and_misshaped_keys_are_named():
    e = enc(**SMALL)
    sd = random_sd(timm_shapes(**SMALL))
    named = r"missing \['encoder\.stages\.2\.layers\.1\.pwconv1\.weight \(= stages\.2\.blocks\.1\.mlp\.fc1\.weight\)'\]"
    with pytest.raises(LoupeError, match=named):
        load_state_dict_any(e, {k: v for k, v in sd.items() if k != "stages.2.blocks.1.mlp.fc1.weight"})
    with pytest.raises(LoupeError, match=r"unexpected \['stages\.0\.blocks\.0\.extra'\]"):
        load_state_dict_any(e, {**sd, "stages.0.blocks.0.extra": torch.ones(1)})
    hf_sd = e.convnext.state_dict()
    with pytest.raises(LoupeError, match=r"1 missing \['embeddings\.layernorm\.bias'\], 1 unexpected \['encoder\.x'\]"):
        load_state_dict_any(e, {**{k: v for k, v in hf_sd.items() if k != "embeddings.layernorm.bias"}, "encoder.x": 1})
    with pytest.raises(LoupeError, match=r"encoder\.stages\.1\.layers\.0\.dwconv\.weight: checkpoint \(16, 1, 5, 5\)"):
        load_state_dict_any(e, {**sd, "stages.1.blocks.0.conv_dw.weight": torch.ones(16, 1, 5, 5)})
    with pytest.raises(LoupeError, match="missing"):  # a middle stage may not be absent
        load_state_dict_any(e, {k: v for k, v in sd.items() if not k.startswith("stages.1.")})


def test_hf_folder_into_five_stages_initialises_stage5(tmp_path):
    torch.manual_seed(0)
    hf = ConvNextModel(ConvNextConfig(depths=list(SMALL["depths"]), hidden_sizes=list(SMALL["hidden_sizes"]),
                                      layer_scale_init_value=0.5)).eval()
    hf.save_pretrained(tmp_path)
    e4, e5 = enc(**SMALL), enc(**SMALL5)
    assert e4.load_pretrained(str(tmp_path)).initialised == []
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(e4(x), hf(x).last_hidden_state.permute(0, 2, 3, 1))
    with torch.no_grad():
        e5.convnext.encoder.stages[4].layers[0].layer_scale_parameter.fill_(7.0)
    rep = e5.load_pretrained(str(tmp_path))
    assert rep.initialised == ["stage5"] and "stage5" in str(rep)
    s5 = e5.convnext.encoder.stages[4]
    assert torch.all(s5.layers[0].layer_scale_parameter == 1e-6) and torch.all(s5.layers[0].pwconv1.bias == 0)
    assert abs(float(s5.layers[0].pwconv1.weight.detach().std()) - 0.02) < 0.002
    w5, w = e5.convnext.encoder.stages[2].layers[1].pwconv2.weight, hf.encoder.stages[2].layers[1].pwconv2.weight
    assert torch.equal(w5, w)
    sd = {"visual.trunk." + k: v for k, v in convert_hf_to_timm(hf.state_dict()).items()}  # open_clip, one file
    torch.save({"state_dict": {**sd, "text.proj": torch.ones(1)}}, tmp_path / "open_clip.bin")
    e4b = enc(**SMALL)
    rep = e4b.load_pretrained(str(tmp_path / "open_clip.bin"))
    assert (rep.naming, rep.prefix, rep.ignored[0]) == ("timm", "visual.trunk.", "text.proj")
    torch.testing.assert_close(e4b(x), e4(x))
    with pytest.raises(LoupeError, match="not found"):
        e5.load_pretrained(str(tmp_path / "nope"))


def test_select_layer_minus_two_skips_the_last_block():
    torch.manual_seed(0)
    a, b = enc(**SMALL), enc(select_layer=-2, **SMALL)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    a.convnext.encoder.stages[-1].layers.pop(-1)  # what the official tower does for -2 (then reads the last stage)
    torch.testing.assert_close(b(x), a(x))
    f = ConvNeXtEncoder.flops(b.config, (64, 64))["total"]
    assert f < ConvNeXtEncoder.flops(a.config, (64, 64))["total"]


# --- behaviour -----------------------------------------------------------------------------------------
def test_translation_equivariance_64px():
    torch.manual_seed(0)
    e = enc(depths=(1, 1, 1, 1, 1), hidden_sizes=(8, 8, 8, 8, 8)).double().eval()
    for p in e.parameters():  # make blocks matter (layer scale 1e-6 would hide the convolutions)
        torch.nn.init.normal_(p, 0.0, 0.3)
    x = torch.randn(1, 3, 128, 64 * 16, dtype=torch.float64)
    shifted = torch.cat([torch.randn(1, 3, 128, 64, dtype=torch.float64), x[..., :-64]], dim=-1)
    with torch.no_grad():
        y, ys = e(x), e(shifted)  # (1, 2, 16, 8)
    m = 6  # tokens whose receptive field (~+-380 px) touches the left/right zero padding
    torch.testing.assert_close(ys[:, :, 1 + m:-m], y[:, :, m:-m - 1], rtol=1e-9, atol=1e-9)
    assert not torch.allclose(ys[:, :, 1:], y[:, :, :-1])  # the border does differ


def test_tiny_preset_end_to_end():
    torch.manual_seed(0)
    model, processor = loupe.build("convllava-tiny")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8))
    batch = processor(images=img, text="<image>\nWhat is shown?")
    assert batch["pixel_values"].shape == (1, 3, 128, 128)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 4  # 128 / 64 = 2 x 2 tokens
    with torch.no_grad():
        out = model(**batch)
    assert out.image_hidden_states[0].shape == (4, 64) and torch.isfinite(out.logits).all()


def test_freeze_before_stage3_freezes_exactly_stem_and_stages_1_2():
    model = loupe.build_model("convllava-tiny")
    tower = model.vision_tower
    assert tower.freeze_before(3) == ["stage3", "stage4", "stage5"]
    prefixes = tower.stage_prefixes()
    frozen = tuple(prefixes[k] for k in ("stem", "stage1", "stage2"))
    params = [(n, p) for n, p in model.named_parameters() if n.startswith("vision_tower.")]
    assert all(n.startswith(tuple(prefixes.values())) for n, _ in params)  # the prefixes partition the tower
    assert {n for n, p in params if not p.requires_grad} == {n for n, _ in params if n.startswith(frozen)}
    assert any(n.startswith(prefixes["stage3"] + "downsampling_layer") and p.requires_grad for n, p in params)
    tower.freeze_before(0)
    assert all(p.requires_grad for _, p in params)
    with pytest.raises(LoupeError):
        tower.freeze_before("stage9")
