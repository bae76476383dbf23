"""Released LLaVA-UHD v2 key layout (spec §3.7) -> Loupe: zero missing / unexpected keys after the documented drops."""

import pytest
import torch

import loupe
from loupe.convert.llava_uhd_v2 import load_official
from loupe.errors import LoupeError

P, U = "model.mm_projector.", "model.mm_projector.upsampler.upsampler."


def official(model, make) -> dict:
    """Every key of a released checkpoint, written from the official module tree (not from Loupe's key map)."""
    d, c = model.config.text_config.hidden_size, model.vision_tower.out_dim
    g2 = model.connector.config.grid_size ** 2
    shapes = {P + "pos_embed": (g2, d), P + "query": (g2, d), P + "kv_proj.weight": (d, c), P + "proj": (d, d),
              P + "attn.in_proj_weight": (3 * d, d), P + "attn.in_proj_bias": (3 * d,),
              P + "attn.out_proj.weight": (d, d), P + "attn.out_proj.bias": (d,),
              P + "cat_proj.weight": (d, 4 * d), P + "cat_proj.bias": (d,), U + "fixup_proj.1.weight": (c, c, 1, 1),
              U + "fixup_proj.1.bias": (c,),
              P + "upsampler.model.0.vision_tower.vision_model.embeddings.class_embedding": (c,),
              P + "upsampler.model.1.norm.weight": (c,), P + "upsampler.model.1.norm.bias": (c,)}
    for k in range(1, 5):
        shapes[P + f"query_{k}"] = (g2, d)
    for lv in (1, 2, 4, 8):  # all four levels exist in the release, whatever feature_scale_mask
        shapes.update({P + f"feature_{lv}x_embedding": (1, 1, d), P + f"features_{lv}x_projector.weight": (d, c),
                       P + f"features_{lv}x_projector.bias": (d,)})
    for ln in ("ln_q", "ln_kv", "ln_proj", "ln_post"):
        shapes.update({P + f"{ln}.weight": (d,), P + f"{ln}.bias": (d,)})
    for up in ("up1", "up2"):
        shapes.update({U + f"{up}.range_temp": (), U + f"{up}.sigma_spatial": (),
                       U + f"{up}.range_proj.0.weight": (32, 3, 1, 1), U + f"{up}.range_proj.0.bias": (32,),
                       U + f"{up}.range_proj.3.weight": (32, 32, 1, 1), U + f"{up}.range_proj.3.bias": (32,),
                       U + f"{up}.fixup_proj.0.weight": (49, 52, 1, 1), U + f"{up}.fixup_proj.0.bias": (49,),
                       U + f"{up}.fixup_proj.3.weight": (49, 49, 1, 1), U + f"{up}.fixup_proj.3.bias": (49,)})
    for k, v in model.vision_tower.state_dict().items():  # the fine-tuned ViT, HF CLIP layout
        assert k.startswith("vision_model.")  # AdaptCLIPVisionModel keys: vision_model.embeddings...
        shapes["model.vision_tower.vision_tower." + k] = v.shape
    for k, v in model.language_model.state_dict().items():  # the LLM, HF layout (model.*, lm_head.*)
        shapes[k] = v.shape
    return {k: make(tuple(s)) for k, s in shapes.items()}


DROPPED = 3 + 2 + 2 * 3  # the CLIP copy (3 keys here), query + kv_proj, 2x and 8x projector + embedding


def test_real_size_key_names_on_meta():
    with torch.device("meta"):
        model = loupe.build_model("llava-uhd-v2-7b")
        sd = official(model, lambda s: torch.empty(s))
    report = load_official(model, sd)
    assert not report.missing and not report.unexpected and not report.unmatched
    assert len(report.ignored) == DROPPED and not report.left
    assert any("upsampler.model." in k for k in report.ignored) and P + "query" in report.ignored
    assert len(report.loaded) == len(model.state_dict())


def test_tiny_values_load_and_partial_checkpoints():
    torch.manual_seed(0)
    model, _ = loupe.build("llava-uhd-v2-tiny")
    sd = official(model, lambda s: torch.randn(s))
    report = load_official(model, sd)
    assert not report.missing and not report.unexpected and len(report.ignored) == DROPPED
    c = model.connector
    assert torch.equal(c.query_3, sd[P + "query_3"]) and torch.equal(c.proj, sd[P + "proj"])
    assert torch.equal(c.features_4x_projector.weight, sd[P + "features_4x_projector.weight"])
    assert torch.equal(c.upsampler.up2.sigma_spatial, sd[U + "up2.sigma_spatial"])
    assert torch.equal(c.upsampler.fixup_proj[1].weight, sd[U + "fixup_proj.1.weight"])
    assert torch.equal(model.language_model.lm_head.weight, sd["lm_head.weight"])
    adapter = {k: v for k, v in sd.items() if k.startswith(P)}  # stage-1 mm_projector.bin
    assert not load_official(model, adapter, part="adapter").missing
    with pytest.raises(LoupeError, match="missing"):
        load_official(model, adapter)  # a full load needs the LLM
    featup = {k.replace(U, "upsampler."): v + 1 for k, v in sd.items() if k.startswith(U)}
    featup.update({"model.1.norm.weight": torch.ones(64), "scale_net.net.weight": torch.ones(1, 64, 1, 1),
                   "downsampler.w": torch.ones(14, 14), "downsampler_2x.b": torch.ones(14, 14)})
    rep = load_official(model, featup, part="vdim")  # stage-0 clip-large-vdim.ckpt
    assert len(rep.ignored) == 4 and torch.equal(c.upsampler.up1.range_temp, sd[U + "up1.range_temp"] + 1)
