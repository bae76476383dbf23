"""LLaVA-NeXT / LLaVA-1.6 presets (LLaVA-NeXT, haotian-liu/LLaVA ``llava/mm_utils.py`` and ``llava_arch.py``):
``anyres`` slicing + the ``llava_next`` connector (mlp2x_gelu, ``spatial_unpad``, ``image_newline``). Real sizes for
accounting, a tiny one for tests.

The tiny preset keeps LLaVA-NeXT's geometry at 1/6 scale: 56 px tiles (4x4 features of 14 px patches) and
the llava-1.6 pinpoints scaled by 56/336, so grids, unpadding and newlines follow the same code paths.
"""

from ..encoders.clip import CLIP_L_336
from ..slicers.geometry import LLAVA_16_PINPOINTS as _PINPOINTS
from . import TINY_CLIP, TINY_IMAGE_TOKEN_ID, TINY_LLAMA, TINY_TOKENIZER, VICUNA_7B, VICUNA_13B, register_preset

LLAVA_16_PINPOINTS = [list(p) for p in _PINPOINTS]  # each (W, H), official order
TINY_PINPOINTS = [[w // 6, h // 6] for w, h in LLAVA_16_PINPOINTS]  # [[56, 112], [112, 56], [112, 112], ...]


@register_preset("llava-next-7b", "LLaVA-NeXT-7B (1.6 Vicuna): anyres 336 (5 pinpoints), CLIP-L/336 layer -2, "
                 "mlp2x_gelu + spatial_unpad + image_newline; up to 2928 tokens")
def _llava_next_7b():
    return {
        "config": dict(
            slicer={"name": "anyres", "tile_size": 336, "pinpoints": LLAVA_16_PINPOINTS},
            vision={"name": "clip", "hf_config": dict(CLIP_L_336), "select_layer": -2},
            connector={"name": "llava_next", "depth": 2, "merge": "spatial_unpad"},
            text_config=dict(VICUNA_7B),
            image_token_id=32000,
        ),
        "tokenizer": {"kind": "path", "template": "vicuna_v1"},
    }


@register_preset("llava-next-13b", "LLaVA-NeXT-13B (1.6 Vicuna): as llava-next-7b with Vicuna-13B")
def _llava_next_13b():
    p = _llava_next_7b()
    p["config"]["text_config"] = dict(VICUNA_13B)
    return p


@register_preset("llava-next-tiny", "tiny LLaVA-NeXT (anyres 56 px tiles, scaled pinpoints, ViT 2x64, LLM 2x64) "
                 "for tests")
def _llava_next_tiny():
    return {
        "config": dict(
            slicer={"name": "anyres", "tile_size": 56, "pinpoints": TINY_PINPOINTS},
            vision={"name": "clip", "hf_config": dict(TINY_CLIP), "select_layer": -2},
            connector={"name": "llava_next", "depth": 2, "merge": "spatial_unpad"},
            text_config=dict(TINY_LLAMA),
            image_token_id=TINY_IMAGE_TOKEN_ID,
        ),
        "tokenizer": dict(TINY_TOKENIZER),
    }
