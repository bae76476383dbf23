"""Today's dynamic-resolution baselines as Loupe parts: InternVL3, LLaVA-OneVision, Qwen2-VL.

* ``internvl3-8b``: ``internvl`` tiling (448, 1..12 tiles + thumbnail), InternViT-300M-448px-V2.5 (last layer,
  CLS dropped), ``pixel_shuffle`` (0.5, LayerNorm + 2-layer MLP; 256 tokens per tile), Qwen2.5-7B (vocab 151,674),
  as transformers' InternVL3 port. Model card: 8B (InternViT 0.3B + Qwen2.5-7B 7.6B).
* ``llava-onevision-qwen2-7b``: ``anyres`` over the 6x6 grid of 384 canvases (transformers' (height, width)
  reading of ``image_grid_pinpoints``), SigLIP-so400m (26 blocks, no head), ``anyres_max`` (9) connector,
  Qwen2-7B (vocab 152,128). Model card: 8B.
* ``qwen2-vl-7b``: ``native`` slicer (``smart_resize``, min 56*56, max 12,845,056 pixels as the released
  ``preprocessor_config.json``), the Qwen2-VL ViT (32 x 1280), ``patch_merge`` (2x2) -> Qwen2-7B width
  (vocab 152,064). Model card: 8.3B.

[DIFFERENCE] Qwen2-VL's LLM uses M-RoPE (3-D positions: time, row, column of each visual token). Loupe's LLM is
a plain causal LM with 1-D positions, so ``qwen2-vl-7b`` here has Qwen2-VL's geometry, vision tower and merger
but 1-D rotary positions in the LLM: a released Qwen2-VL checkpoint's LLM weights load, its outputs differ. The
layout carries every visual token's grid position, from which M-RoPE ids can be built.
[DIFFERENCE] The text around each image (InternVL ``<img>`` / ``</img>``, Qwen2-VL ``<|vision_start|>`` /
``<|vision_end|>``) is the chat template's today; a connector token plan that writes it is planned.

The ``*-tiny`` presets keep each geometry at small scale (56 px tiles, 4x4 feature grids, LLM 2 x 64).
"""

from ..encoders.internvit import INTERNVIT_300M_448
from ..encoders.qwen2_vl import QWEN2_VL_VIT
from ..encoders.siglip import SIGLIP_SO400M_384
from ..slicers.native import QWEN2_VL_7B_MAX_PIXELS
from . import QWEN2_7B, TINY_IMAGE_TOKEN_ID, TINY_LLAMA, TINY_TOKENIZER, register_preset

QWEN25_7B = dict(QWEN2_7B, vocab_size=151674)  # InternVL3-8B's LLM (Qwen2.5-7B + InternVL's added tokens)
ONEVISION_PINPOINTS = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]  # (H, W), transformers' order
TINY_ONEVISION_PINPOINTS = [[56 * i, 56 * j] for i in range(1, 7) for j in range(1, 7)]


@register_preset("internvl3-8b", "InternVL3-8B: internvl tiling (448, <=12 + thumbnail), InternViT-300M, "
                 "pixel_shuffle 0.5 + MLP (256 tokens/tile), Qwen2.5-7B")
def _internvl3_8b():
    return {
        "config": dict(
            slicer={"name": "internvl", "tile_size": 448, "max_num": 12},
            vision={"name": "internvit", "hf_config": dict(INTERNVIT_300M_448)},
            connector={"name": "pixel_shuffle", "scale": 0.5},
            text_config=dict(QWEN25_7B),
            image_token_id=151667,  # <IMG_CONTEXT>
        ),
        "tokenizer": {"kind": "path", "template": "chatml"},
    }


@register_preset("llava-onevision-qwen2-7b", "LLaVA-OneVision-7B: anyres 384 (6x6 grid), SigLIP-so400m, "
                 "anyres_max_9 connector, Qwen2-7B")
def _onevision_7b():
    return {
        "config": dict(
            slicer={"name": "anyres", "tile_size": 384, "pinpoints": ONEVISION_PINPOINTS, "pinpoint_order": "hw"},
            vision={"name": "siglip", "hf_config": dict(SIGLIP_SO400M_384), "select_layer": -1},
            connector={"name": "anyres_max", "max_num_patches": 9},
            text_config=dict(QWEN2_7B, vocab_size=152128),
            image_token_id=151646,
        ),
        "tokenizer": {"kind": "path", "template": "chatml"},
    }


@register_preset("qwen2-vl-7b", "Qwen2-VL-7B geometry: native smart_resize (<=12.8 MP), Qwen2-VL ViT, 2x2 "
                 "patch_merge, Qwen2-7B (1-D positions, see the module docstring)")
def _qwen2_vl_7b():
    return {
        "config": dict(
            slicer={"name": "native", "max_pixels": QWEN2_VL_7B_MAX_PIXELS},
            vision={"name": "qwen2_vl", "hf_config": dict(QWEN2_VL_VIT)},
            connector={"name": "patch_merge", "merge_size": 2},
            text_config=dict(QWEN2_7B),
            image_token_id=151655,
        ),
        "tokenizer": {"kind": "path", "template": "chatml"},
    }


def _tiny(slicer, vision, connector):
    return {"config": dict(slicer=slicer, vision=vision, connector=connector, text_config=dict(TINY_LLAMA),
                           image_token_id=TINY_IMAGE_TOKEN_ID),
            "tokenizer": dict(TINY_TOKENIZER)}


@register_preset("internvl-tiny", "tiny InternVL (internvl tiling of 56 px, <=6 tiles, InternViT 2x64, "
                 "pixel_shuffle) for tests")
def _internvl_tiny():
    return _tiny({"name": "internvl", "tile_size": 56, "max_num": 6},
                 {"name": "internvit", "hf_config": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                                         intermediate_size=128, image_size=[56, 56],
                                                         patch_size=[14, 14])},
                 {"name": "pixel_shuffle", "scale": 0.5})


@register_preset("llava-onevision-tiny", "tiny LLaVA-OneVision (anyres 56 px, 6x6 grid, SigLIP 2x64, "
                 "anyres_max_9) for tests")
def _onevision_tiny():
    return _tiny({"name": "anyres", "tile_size": 56, "pinpoints": TINY_ONEVISION_PINPOINTS, "pinpoint_order": "hw"},
                 {"name": "siglip", "hf_config": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                      num_attention_heads=2, image_size=56, patch_size=14,
                                                      vision_use_head=False), "select_layer": -1},
                 {"name": "anyres_max", "max_num_patches": 9})


@register_preset("qwen2-vl-tiny", "tiny Qwen2-VL (native smart_resize <= 16 tokens, ViT 2x64, patch_merge) "
                 "for tests")
def _qwen2_vl_tiny():
    return _tiny({"name": "native", "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16},
                 {"name": "qwen2_vl", "hf_config": dict(depth=2, embed_dim=64, hidden_size=64, mlp_ratio=2,
                                                        num_heads=2, patch_size=14, spatial_merge_size=2,
                                                        temporal_patch_size=2)},
                 {"name": "patch_merge", "merge_size": 2})
