"""The connector part: per-tile feature maps + layouts -> visual token embeddings in the LLM width.

Contract (every member abstract, so a connector that lacks one fails at registration):

* :meth:`Connector.token_plan` — pure: from its config, the image's :class:`~loupe.slicers.Layout` and each tile's
  feature grid, the ordered spans the image takes in the sequence (:mod:`loupe.tokens`): :class:`~loupe.tokens.Visual`
  spans the connector fills, :class:`~loupe.tokens.Text` spans the processor writes as real tokens (LLaVA-UHD v2's
  slice separators, InternVL's ``<img>``). ``num_tokens`` (every position, text included) and
  ``num_visual_tokens`` (what :meth:`forward` returns) derive from it, for processor, model and profiler alike.
* :meth:`Connector.flops` — pure: analytic FLOPs (2 x MACs) of one image.
* :meth:`Connector.forward` — ``features`` (N, gh, gw, C) for every tile of every image in order (or a list of
  per-tile (gh_i, gw_i, C) maps for native-aspect tiles), ``layouts`` one per image, and ``pixel_values`` (the
  tiles, for connectors guided by pixels) -> one (num_visual_tokens_i, out_dim) tensor per image.

Extra training losses are not a connector concern: an objective (:mod:`loupe.objectives`) computes them from the
parts it names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch
from torch import nn

from ..tokens import num_positions, num_visual


class Connector(nn.Module, ABC):
    Config: type
    registry_name: str = ""
    no_split_modules: tuple[str, ...] = ()

    def __init__(self, config, in_dim: int, out_dim: int):
        super().__init__()
        self.config = config
        self.in_dim = in_dim
        self.out_dim = out_dim

    @classmethod
    @abstractmethod
    def token_plan(cls, config, layout, grids: Sequence[tuple[int, int]]) -> tuple:
        """The spans of one image; ``grids[i]`` is (grid_w, grid_h) of tile i's feature map."""

    @classmethod
    @abstractmethod
    def flops(cls, config, layout, grids, in_dim: int, out_dim: int) -> dict[str, int]:
        """Analytic FLOPs of one image: ``{"projector": ..., ..., "total": ...}``."""

    @abstractmethod
    def forward(self, features, layouts: Sequence, pixel_values: torch.Tensor | None = None) -> list[torch.Tensor]:
        """One (num_visual_tokens_i, out_dim) tensor per image, in the order of the plan's visual spans."""

    @classmethod
    def num_tokens(cls, config, layout, grids) -> int:
        """Every position the image takes in the sequence (visual and text spans)."""
        return num_positions(cls.token_plan(config, layout, grids))

    @classmethod
    def num_visual_tokens(cls, config, layout, grids) -> int:
        """The tokens :meth:`forward` returns for the image."""
        return num_visual(cls.token_plan(config, layout, grids))


def split_by_image(x: torch.Tensor, layouts: Sequence) -> list[torch.Tensor]:
    """Split a tensor whose first dim runs over all tiles of all images into per-image chunks."""
    return list(torch.split(x, [lay.num_tiles for lay in layouts], dim=0))
