"""``siglip`` — a SigLIP ViT (transformers' ``SiglipVisionModel``), features of one hidden layer, no CLS.

LLaVA-OneVision's tower is SigLIP-so400m-patch14-384 with the last block and the pooling head removed
(official ``SigLipVisionTower`` in LLaVA-NeXT's ``siglip_encoder.py``: ``del encoder.layers[-1:]``,
``head = Identity``; llava-hf's port keeps 26 layers and ``vision_feature_layer=-1``): a 384 tile gives a 27x27
grid of 1152-d features taken from ``hidden_states[-1]`` (before ``post_layernorm``). Only the blocks needed for
the selected layer are run. Keys ``vision_model.*`` as a Hugging Face SigLIP checkpoint. Normalisation:
mean = std = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from ..errors import LoupeError
from ..registry import ENCODERS
from .base import VisionEncoder, vit_flops

#: google/siglip-so400m-patch14-384 vision tower as LLaVA-OneVision uses it (26 of 27 blocks, no head)
SIGLIP_SO400M_384 = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                         image_size=384, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                         vision_use_head=False)


@ENCODERS.register("siglip")
class SiglipEncoder(VisionEncoder):
    @dataclass
    class Config:
        hf_config: dict = field(default_factory=lambda: dict(SIGLIP_SO400M_384))
        select_layer: int = -1  # index into hidden_states (0 = patch embeddings)
        image_mean: tuple = (0.5, 0.5, 0.5)
        image_std: tuple = (0.5, 0.5, 0.5)

    no_split_modules = ("SiglipEncoderLayer",)

    def __init__(self, config):
        super().__init__(config)
        hf = SiglipVisionConfig(**config.hf_config)
        self.vision_model = SiglipVisionModel(hf)
        n = hf.num_hidden_layers
        k = config.select_layer if config.select_layer >= 0 else n + 1 + config.select_layer
        if not 0 <= k <= n:
            raise LoupeError(f"siglip select_layer {config.select_layer} is out of range for {n} layers")
        self.num_layers_run = k

    @classmethod
    def feature_grid(cls, config, tile_size):
        p = config.hf_config.get("patch_size", 14)
        return int(tile_size[0]) // p, int(tile_size[1]) // p

    @classmethod
    def output_dim(cls, config) -> int:
        return int(config.hf_config.get("hidden_size", 768))

    @classmethod
    def flops(cls, config, tile_size, all_layers: bool = False) -> dict[str, int]:
        """2 x MACs of the patch conv, linears and attention matmuls of one tile (no CLS token)."""
        hf, p = config.hf_config, config.hf_config.get("patch_size", 14)
        c, f, n_all = hf.get("hidden_size", 768), hf.get("intermediate_size", 3072), hf.get("num_hidden_layers", 12)
        k = config.select_layer if config.select_layer >= 0 else n_all + 1 + config.select_layer
        layers = n_all if all_layers else k
        gw, gh = cls.feature_grid(config, tile_size)
        return vit_flops(gw * gh, 0, c, f, layers, 3 * p * p)

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.embeddings.patch_embedding.weight.dtype

    def forward(self, pixel_values: torch.Tensor, layouts=None) -> torch.Tensor:
        """(N, 3, H, W) -> (N, H/p, W/p, C)."""
        vm = self.vision_model
        n, _, h, w = pixel_values.shape
        size = vm.config.image_size
        x = vm.embeddings(pixel_values.to(self.dtype), interpolate_pos_encoding=(h, w) != (size, size))
        for layer in vm.encoder.layers[: self.num_layers_run]:
            x = layer(x, None)
        gw, gh = self.feature_grid(self.config, (w, h))
        return x.reshape(n, gh, gw, x.shape[-1])
