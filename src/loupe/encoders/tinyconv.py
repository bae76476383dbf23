"""``tinyconv`` — a small from-scratch vision encoder for CPU demos (a stand-in for CLIP, not a paper part).

Measured design that learns a fine-detail task in minutes on 2 cores (a feasibility probe with tiny from-scratch
models): a conv stem of three 3x3 stride-2 convs (3 -> 32 -> 64 -> ``width``, GELU) giving one token per 8x8 patch;
plus a learned in-view position embedding, a role embedding (overview / local / global tile) and a linear map of
Fourier features of each patch centre in **whole-image coordinates** (so tiles and the overview share one coordinate
system; needs the layouts); ``depth`` pre-LN transformer blocks; a final LayerNorm. Pixels are normalised with mean
0.5 / std 0.25.

Shapes: (N, 3, H, W) -> (N, H/8, W/8, width). With ``native_aspect`` (for LLaVA-UHD-style slicers whose tiles differ
in size; the processor zero-pads them into one batch) each tile is cropped to ``layouts[i].tile_sizes`` and encoded
at its own grid, one batched pass per distinct size: a tensor when all tiles share a grid, else a list of
(h_i, w_i, width) maps in tile order (as the ``clip`` encoder's ``native_aspect``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LoupeError
from ..registry import ENCODERS
from .base import VisionEncoder
from ..validation import bounded

ROLES = {"overview": 0, "local": 1, "global": 2}


def fourier_features(xy: torch.Tensor, n_freq: int) -> torch.Tensor:
    """(..., 2) coordinates in [0, 1] -> (..., 4 n_freq) sin/cos at frequencies 1, 2, 4, ... (times pi)."""
    freqs = (2.0 ** torch.arange(n_freq, dtype=xy.dtype, device=xy.device)) * math.pi
    ang = xy.unsqueeze(-1) * freqs  # (..., 2, F)
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)


@ENCODERS.register("tinyconv")
class TinyConvEncoder(VisionEncoder):
    @dataclass
    class Config:
        width: int = bounded(96, min=1)
        stem: tuple = bounded((32, 64), min=1)
        depth: int = bounded(1, min=0)
        heads: int = bounded(4, min=1)
        max_grid: int = bounded(8, min=1)  # learned in-view positions for up to max_grid x max_grid patches (interpolated beyond)
        n_freq: int = bounded(6, min=0)
        native_aspect: bool = False  # per-tile sizes from the layouts (see the module docstring)
        image_mean: tuple = bounded((0.5, 0.5, 0.5), min=0.0, max=1.0)
        image_std: tuple = bounded((0.25, 0.25, 0.25), gt=0.0)

    self_init = True  # PyTorch-style init (loupe.init), not transformers' N(0, 0.02)

    def init_module(self, module) -> bool:
        from transformers import initialization as init

        if module is self:
            init.normal_(self.pos, std=0.02)
            return True
        if module is self.role:
            init.normal_(self.role.weight, std=0.02)
            return True
        return False

    def __init__(self, config):
        super().__init__(config)
        c = config
        chans = [3, *c.stem, c.width]
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1)]
            if i < 2:
                layers.append(nn.GELU())
        self.stem = nn.Sequential(*layers)
        self.pos = nn.Parameter(torch.zeros(1, c.width, c.max_grid, c.max_grid))
        self.role = nn.Embedding(len(ROLES), c.width)
        self.coord = nn.Linear(4 * c.n_freq, c.width)
        block = nn.TransformerEncoderLayer(c.width, c.heads, 4 * c.width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.ModuleList([_clone(block) for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.width)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.role.weight, std=0.02)

    @classmethod
    def feature_grid(cls, config, tile_size):
        return -(-int(tile_size[0]) // 8), -(-int(tile_size[1]) // 8)

    @classmethod
    def output_dim(cls, config) -> int:
        return int(config.width)

    @classmethod
    def flops(cls, config, tile_size, all_layers: bool = False) -> dict[str, int]:
        """2 x MACs of one tile: the three stride-2 3x3 convs, the coordinate map, and each block's attention
        projections (8 N C^2), score and AV matmuls (4 N^2 C) and FFN (16 N C^2). Norms, GELU and adds not counted."""
        chans = [3, *config.stem, config.width]
        h, w = int(tile_size[1]), int(tile_size[0])
        stem = 0
        for i in range(3):
            h, w = -(-h // 2), -(-w // 2)
            stem += 2 * h * w * chans[i] * chans[i + 1] * 9
        n, c = h * w, int(config.width)
        coord = 2 * n * 4 * int(config.n_freq) * c
        attn = 4 * n * n * c
        layers = int(config.depth) * (8 * n * c * c + 16 * n * c * c + attn)
        return {"stem": stem, "coord": coord, "attention": int(config.depth) * attn, "layers": layers,
                "total": stem + coord + layers}

    @staticmethod
    def _tile_table(layouts) -> tuple[list, list]:
        """Per tile of the flat batch: its box in whole-image [0, 1] coordinates, and its role id."""
        boxes, roles = [], []
        for lay in layouts:
            w, h = lay.image_size
            bs = lay.boxes or tuple((0.0, 0.0, float(w), float(h)) for _ in lay.roles)
            boxes += [(x0 / w, y0 / h, x1 / w, y1 / h) for x0, y0, x1, y1 in bs]
            roles += [ROLES.get(r, 1) for r in lay.roles]
        return boxes, roles

    def _coords(self, n: int, gh: int, gw: int, table, device, dtype):
        """(n, gh*gw, 2) patch centres in whole-image [0, 1] coordinates, and (n,) role ids."""
        u = (torch.arange(gw, device=device, dtype=dtype) + 0.5) / gw
        v = (torch.arange(gh, device=device, dtype=dtype) + 0.5) / gh
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        local = torch.stack([uu, vv], -1).reshape(1, gh * gw, 2).expand(n, -1, -1)
        if table is None:
            return local, torch.zeros(n, dtype=torch.long, device=device)
        b = torch.tensor(table[0], device=device, dtype=dtype)  # (n, 4)
        xy = b[:, None, :2] + local * (b[:, None, 2:] - b[:, None, :2])
        return xy, torch.tensor(table[1], device=device)

    def forward(self, pixel_values: torch.Tensor, layouts=None) -> torch.Tensor | list[torch.Tensor]:
        table = self._tile_table(layouts) if layouts else None
        if self.config.native_aspect and layouts:
            sizes = [tuple(s) for lay in layouts for s in lay.tile_sizes]
            n, _, height, width = pixel_values.shape
            if len(sizes) != n or any(w > width or h > height for w, h in sizes):
                raise LoupeError(f"tinyconv native_aspect: {n} tiles of {width}x{height} px do not fit the layouts' "
                                 f"tile sizes {sizes[:4]}...")
            if len(set(sizes)) > 1:
                out: list = [None] * n
                for w, h in dict.fromkeys(sizes):  # one batched pass per distinct tile size
                    idx = [i for i, s in enumerate(sizes) if s == (w, h)]
                    sub = ([table[0][i] for i in idx], [table[1][i] for i in idx])
                    maps = self._encode(pixel_values[idx, :, :h, :w], sub)
                    for i, m in zip(idx, maps.unbind(0)):  # unbind: one backward, not one zero-fill per tile
                        out[i] = m
                return out
            w, h = sizes[0]
            pixel_values = pixel_values[:, :, :h, :w]
        return self._encode(pixel_values, table)

    def _encode(self, pixel_values: torch.Tensor, table) -> torch.Tensor:
        x = self.stem(pixel_values)  # (N, C, gh, gw)
        n, c, gh, gw = x.shape
        pos = self.pos if (gh, gw) == self.pos.shape[-2:] else F.interpolate(self.pos, (gh, gw), mode="bilinear")
        x = (x + pos).flatten(2).transpose(1, 2)  # (N, L, C)
        xy, roles = self._coords(n, gh, gw, table, x.device, x.dtype)
        x = x + self.coord(fourier_features(xy, self.config.n_freq)) + self.role(roles)[:, None]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x).reshape(n, gh, gw, c)


def _clone(m: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(m)
