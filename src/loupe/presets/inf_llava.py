"""INF-LLaVA presets (paper arXiv 2407.16198; WeihuangLin/INF-LLaVA): dcm slicing + the DEM connector.

``inf-llava-8b``: the released model's shapes (``WeihuangLin/INF-LLaVA-sft``, ``INF_star-LLaVA-sft``):
``dcm`` at 1008 with 336 tiles (9 local + 9 global + the overview = 19 CLIP crops), CLIP-ViT-L/14-336 layer -2
(CLS dropped), the official DEM (4,400,256 parameters) averaged with the overview, ``mlp2x_gelu`` into
Llama-3-8B (4096): 576 visual tokens per image, the ``llama3`` chat template, ``<image>`` id 128256 (just past
the Llama-3 vocabulary; image slots are overwritten, never looked up). Load released weights with
:func:`loupe.convert.inf_llava.load_official` and CLIP with ``build_model(..., vision_tower=PATH)``.

[IMPORTANT] Inference resolution: the official training code rescales the CLIP processor to 1008, but its
``builder.py`` / ``process_images`` do not, so official inference feeds a 336 image that ``encode_images`` bicubically
*upsamples* to 1008 (``INF_llava/train/train.py`` vs ``model/builder.py``: a train/inference mismatch). Loupe's
processor always feeds the 1008 canvas (``dcm`` pads to square with the mean colour and resizes to ``size``) for
training and inference alike, i.e. the training-time behaviour.

``inf-llava-tiny``: the same parts at toy sizes for CPU tests: 56 px tiles, ``dcm`` at 168 (n = 3), the tiny
CLIP (width 64, 4 x 4 features per tile), tiny Llama and tokenizer: 16 visual tokens per image.
Variants of the paper are connector options (``connector={"fusion": "linear_concat"}``, ``{"dem": "none"}``,
``{"combine_overview": "add"}`` ...; see :mod:`loupe.connectors.dem`).
"""

from ..encoders.clip import CLIP_L_336
from . import LLAMA3_8B, TINY_CLIP, TINY_IMAGE_TOKEN_ID, TINY_LLAMA, TINY_TOKENIZER, register_preset


@register_preset("inf-llava-8b",
                 "INF-LLaVA: dcm 1008 (9 local + 9 global + overview), CLIP-L/336, DEM, Llama-3-8B; 576 tokens")
def _inf_llava_8b():
    return {
        "config": dict(
            slicer={"name": "dcm", "tile_size": 336, "size": 1008},
            vision={"name": "clip", "hf_config": dict(CLIP_L_336), "select_layer": -2},
            connector={"name": "dem"},
            text_config=dict(LLAMA3_8B),
            image_token_id=128256,
        ),
        "tokenizer": {"kind": "path", "template": "llama3"},
    }


@register_preset("inf-llava-tiny", "tiny INF-LLaVA (dcm 168 = 3x56 px, ViT 2x64, DEM, LLM 2x64) for tests; 16 tokens")
def _inf_llava_tiny():
    return {
        "config": dict(
            slicer={"name": "dcm", "tile_size": 56, "size": 168},
            vision={"name": "clip", "hf_config": dict(TINY_CLIP), "select_layer": -2},
            connector={"name": "dem"},
            text_config=dict(TINY_LLAMA),
            image_token_id=TINY_IMAGE_TOKEN_ID,
        ),
        "tokenizer": dict(TINY_TOKENIZER),
    }
