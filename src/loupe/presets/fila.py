"""FILA / HyViLM presets (arXiv 2412.08378, no official code): the ``hybrid`` encoder (CLIP-ViT on LLaVA-NeXT anyres
crops + ConvNeXt over the whole canvas, fused by CVFM) with LLaVA-NeXT's token layout (``llava_next``: mlp2x_gelu,
``spatial_unpad``, ``image_newline``). CVFM does not change the ViT's sequence, so the visual-token counts are
LLaVA-NeXT's (672x672 -> 576 + 48*48 + 48 = 2928, newlines included). Only the abstract is public: the shapes below
are Loupe's inferred default ([INF], see :mod:`loupe.encoders.hybrid`); the ConvNeXt is LAION CLIP-ConvNeXt-L (4
stages, 192..1536), as the group's other works.

* ``fila-7b``  — CLIP-ViT-L/14-336 (layer -2) + ConvNeXt-L at 768 px per 336 tile, CVFM after ViT blocks
  6/12/18/23 (stages 1-4), Vicuna-7B. Real sizes: build on the ``meta`` device for accounting.
* ``fila-tiny`` — the same geometry at 1/6 scale, like ``llava-next-tiny``: 56 px tiles, ViT 4x64 (patch 14,
  layer -2: 3 blocks run), ConvNeXt 4 stages 16..64 at 128 px per tile (stage-4 grid 4x4 = the ViT's), CVFM
  after blocks 1/2/3/3. For tests.
* ``demo-fila`` — demo scale ([LOUPE], :mod:`loupe.presets.demo`'s style): anyres 32 px tiles on the demo's
  image sizes, a 3-block CLIP ViT of width 96 with 8 px patches (layer -2: 2 blocks run), a small ConvNeXt (stem
  4x4/4, 2 stages 48/96 of one block each: stride 8 = the ViT patch, so it runs on the canvas at 1x; receptive
  field 80 px, wider than a tile) fused after ViT blocks 1 and 2, the demo connector (mlp2x, 2x2 pooling: 4 tokens
  per view) and the demo LLM. Pixels normalised 0.5/0.25 like the demo. Two stages, not four, because CPU time is
  the budget here (measured: a 3-stage 32/64/96 branch with a 2x2 stem made a training step ~2x slower).
  An arm of ``loupe demo`` (its encoder pretrained on its own views, :mod:`loupe.demo.run`); ``scripts/fila_borders.py``
  trains it against itself with ``fusion="none"`` on tags that straddle tile borders (towers frozen as in FILA's
  recipe, paired starting weights: FILA ahead in 10/10 seeds at 300 steps, +2.4 points; no gain on tags inside
  tiles; behind at 150 steps and when the ViT may train too — the README's table).
"""

from ..encoders import hybrid as _hybrid  # noqa: F401  (registers "hybrid")
from ..encoders.clip import CLIP_L_336
from ..encoders.convnext import CONVNEXT_L
from . import TINY_CLIP, TINY_IMAGE_TOKEN_ID, TINY_LLAMA, TINY_TOKENIZER, VICUNA_7B, register_preset
from .demo import DEMO_CONNECTOR, DEMO_LLM, DEMO_SIZES, DEMO_TILE
from .llava_next import LLAVA_16_PINPOINTS, TINY_PINPOINTS

TINY_CONVNEXT = dict(depths=(1, 1, 1, 1), hidden_sizes=(16, 32, 48, 64))
DEMO_FILA_VIT = dict(hidden_size=96, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
                     image_size=DEMO_TILE, patch_size=8, projection_dim=96, hidden_act="quick_gelu")
DEMO_FILA_CONVNEXT = dict(depths=(1, 1), hidden_sizes=(48, 96), patch_size=4)


@register_preset("fila-7b", "FILA/HyViLM-7B [INF]: anyres 336 + CLIP-L/336 layer -2, ConvNeXt-L on the canvas at "
                 "32/14 x, CVFM (concat-MLP, zero-init) after ViT blocks 6/12/18/23, LLaVA-NeXT tokens (<= 2928), "
                 "Vicuna-7B")
def _fila_7b():
    return {
        "config": dict(
            slicer={"name": "anyres", "tile_size": 336, "pinpoints": LLAVA_16_PINPOINTS},
            vision={"name": "hybrid", "hf_config": dict(CLIP_L_336), "select_layer": -2, "convnext": dict(CONVNEXT_L)},
            connector={"name": "llava_next", "depth": 2, "merge": "spatial_unpad"},
            text_config=dict(VICUNA_7B),
            image_token_id=32000,
        ),
        "tokenizer": {"kind": "path", "template": "vicuna_v1"},
    }


@register_preset("fila-tiny", "tiny FILA (anyres 56 px tiles, ViT 4x64, ConvNeXt 16..64 at 128 px per tile, LLM 2x64) "
                 "for tests")
def _fila_tiny():
    return {
        "config": dict(
            slicer={"name": "anyres", "tile_size": 56, "pinpoints": TINY_PINPOINTS},
            vision={"name": "hybrid", "hf_config": dict(TINY_CLIP, num_hidden_layers=4), "select_layer": -2,
                    "convnext": dict(TINY_CONVNEXT)},
            connector={"name": "llava_next", "depth": 2, "merge": "spatial_unpad"},
            text_config=dict(TINY_LLAMA),
            image_token_id=TINY_IMAGE_TOKEN_ID,
        ),
        "tokenizer": dict(TINY_TOKENIZER),
    }


@register_preset("demo-fila", "demo FILA: anyres 32 px tiles, CLIP ViT 3x96 (8 px patches) + 2-stage ConvNeXt "
                 "48/96 over the canvas at 1x, CVFM after blocks 1, 2; demo connector and LLM")
def _demo_fila():
    return {
        "config": dict(
            slicer={"name": "anyres", "tile_size": DEMO_TILE, "pinpoints": [list(s) for s in DEMO_SIZES]},
            vision={"name": "hybrid", "hf_config": dict(DEMO_FILA_VIT), "select_layer": -2,
                    "convnext": dict(DEMO_FILA_CONVNEXT), "interaction_layers": (1, 2), "heads": 4,
                    "image_mean": (0.5, 0.5, 0.5), "image_std": (0.25, 0.25, 0.25)},
            connector=dict(DEMO_CONNECTOR),
            text_config=dict(DEMO_LLM),
            image_token_id=TINY_IMAGE_TOKEN_ID,
        ),
        "tokenizer": dict(TINY_TOKENIZER),
    }
