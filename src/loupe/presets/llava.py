"""LLaVA-1.5 presets (arXiv 2310.03744; haotian-liu/LLaVA): real sizes for accounting, a tiny one for tests."""

from ..encoders.clip import CLIP_L_336
from . import (LLAMA3_8B, QWEN2_7B, TINY_CLIP, TINY_IMAGE_TOKEN_ID, TINY_LLAMA, TINY_TOKENIZER, VICUNA_7B,
               VICUNA_13B, register_preset)


@register_preset("llava15-7b", "LLaVA-1.5-7B: pad 336, CLIP-ViT-L/14-336 layer -2, mlp2x_gelu, Vicuna-7B; 576 tokens")
def _llava15_7b():
    return {
        "config": dict(
            slicer={"name": "pad", "tile_size": 336},
            vision={"name": "clip", "hf_config": dict(CLIP_L_336), "select_layer": -2},
            connector={"name": "mlp", "depth": 2},
            text_config=dict(VICUNA_7B),
            image_token_id=32000,
        ),
        "tokenizer": {"kind": "path", "template": "vicuna_v1"},
    }


@register_preset("llava15-13b", "LLaVA-1.5-13B: as llava15-7b with Vicuna-13B")
def _llava15_13b():
    p = _llava15_7b()
    p["config"]["text_config"] = dict(VICUNA_13B)
    return p


@register_preset("llava15-llama3-8b", "LLaVA-1.5 recipe on Llama-3-8B (LLaVA-UHD v2 Table 1 'LLaVA-LLaMA3')")
def _llava15_llama3():
    p = _llava15_7b()
    p["config"]["text_config"] = dict(LLAMA3_8B)
    p["config"]["image_token_id"] = 128256
    p["tokenizer"]["template"] = "llama3"
    return p


@register_preset("llava15-qwen2-7b", "LLaVA-1.5 recipe on Qwen2-7B (LLaVA-UHD v2 Table 1 'LLaVA-1.5-Qwen')")
def _llava15_qwen2():
    p = _llava15_7b()
    p["config"]["text_config"] = dict(QWEN2_7B)
    p["config"]["image_token_id"] = 152064
    p["tokenizer"]["template"] = "chatml"
    return p


@register_preset("llava15-tiny", "tiny LLaVA-1.5 (56 px tile, ViT 2x64, LLM 2x64, local BPE tokenizer) for tests")
def _llava15_tiny():
    return {
        "config": dict(
            slicer={"name": "pad", "tile_size": 56},
            vision={"name": "clip", "hf_config": dict(TINY_CLIP), "select_layer": -2},
            connector={"name": "mlp", "depth": 2},
            text_config=dict(TINY_LLAMA),
            image_token_id=TINY_IMAGE_TOKEN_ID,
        ),
        "tokenizer": dict(TINY_TOKENIZER),
    }
