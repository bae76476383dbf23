"""Presets of the main-job demo (``loupe demo``): tiny from-scratch models that learn on 2 CPU cores.

All arms share one vision encoder (``tinyconv``, a stand-in for CLIP pretrained by the demo's stage 1),
the connector (mlp2x with 2x2 pooling: 4 tokens per 32-px view) and the language model (2 blocks of width
128). Only the image pathway differs:

* ``demo-lowres`` — LLaVA-1.5 style: the image padded to a square and downscaled to one 32 px view
  (4x for a 128 px image): 4 visual tokens.
* ``demo-anyres`` — LLaVA-NeXT style: the overview plus native-resolution 32 px tiles of the image
  (pinpoints = the benchmark's image sizes, so tiles are never resampled): 4 + 4 x tiles tokens.
"""

from . import TINY_IMAGE_TOKEN_ID, TINY_TOKENIZER, register_preset

DEMO_SIZES = [[128, 128], [160, 96], [96, 160]]
DEMO_TILE = 32
DEMO_LLM = dict(model_type="llama", hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, vocab_size=1024, max_position_embeddings=1024,
                bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
DEMO_VISION = {"name": "tinyconv", "width": 96, "depth": 1, "heads": 4, "max_grid": 4}
DEMO_CONNECTOR = {"name": "mlp", "depth": 2, "pool": 2}


def _demo(slicer: dict) -> dict:
    return {
        "config": dict(slicer=slicer, vision=dict(DEMO_VISION), connector=dict(DEMO_CONNECTOR),
                       text_config=dict(DEMO_LLM), image_token_id=TINY_IMAGE_TOKEN_ID),
        "tokenizer": dict(TINY_TOKENIZER),
    }


@register_preset("demo-lowres", "demo baseline: pad + downscale to one 32 px view (LLaVA-1.5 style), 4 tokens")
def _demo_lowres():
    return _demo({"name": "pad", "tile_size": DEMO_TILE})


@register_preset("demo-anyres", "demo high-res: overview + native 32 px tiles (LLaVA-NeXT anyres style)")
def _demo_anyres():
    return _demo({"name": "anyres", "tile_size": DEMO_TILE, "pinpoints": [list(s) for s in DEMO_SIZES]})
