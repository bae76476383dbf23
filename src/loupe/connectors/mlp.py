"""``mlp`` — LLaVA's ``mlp2x_gelu`` projector: Linear(C, D) -> GELU -> Linear(D, D), per token.

Keys ``proj.0.*`` and ``proj.2.*`` (LLaVA: ``model.mm_projector.{0,2}.*``). ``depth=1`` gives LLaVA-1's
single linear. ``pool`` > 1 average-pools each tile's feature map by that factor first (used by the tiny
demo presets to shorten sequences on CPU; 1 = official). Tokens: every tile's pooled grid, concatenated
in layout order (LLaVA-1.5: one tile, 24 x 24 = 576).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import CONNECTORS
from ..tokens import per_tile
from .base import Connector, split_by_image
from ..validation import bounded


def mlp_projector(in_dim: int, out_dim: int, depth: int = 2, act: str = "gelu") -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(depth - 1):
        layers += [nn.GELU() if act == "gelu" else nn.SiLU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


def pooled_grid(grid: tuple[int, int], pool: int) -> tuple[int, int]:
    """(w, h) of a feature grid after ``pool`` x ``pool`` average pooling (floor, as F.avg_pool2d)."""
    return grid[0] // pool, grid[1] // pool


@CONNECTORS.register("mlp")
class MLPConnector(Connector):
    @dataclass
    class Config:
        depth: int = bounded(2, min=1)
        act: str = "gelu"
        pool: int = bounded(1, min=1)

    def __init__(self, config, in_dim: int, out_dim: int):
        super().__init__(config, in_dim, out_dim)
        self.proj = mlp_projector(in_dim, out_dim, config.depth, config.act)

    @classmethod
    def token_plan(cls, config, layout, grids) -> tuple:
        """Each tile's pooled grid, in layout order."""
        return per_tile([pooled_grid(g, config.pool) for g in grids], layout.roles)

    @classmethod
    def flops(cls, config, layout, grids, in_dim: int, out_dim: int) -> dict[str, int]:
        """Analytic FLOPs (2 x MACs) of one image: the projector on every pooled token (pooling not counted)."""
        proj = cls.num_visual_tokens(config, layout, grids) * (2 * in_dim * out_dim + (config.depth - 1) * 2 * out_dim ** 2)
        return {"projector": proj, "total": proj}

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(N, gh, gw, C) -> (N, gh/p, gw/p, C)."""
        p = self.config.pool
        if p == 1:
            return features
        x = F.avg_pool2d(features.permute(0, 3, 1, 2), p)
        return x.permute(0, 2, 3, 1)

    def forward(self, features, layouts, pixel_values=None):
        x = self.proj(self.pool(features))  # (N, h, w, D)
        return [t.reshape(-1, t.shape[-1]) for t in split_by_image(x, layouts)]
