"""LLaVA-UHD v2 presets (paper arXiv 2412.13871; branch ``LLaVA-UHD-v2`` of thunlp/LLaVA-UHD): ``uhd`` slicing +
native-aspect CLIP + the Hiwin connector.

``llava-uhd-v2-7b`` / ``-13b`` / ``-qwen2-7b``: the released models' shapes (``YipengZhang/LLaVA-UHD-v2-Vicuna-7B``,
``...-Vicuna-13B``, ``...-Qwen2.0-7B``): MiniCPM-V slicing at 336 (``max_slice_nums`` 9 = official evaluation; the
training scripts use 7), CLIP-ViT-L/14-336 layer -2 with native-aspect grids (bicubic positions, padded batch),
the Hiwin transformer (VDIM 4x stack, levels {1x, 4x} = ``feature_scale_mask`` 5 as every released script, 12 x 12
windows, 4 query sets, D/128 heads) straight into the LLM width; separators ',' = 29892 and '\\n' = 13 (Llama ids,
[IMPORTANT] kept for Qwen2 too, as officially). 1008x672 -> 6 slices + overview -> 7 x 144 + 6 = 1014 tokens.
Load released weights with :func:`loupe.convert.llava_uhd_v2.load_official`.

``llava-uhd-v2-tiny``: the same parts at toy sizes for CPU tests: 56 px slices (``tile_size`` = the official
``scale_resolution``), the tiny CLIP (14 px patches, width 64, 4x4 position table), a 4 x 4 window grid (16 tokens
per slice), one attention head (64 // 128 rounds to 0: ``num_heads`` 0 means max(1, D // 128)), the tiny Llama and
tokenizer (',' = 16, '\\n' = 203 in it).
"""

from ..encoders.clip import CLIP_L_336
from . import (QWEN2_7B, TINY_CLIP, TINY_IMAGE_TOKEN_ID, TINY_LLAMA, TINY_TOKENIZER, VICUNA_7B, VICUNA_13B,
               register_preset)


def _uhd_v2(text_config: dict, image_token_id: int, template: str) -> dict:
    return {
        "config": dict(
            slicer={"name": "uhd", "tile_size": 336, "patch_size": 14, "max_slice_nums": 9},
            vision={"name": "clip", "hf_config": dict(CLIP_L_336), "select_layer": -2, "native_aspect": True},
            connector={"name": "hiwin", "grid_size": 12, "feature_scale_mask": 5, "token_order": "official"},
            text_config=dict(text_config),
            image_token_id=image_token_id,
        ),
        "tokenizer": {"kind": "path", "template": template},
    }


@register_preset("llava-uhd-v2-7b",
                 "LLaVA-UHD v2 (Vicuna-7B): uhd slicing, native-aspect CLIP-L/336, Hiwin (VDIM 1x+4x); 144/slice")
def _uhd_v2_7b():
    return _uhd_v2(VICUNA_7B, 32000, "vicuna_v1")


@register_preset("llava-uhd-v2-13b", "LLaVA-UHD v2 (Vicuna-13B): as llava-uhd-v2-7b, D = 5120, 40 heads")
def _uhd_v2_13b():
    return _uhd_v2(VICUNA_13B, 32000, "vicuna_v1")


@register_preset("llava-uhd-v2-qwen2-7b",
                 "LLaVA-UHD v2 (Qwen2-7B): as llava-uhd-v2-7b, D = 3584, 28 heads, Llama separator ids kept")
def _uhd_v2_qwen2():
    return _uhd_v2(QWEN2_7B, 152064, "chatml")  # official template qwen_1_5 is ChatML


@register_preset("llava-uhd-v2-tiny",
                 "tiny LLaVA-UHD v2 (56 px slices, ViT 2x64, Hiwin 4x4 windows, LLM 2x64) for tests")
def _uhd_v2_tiny():
    return {
        "config": dict(
            slicer={"name": "uhd", "tile_size": 56, "patch_size": 14, "max_slice_nums": 9, "comma_id": 16,
                    "newline_id": 203},
            vision={"name": "clip", "hf_config": dict(TINY_CLIP), "select_layer": -2, "native_aspect": True},
            connector={"name": "hiwin", "grid_size": 4, "feature_scale_mask": 5},
            text_config=dict(TINY_LLAMA),
            image_token_id=TINY_IMAGE_TOKEN_ID,
        ),
        "tokenizer": dict(TINY_TOKENIZER),
    }
