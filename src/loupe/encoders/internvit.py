"""``internvit`` — InternViT (transformers' ``InternVLVisionModel``), the InternVL 2.5 / 3 vision tower.

InternVL3-8B uses InternViT-300M-448px-V2.5 (transformers' ``InternVLVisionConfig`` defaults: 24 blocks of width
1024, layer scale, absolute positions, mean-pooling config so no final norm) and ``vision_feature_layer=-1``:
``last_hidden_state`` without its CLS token, a 32x32 grid per 448 tile, which the ``pixel_shuffle`` connector
turns into 256 tokens (official ``InternVLChatModel.extract_feature``; transformers' ``InternVLModel.get_image_features``).
Keys as transformers' ``InternVLVisionModel`` (``embeddings.*``, ``encoder.layer.{i}.*``; the converter maps the
original ``vision_model.*`` names). Normalisation: ImageNet mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import InternVLVisionConfig, InternVLVisionModel

from ..errors import LoupeError
from ..registry import ENCODERS
from .base import VisionEncoder, vit_flops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: OpenGVLab/InternViT-300M-448px-V2_5 (transformers' InternVLVisionConfig defaults)
INTERNVIT_300M_448 = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                          image_size=[448, 448], patch_size=[14, 14], layer_scale_init_value=0.1,
                          use_mean_pooling=True, use_qk_norm=False, norm_type="layer_norm", layer_norm_eps=1e-6)


@ENCODERS.register("internvit")
class InternViTEncoder(VisionEncoder):
    @dataclass
    class Config:
        hf_config: dict = field(default_factory=lambda: dict(INTERNVIT_300M_448))
        select_layer: int = -1  # -1: last_hidden_state (InternVL3); else an index into hidden_states
        image_mean: tuple = IMAGENET_MEAN
        image_std: tuple = IMAGENET_STD

    no_split_modules = ("InternVLVisionLayer",)

    def __init__(self, config):
        super().__init__(config)
        hf = InternVLVisionConfig(**config.hf_config)
        self.vision_model = InternVLVisionModel(hf)
        n = hf.num_hidden_layers
        if not -n - 1 <= config.select_layer <= n:
            raise LoupeError(f"internvit select_layer {config.select_layer} is out of range for {n} layers")

    @staticmethod
    def _patch(config) -> int:
        p = config.hf_config.get("patch_size", 14)
        return int(p[0] if isinstance(p, (list, tuple)) else p)

    @classmethod
    def feature_grid(cls, config, tile_size):
        p = cls._patch(config)
        return int(tile_size[0]) // p, int(tile_size[1]) // p

    @classmethod
    def output_dim(cls, config) -> int:
        return int(config.hf_config.get("hidden_size", 1024))

    @classmethod
    def flops(cls, config, tile_size, all_layers: bool = True) -> dict[str, int]:
        """2 x MACs of the patch conv, linears and attention matmuls of one tile (patches + CLS)."""
        hf, p = config.hf_config, cls._patch(config)
        c, f, layers = hf.get("hidden_size", 1024), hf.get("intermediate_size", 4096), hf.get("num_hidden_layers", 24)
        gw, gh = cls.feature_grid(config, tile_size)
        return vit_flops(gw * gh, 1, c, f, layers, 3 * p * p)

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.embeddings.patch_embeddings.projection.weight.dtype

    def forward(self, pixel_values: torch.Tensor, layouts=None) -> torch.Tensor:
        """(N, 3, H, W) -> (N, H/p, W/p, C), CLS dropped."""
        n, _, h, w = pixel_values.shape
        k = self.config.select_layer
        out = self.vision_model(pixel_values=pixel_values.to(self.dtype), output_hidden_states=k != -1)
        x = out.last_hidden_state if k == -1 else out.hidden_states[k]
        gw, gh = self.feature_grid(self.config, (w, h))
        return x[:, 1:].reshape(n, gh, gw, x.shape[-1])
