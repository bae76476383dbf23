"""Modern presets: released-size parameter counts on the meta device (next to their model cards), and the tiny
presets' vision path equal to transformers' own implementation of each model with the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import loupe


@pytest.mark.parametrize("preset,total,vision,connector", [
    # model cards: InternVL3-8B 7.9B ("8B"), LLaVA-OneVision-qwen2-7b 8.03B, Qwen2-VL-7B-Instruct 8.29B
    ("internvl3-8b", 7_944_300_032, 303_938_560, 27_540_480),
    ("llava-onevision-qwen2-7b", 8_030_807_584, 397_747_744, 16_984_576),
    ("qwen2-vl-7b", 8_291_375_616, 631_183_360, 44_575_744),
])
def test_released_configs_parameter_counts_on_meta(preset, total, vision, connector):
    with torch.device("meta"):
        m = loupe.build_model(preset)
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert (count(m), count(m.vision_tower), count(m.connector)) == (total, vision, connector)


@pytest.mark.parametrize("preset", ["internvl-tiny", "llava-onevision-tiny", "qwen2-vl-tiny"])
def test_tiny_presets_run_and_count_their_tokens(preset):
    torch.manual_seed(0)
    model, proc = loupe.build(preset)
    imgs = [Image.new("RGB", (200, 90), "white"), Image.new("RGB", (70, 150), "red")]
    text = "USER: <image>\nWhat? ASSISTANT:"
    inp = proc(images=imgs, text=[text, text], padding_side="left")
    slots = (inp["input_ids"] == model.config.image_token_id).sum(1).tolist()
    assert slots == [proc.num_image_tokens(i) for i in imgs]
    feats = model.get_image_features(inp["pixel_values"], inp["image_sizes"])
    assert [f.shape[0] for f in feats] == slots
    out = model.generate(**inp, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, inp["input_ids"].shape[1] + 3)


def _image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_qwen2_vl_tower_plus_patch_merge_equals_transformers_tower_with_merger():
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

    torch.manual_seed(0)
    model, proc = loupe.build("qwen2-vl-tiny")
    hf_cfg = dict(model.config.vision["hf_config"], hidden_size=model.config.text_config.hidden_size)
    ref = Qwen2VisionTransformerPretrainedModel(Qwen2VLVisionConfig(**hf_cfg)).eval()
    sd = {k: v for k, v in model.vision_tower.visual.state_dict().items()}
    sd.update({f"merger.{k}": v for k, v in model.connector.state_dict().items()})
    ref.load_state_dict(sd, strict=True)
    theirs_proc = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 16)
    imgs = [_image(200, 90, 1), _image(70, 150, 2), _image(120, 120, 3)]
    inp = proc(images=imgs, text=["<image>"] * 3)
    with torch.no_grad():
        mine = model.get_image_features(inp["pixel_values"], inp["image_sizes"])
        for img, m in zip(imgs, mine):
            t = theirs_proc(images=img, return_tensors="pt")
            out = ref(t["pixel_values"], grid_thw=t["image_grid_thw"]).pooler_output
            assert out.shape == m.shape
            assert (out - m).abs().max() < 1e-4


def test_internvl_tower_and_projector_equal_transformers_internvl():
    from transformers import InternVLConfig, InternVLModel
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    torch.manual_seed(0)
    model, proc = loupe.build("internvl-tiny")
    v = model.config.vision["hf_config"]
    cfg = InternVLConfig(vision_config=dict(v), text_config=dict(model_type="qwen2", hidden_size=64, intermediate_size=128,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, vocab_size=1024),
                         downsample_ratio=0.5, vision_feature_layer=-1, vision_feature_select_strategy="default")
    ref = InternVLModel(cfg).eval()
    ref.vision_tower.load_state_dict(model.vision_tower.vision_model.state_dict(), strict=True)
    c = model.connector.mlp
    ref.multi_modal_projector.load_state_dict({"layer_norm.weight": c[0].weight, "layer_norm.bias": c[0].bias,
                                               "linear_1.weight": c[1].weight, "linear_1.bias": c[1].bias,
                                               "linear_2.weight": c[3].weight, "linear_2.bias": c[3].bias})
    theirs_proc = GotOcr2ImageProcessorPil(crop_to_patches=True, max_patches=6, size={"height": 56, "width": 56},
                                           image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    for img in [_image(200, 90, 1), _image(70, 150, 2)]:
        inp = proc(images=[img], text=["<image>"])
        t = theirs_proc(images=img, return_tensors="pt")
        with torch.no_grad():
            mine = model.get_image_features(inp["pixel_values"], inp["image_sizes"])[0]
            out = ref.get_image_features(t["pixel_values"], vision_feature_layer=-1,
                                         vision_feature_select_strategy="default")
            out = out.pooler_output if hasattr(out, "pooler_output") else out
        assert mine.shape == out.reshape(-1, out.shape[-1]).shape
        assert (mine - out.reshape(-1, out.shape[-1])).abs().max() < 1e-4
