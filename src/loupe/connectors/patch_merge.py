"""``patch_merge`` — Qwen2-VL's ``PatchMerger``: each 2x2 block of patch features -> one visual token.

Official ``PatchMerger`` (Qwen2-VL ``modeling_qwen2_vl.py``, also transformers'): ``ln_q = LayerNorm(C, eps=1e-6)``
on every patch, the 2x2 block (row-major: top-left, top-right, bottom-left, bottom-right, the order
Qwen2-VL's processor lays patches in) concatenated to 4C, then ``Linear(4C, 4C) -> GELU -> Linear(4C, D)``.
Keys ``ln_q.*``, ``mlp.{0,2}.*`` as the official ``visual.merger.*``. Tokens per tile:
``(grid_h / 2) * (grid_w / 2)`` = ``(H / 28) * (W / 28)`` for the ``native`` slicer's sizes, blocks row-major.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LoupeError
from ..registry import CONNECTORS
from ..tokens import per_tile, wrap
from .base import Connector, split_by_image
from ..validation import bounded


@CONNECTORS.register("patch_merge")
class PatchMergeConnector(Connector):
    @dataclass
    class Config:
        merge_size: int = bounded(2, min=1)
        layer_norm_eps: float = bounded(1e-6, gt=0.0)

        image_start: str | None = None  # a special token written before the image (released: '<|vision_start|>')
        image_end: str | None = None  # ... and after it ('<|vision_end|>')

        def __post_init__(self):
            if self.merge_size <= 0:
                raise ValueError(f"merge_size must be positive, got {self.merge_size}")

    def __init__(self, config, in_dim: int, out_dim: int):
        super().__init__(config, in_dim, out_dim)
        hidden = in_dim * config.merge_size ** 2
        self.ln_q = nn.LayerNorm(in_dim, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    @classmethod
    def _out_grid(cls, config, grid):
        m = config.merge_size
        if grid[0] % m or grid[1] % m:
            raise LoupeError(f"patch_merge {m}x{m} needs feature grids divisible by {m}, got {grid}")
        return grid[0] // m, grid[1] // m

    @classmethod
    def token_plan(cls, config, layout, grids) -> tuple:
        """Each tile's output grid, in layout order."""
        out = [cls._out_grid(config, g) for g in grids]
        return wrap(per_tile(out, layout.roles), config.image_start, config.image_end)

    @classmethod
    def flops(cls, config, layout, grids, in_dim: int, out_dim: int) -> dict[str, int]:
        """2 x MACs of the merger's two linears on every merged token."""
        hidden = in_dim * config.merge_size ** 2
        proj = cls.num_visual_tokens(config, layout, grids) * (2 * hidden * hidden + 2 * hidden * out_dim)
        return {"projector": proj, "total": proj}

    def merge(self, t):
        """(H, W, C) -> (H/m * W/m, m*m*C), blocks row-major, each block's patches row-major."""
        m = self.config.merge_size
        h, w, c = t.shape
        self._out_grid(self.config, (w, h))
        return t.reshape(h // m, m, w // m, m, c).permute(0, 2, 1, 3, 4).reshape(-1, m * m * c)

    def forward(self, features, layouts, pixel_values=None):
        """``features``: (N, gh, gw, C), or a list of per-tile (gh_i, gw_i, C) maps for native-aspect tiles."""
        tiles = list(features) if isinstance(features, (list, tuple)) else list(features.unbind(0))
        merged = [self.mlp(self.merge(self.ln_q(t))) for t in tiles]
        out, i = [], 0
        for lay in layouts:
            out.append(merged[i] if lay.num_tiles == 1 else torch.cat(merged[i:i + lay.num_tiles], 0))
            i += lay.num_tiles
        return out
