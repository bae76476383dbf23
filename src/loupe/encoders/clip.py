"""``clip`` — a CLIP ViT (transformers' ``CLIPVisionModel`` weights), features of one hidden layer.

LLaVA-1.5 and its descendants take ``hidden_states[-2]`` (the output of block 23 of 24, no
``post_layernorm``) and drop the CLS token: 576 tokens on a 24x24 grid for a 336 tile (spec §0.1, §5).

[IMPORTANT] CLIP uses ``quick_gelu``; the config keeps it. Only the blocks needed for the selected layer
are *run* (the last block is skipped for layer -2, as its output is unused), but all weights are *kept*,
so official checkpoints load unchanged and parameter counts match the published ~304M. Under DDP with a
trainable tower, use ``find_unused_parameters=True`` (the training engine does this).

Keys: ``vision_model.*`` as in a Hugging Face CLIP checkpoint (``vision_model.embeddings.patch_embedding``,
``vision_model.pre_layrnorm``, ``vision_model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj`` ...); the
module is transformers' own ``CLIPVisionModel``, so its loader handles both old and new key layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from ..errors import LoupeError
from ..registry import ENCODERS
from .base import VisionEncoder

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: openai/clip-vit-large-patch14-336, vision tower
CLIP_L_336 = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)


@ENCODERS.register("clip")
class CLIPEncoder(VisionEncoder):
    @dataclass
    class Config:
        hf_config: dict = field(default_factory=lambda: dict(CLIP_L_336))
        select_layer: int = -2  # index into hidden_states (0 = embeddings after pre_layrnorm)
        drop_cls: bool = True
        image_mean: tuple = CLIP_MEAN
        image_std: tuple = CLIP_STD

    no_split_modules = ("CLIPEncoderLayer",)

    def __init__(self, config):
        super().__init__(config)
        hf = CLIPVisionConfig(**config.hf_config)
        self.vision_model = CLIPVisionModel(hf)
        n = hf.num_hidden_layers
        k = config.select_layer if config.select_layer >= 0 else n + 1 + config.select_layer
        if not 0 <= k <= n:
            raise LoupeError(f"clip select_layer {config.select_layer} is out of range for {n} layers")
        self.num_layers_run = k

    @classmethod
    def feature_grid(cls, config, tile_size):
        p = config.hf_config.get("patch_size", 14)
        return int(tile_size[0]) // p, int(tile_size[1]) // p

    @classmethod
    def output_dim(cls, config) -> int:
        return int(config.hf_config.get("hidden_size", 768))

    def forward(self, pixel_values: torch.Tensor, layouts=None) -> torch.Tensor:
        """(N, 3, H, W) -> (N, H/p, W/p, C)."""
        vm = self.vision_model
        n, _, h, w = pixel_values.shape
        size = vm.config.image_size
        x = vm.embeddings(pixel_values.to(self.dtype), interpolate_pos_encoding=(h, w) != (size, size))
        x = vm.pre_layrnorm(x)
        for layer in vm.encoder.layers[: self.num_layers_run]:
            x = layer(x, None)
        if self.config.drop_cls:
            x = x[:, 1:]
        gw, gh = self.feature_grid(self.config, (w, h))
        return x.reshape(n, gh, gw, x.shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.embeddings.patch_embedding.weight.dtype

    def load_pretrained(self, path: str) -> None:
        """Load a local Hugging Face CLIP (or CLIPVision) folder into this tower, strictly."""
        p = Path(path)
        if not p.exists():
            raise LoupeError(f"vision tower folder not found: {p}")
        if not (p / "config.json").exists():
            raise LoupeError(f"{p} is not a Hugging Face model folder (no config.json)")
        try:
            src = CLIPVisionModel.from_pretrained(str(p), local_files_only=True)
        except Exception as e:  # transformers raises OSError/ValueError/KeyError variants
            raise LoupeError(f"cannot load a CLIP vision tower from {p}: {e}") from None
        mine = {k: v.shape for k, v in self.vision_model.state_dict().items()}
        theirs = src.state_dict()
        bad = [k for k in mine if k not in theirs or theirs[k].shape != mine[k]]
        if bad:
            raise LoupeError(f"CLIP weights in {p} do not match the configured tower (first mismatches: {bad[:5]})")
        self.vision_model.load_state_dict(theirs, strict=True)
