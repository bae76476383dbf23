"""``qwen2_vl`` — the Qwen2-VL vision transformer (transformers' ``Qwen2VisionTransformerPretrainedModel``) on
native-resolution images, without its merger (Loupe's ``patch_merge`` connector is the merger).

Official ``Qwen2VisionTransformerPretrainedModel.forward``: 14x14 patches (each frame duplicated to the temporal
patch of 2, a ``Conv3d``), 2-D rotary positions per (row, col) of the patch grid, full attention within each image
(``cu_seqlens``), 32 blocks of width 1280 for Qwen2-VL-7B. Patches enter in merge-window order (2x2 windows
row-major, patches row-major inside each window), as the Qwen2-VL processor lays them out. This wrapper takes
Loupe tiles (N, 3, H, W; each cropped to its true ``layout.tile_sizes``), builds that order, runs the
tower and returns each tile's pre-merger features as a (gh, gw, C) grid (a tensor when all tiles share one grid,
else a list), which ``patch_merge`` regroups into the same 2x2 windows: the composition equals the official
tower + merger. Keys ``patch_embed.*``, ``blocks.{i}.*`` (official ``visual.*``; ``visual.merger.*`` -> connector).
Normalisation: CLIP mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel
from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids

from ..errors import LoupeError
from ..registry import ENCODERS
from .base import VisionEncoder, vit_flops
from .clip import CLIP_MEAN, CLIP_STD

#: Qwen2-VL-7B vision tower (transformers' Qwen2VLVisionConfig defaults)
QWEN2_VL_VIT = dict(depth=32, embed_dim=1280, hidden_size=3584, mlp_ratio=4, num_heads=16, patch_size=14,
                    spatial_merge_size=2, temporal_patch_size=2, hidden_act="quick_gelu")


@ENCODERS.register("qwen2_vl")
class Qwen2VLEncoder(VisionEncoder):
    @dataclass
    class Config:
        hf_config: dict = field(default_factory=lambda: dict(QWEN2_VL_VIT))
        image_mean: tuple = CLIP_MEAN
        image_std: tuple = CLIP_STD

    no_split_modules = ("Qwen2VLVisionBlock",)

    def __init__(self, config):
        super().__init__(config)
        self.visual = Qwen2VisionTransformerPretrainedModel(Qwen2VLVisionConfig(**config.hf_config))
        self.visual.merger = nn.Identity()  # the patch_merge connector holds the merger's weights

    @classmethod
    def feature_grid(cls, config, tile_size):
        p = config.hf_config.get("patch_size", 14)
        return int(tile_size[0]) // p, int(tile_size[1]) // p

    @classmethod
    def output_dim(cls, config) -> int:
        return int(config.hf_config.get("embed_dim", 1280))

    @classmethod
    def flops(cls, config, tile_size, all_layers: bool = True) -> dict[str, int]:
        """2 x MACs of the patch conv (both frames), linears and attention matmuls of one tile."""
        hf, p = config.hf_config, config.hf_config.get("patch_size", 14)
        c, layers = hf.get("embed_dim", 1280), hf.get("depth", 32)
        f = c * hf.get("mlp_ratio", 4)
        gw, gh = cls.feature_grid(config, tile_size)
        return vit_flops(gw * gh, 0, c, f, layers, 3 * hf.get("temporal_patch_size", 2) * p * p)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.patch_embed.proj.weight.dtype

    def forward(self, pixel_values: torch.Tensor, layouts=None):
        hf = self.config.hf_config
        p, m, tp = hf.get("patch_size", 14), hf.get("spatial_merge_size", 2), hf.get("temporal_patch_size", 2)
        n, _, height, width = pixel_values.shape
        sizes = [tuple(s) for lay in layouts for s in lay.tile_sizes] if layouts is not None else [(width, height)] * n
        if len(sizes) != n:
            raise LoupeError(f"qwen2_vl: {n} tiles but the layouts list {len(sizes)}")
        patches, grids = [], []
        for tile, (w, h) in zip(pixel_values.unbind(0), sizes):
            gw, gh = w // p, h // p
            if gw % m or gh % m or w > width or h > height:
                raise LoupeError(f"qwen2_vl: a {w}x{h} tile is not a multiple of {p * m} px inside the batch")
            x = tile[:, :h, :w].reshape(3, gh // m, m, p, gw // m, m, p).permute(1, 4, 2, 5, 0, 3, 6)
            x = x.reshape(-1, 3, 1, p, p).expand(-1, 3, tp, p, p).reshape(gh * gw, 3 * tp * p * p)
            patches.append(x)
            grids.append((gh, gw))
        rows, extra = [[1, gh, gw] for gh, gw in grids], {}
        if pixel_values.device.type != "meta":
            thw = torch.tensor(rows, device=pixel_values.device)
        else:  # transformers reads grid_thw and cu_seqlens with .tolist(): on meta, give them on the host
            thw = torch.tensor(rows)
            extra = {"position_ids": get_vision_position_ids(thw, m).to(pixel_values.device),
                     "cu_seqlens": get_vision_cu_seqlens(thw)}
        out = self.visual(torch.cat(patches).to(self.dtype), grid_thw=thw, **extra).last_hidden_state
        maps = []
        for x, (gh, gw) in zip(torch.split(out, [gh * gw for gh, gw in grids]), grids):
            c = x.shape[-1]
            maps.append(x.reshape(gh // m, gw // m, m, m, c).permute(0, 2, 1, 3, 4).reshape(gh, gw, c))
        return torch.stack(maps) if len(set(grids)) == 1 else maps
