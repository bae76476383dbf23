"""``pixel_shuffle`` — InternVL's projector: a 0.5 pixel shuffle (2x2 neighbours -> channels) and an MLP.

Official ``InternVLChatModel.pixel_shuffle`` + ``mlp1`` (InternVL ``modeling_internvl_chat.py``) and transformers'
``InternVLModel.pixel_shuffle`` + ``InternVLMultiModalProjector``: the (g, g, C) map of a 448 tile (g = 32 for
InternViT-300M with patch 14, CLS dropped) becomes (g/2, g/2, 4C) by two view/permute steps, then
``LayerNorm(4C) -> Linear(4C, D) -> GELU -> Linear(D, D)``: 256 tokens per tile, tiles in layout order
(local tiles row-major, thumbnail last). Keys ``mlp.{0,1,3}`` = the official ``mlp1.{0,1,3}``.
``scale`` must divide the grid (0.5: even sides).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import LoupeError
from ..registry import CONNECTORS
from ..tokens import per_tile, wrap
from .base import Connector, split_by_image
from ..validation import bounded


def pixel_shuffle(x, scale: float = 0.5):
    """transformers' ``InternVLModel.pixel_shuffle`` on (N, H, W, C) -> (N, H*scale, W*scale, C/scale^2)."""
    n, w, h, c = x.shape  # the official code names the first spatial dim "width"
    x = x.reshape(n, w, int(h * scale), int(c / scale))
    x = x.permute(0, 2, 1, 3).reshape(n, int(h * scale), int(w * scale), int(c / (scale * scale)))
    return x.permute(0, 2, 1, 3)


@CONNECTORS.register("pixel_shuffle")
class PixelShuffleConnector(Connector):
    @dataclass
    class Config:
        scale: float = bounded(0.5, gt=0.0, max=1.0)
        layer_norm_eps: float = bounded(1e-5, gt=0.0)

        image_start: str | None = None  # a special token written before the image (released: '<img>')
        image_end: str | None = None  # ... and after it ('</img>')

        def __post_init__(self):
            if not 0 < self.scale <= 1 or abs(1 / self.scale - round(1 / self.scale)) > 1e-9:
                raise ValueError(f"scale must be 1/k for a whole k, got {self.scale}")

    def __init__(self, config, in_dim: int, out_dim: int):
        super().__init__(config, in_dim, out_dim)
        k = round(1 / config.scale)
        self.mlp = nn.Sequential(nn.LayerNorm(in_dim * k * k, eps=config.layer_norm_eps),
                                 nn.Linear(in_dim * k * k, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    @classmethod
    def _out_grid(cls, config, grid):
        k = round(1 / config.scale)
        if grid[0] % k or grid[1] % k:
            raise LoupeError(f"pixel_shuffle with scale {config.scale} needs feature grids divisible by {k}, got {grid}")
        return grid[0] // k, grid[1] // k

    @classmethod
    def token_plan(cls, config, layout, grids) -> tuple:
        """Each tile's output grid, in layout order."""
        out = [cls._out_grid(config, g) for g in grids]
        return wrap(per_tile(out, layout.roles), config.image_start, config.image_end)

    @classmethod
    def flops(cls, config, layout, grids, in_dim: int, out_dim: int) -> dict[str, int]:
        """2 x MACs of the two linears on every shuffled token (LayerNorm and the shuffle not counted)."""
        k = round(1 / config.scale)
        n = cls.num_visual_tokens(config, layout, grids)
        proj = n * (2 * in_dim * k * k * out_dim + 2 * out_dim * out_dim)
        return {"projector": proj, "total": proj}

    def forward(self, features, layouts, pixel_values=None):
        self._out_grid(self.config, (features.shape[2], features.shape[1]))
        x = self.mlp(pixel_shuffle(features, self.config.scale))
        return [t.reshape(-1, t.shape[-1]) for t in split_by_image(x, layouts)]
