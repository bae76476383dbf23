"""Named model configurations.

Real-size presets reproduce the papers' shapes and build on the ``meta`` device with no weights (for
parameter, token and FLOP accounting); tiny presets train and run on a CPU in seconds, with a tokenizer
built locally (:mod:`loupe.tokenizer`). A preset is data: the kwargs of :class:`~loupe.LoupeConfig`
plus which tokenizer goes with it. One file per method in this package (``llava.py``, ...), each
registering its presets with :func:`register_preset`; add the module to the import list at the bottom.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from ..encoders.clip import CLIP_L_336
from ..errors import LoupeError

#: Vicuna-7B-v1.5 / LLaMA-2-7B decoder shapes (6,738,415,616 parameters with vocab 32000)
VICUNA_7B = dict(
    model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
    bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
)
VICUNA_13B = dict(VICUNA_7B, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                  num_key_value_heads=40)
LLAMA3_8B = dict(
    model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, bos_token_id=128000, eos_token_id=128009,
    tie_word_embeddings=False,
)
QWEN2_7B = dict(
    model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=False,
)

#: tiny shapes for tests and demos
TINY_CLIP = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=56,
                 patch_size=14, projection_dim=64, hidden_act="quick_gelu")
TINY_LLAMA = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=2, vocab_size=1024, max_position_embeddings=4096,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
TINY_TOKENIZER = {"kind": "tiny", "vocab_size": 1024, "template": "tiny"}
TINY_IMAGE_TOKEN_ID = 4  # "<image>" in the tiny tokenizer (see loupe.tokenizer.SPECIAL)

_PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_preset(name: str, description: str):
    def deco(fn: Callable[[], dict[str, Any]]):
        if name in _PRESETS:
            raise LoupeError(f"preset {name!r} is registered twice")
        _PRESETS[name] = fn
        _DESCRIPTIONS[name] = description
        return fn

    return deco


def list_presets() -> dict[str, str]:
    """{name: one-line description}."""
    return dict(sorted(_DESCRIPTIONS.items()))


def get_preset(name: str) -> dict[str, Any]:
    """A fresh copy of a preset: ``{"config": LoupeConfig kwargs, "tokenizer": spec or None}``."""
    try:
        fn = _PRESETS[name]
    except KeyError:
        raise LoupeError(f"unknown preset {name!r}; available: {', '.join(sorted(_PRESETS))}") from None
    p = copy.deepcopy(fn())
    p["config"]["preset"] = name
    return p



# one module per method; each registers its presets on import
from . import llava, convllava, llava_next, demo, inf_llava, llava_uhd_v2, fila, modern  # noqa: E402,F401
