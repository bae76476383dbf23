"""Tiny random llava-hf checkpoints written by transformers' own ``save_pretrained`` (model + processor)."""

import numpy as np
import torch
from PIL import Image

from loupe.presets import TINY_CLIP, TINY_IMAGE_TOKEN_ID, TINY_LLAMA
from loupe.presets.llava_next import TINY_PINPOINTS


def hf_llava(kind: str, seed: int = 0):
    """(transformers model, processor) of a tiny LLaVA-1.5 (``kind="llava"``) or LLaVA-NeXT (``"llava_next"``)."""
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaNextConfig
    from transformers import LlavaNextForConditionalGeneration
    from transformers.models.clip import CLIPImageProcessorPil
    from transformers.models.llava import LlavaProcessor
    from transformers.models.llava_next import LlavaNextImageProcessorPil, LlavaNextProcessor

    from loupe.tokenizer import build_tiny_tokenizer

    torch.manual_seed(seed)
    common = dict(vision_config=CLIPVisionConfig(**TINY_CLIP).to_dict(), text_config=dict(TINY_LLAMA),
                  image_token_index=TINY_IMAGE_TOKEN_ID, vision_feature_layer=-2,
                  vision_feature_select_strategy="default", projector_hidden_act="gelu", tie_word_embeddings=False,
                  image_seq_length=16)
    tok = build_tiny_tokenizer(1024, "tiny")
    size, crop = {"shortest_edge": 56}, {"height": 56, "width": 56}
    if kind == "llava":
        model = LlavaForConditionalGeneration(LlavaConfig(**common))
        proc = LlavaProcessor(CLIPImageProcessorPil(size=size, crop_size=crop), tok, patch_size=14,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1)
    else:
        hw = [[h, w] for w, h in TINY_PINPOINTS]
        model = LlavaNextForConditionalGeneration(LlavaNextConfig(image_grid_pinpoints=hw, **common))
        proc = LlavaNextProcessor(LlavaNextImageProcessorPil(image_grid_pinpoints=hw, size=size, crop_size=crop),
                                  tok, patch_size=14, vision_feature_select_strategy="default",
                                  num_additional_image_tokens=1)
    with torch.no_grad():  # non-trivial newline / biases
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_(0, 0.1)
    return model.eval(), proc


def random_image(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
