"""ConvLLaVA presets (arXiv 2405.15738; alibaba/conv-llava): a five-stage ConvNeXt at 768/1024/1536 px, one padded tile.

Official behaviour (alibaba/conv-llava, ``image_aspect_ratio pad``): ``expand2square`` with the CLIP mean colour,
resize to R x R, ConvNeXt† (stride 64) -> (R/64)^2 tokens: 768 -> 144, 1024 -> 256, 1536 -> 576; the
``mlp2x_gelu`` projector maps 3072 -> 4096 into Vicuna-7B-v1.5 (``v1`` template), LLaVA-1.5 token layout (no
newline, no unpad). The four-stage ConvNeXt-L baseline (stride 32) of the paper's Tables 2-3 gives 512 -> 256 and
768 -> 576 tokens. The paper's any-aspect inference (short side 1536, Table 7) needs an aspect-preserving slicer
(the encoder itself takes any H x W, e.g. 1536 x 2304 -> 24 x 36); these presets pad, as the released
checkpoints expect.

Real-size presets build on the ``meta`` device (accounting); ``convllava-tiny`` (5 stages, widths 16..96, 128 px
-> 2x2 tokens) runs on a CPU in tests.
"""

from ..encoders import convnext as _convnext  # noqa: F401  (registers "convnext")
from ..encoders.convnext import CONVNEXT_L, CONVNEXT_L_5STAGE
from . import TINY_IMAGE_TOKEN_ID, TINY_LLAMA, TINY_TOKENIZER, VICUNA_7B, register_preset


def _convllava(resolution: int, encoder: dict) -> dict:
    return {
        "config": dict(
            slicer={"name": "pad", "tile_size": resolution},
            vision={"name": "convnext", **encoder, "select_layer": -1},
            connector={"name": "mlp", "depth": 2},
            text_config=dict(VICUNA_7B),
            image_token_id=32000,
        ),
        "tokenizer": {"kind": "path", "template": "vicuna_v1"},
    }


@register_preset("convllava-7b-768",
                 "ConvLLaVA-7B-768: pad 768, five-stage ConvNeXt (stride 64), mlp2x_gelu, Vicuna-7B; 144 tokens")
def _convllava_768():
    return _convllava(768, dict(CONVNEXT_L_5STAGE))


@register_preset("convllava-7b-1024", "ConvLLaVA-7B-1024: as convllava-7b-768 at 1024 px; 256 tokens")
def _convllava_1024():
    return _convllava(1024, dict(CONVNEXT_L_5STAGE))


@register_preset("convllava-7b-1536", "ConvLLaVA-7B-1536: as convllava-7b-768 at 1536 px; 576 tokens")
def _convllava_1536():
    return _convllava(1536, dict(CONVNEXT_L_5STAGE))


@register_preset("convnext-l-512",
                 "four-stage ConvNeXt-L (stride 32) LLaVA, pad 512, Vicuna-7B; 256 tokens (ConvLLaVA Tab. 2-3)")
def _convnext_l_512():
    return _convllava(512, dict(CONVNEXT_L))


@register_preset("convnext-l-768", "four-stage ConvNeXt-L LLaVA at 768 px; 576 tokens (ConvLLaVA Tab. 2-3)")
def _convnext_l_768():
    return _convllava(768, dict(CONVNEXT_L))


@register_preset("convllava-tiny",
                 "tiny ConvLLaVA (5 stages 16..96 wide, 128 px tile -> 2x2 tokens, LLM 2x64) for tests")
def _convllava_tiny():
    return {
        "config": dict(
            slicer={"name": "pad", "tile_size": 128},
            vision={"name": "convnext", "depths": (1, 1, 1, 1, 1), "hidden_sizes": (16, 32, 48, 64, 96)},
            connector={"name": "mlp", "depth": 2},
            text_config=dict(TINY_LLAMA),
            image_token_id=TINY_IMAGE_TOKEN_ID,
        ),
        "tokenizer": dict(TINY_TOKENIZER),
    }
