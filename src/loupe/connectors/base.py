"""The connector part: per-tile feature maps + layouts -> visual token embeddings in the LLM width.

A connector owns its accounting: :meth:`Connector.num_tokens` is a pure function of its config, the
image's :class:`~loupe.slicers.Layout` and the encoder's feature grid of each tile; the processor uses
it to expand ``<image>`` and the model checks its output against it. A connector may hold extra losses
(``self.aux_losses``, a dict of scalars set during ``forward``) that the model adds to the LM loss.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Connector(nn.Module):
    Config: type
    registry_name: str = ""
    no_split_modules: tuple[str, ...] = ()

    def __init__(self, config, in_dim: int, out_dim: int):
        super().__init__()
        self.config = config
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.aux_losses: dict[str, torch.Tensor] = {}

    @classmethod
    def num_tokens(cls, config, layout, grids: Sequence[tuple[int, int]]) -> int:
        """Visual tokens for one image; ``grids[i]`` is (grid_w, grid_h) of tile i's feature map."""
        raise NotImplementedError

    def token_ids(self, layouts: Sequence) -> list[int]:
        """Ids of LLM tokens whose input embeddings this connector places among its visual tokens for these
        layouts (none by default; Hiwin: the slice separators). The model embeds them before the call and
        passes the (K, D) rows, in this order, as ``token_embeds``."""
        return []

    def forward(self, features: torch.Tensor, layouts: Sequence, **context) -> list[torch.Tensor]:
        """``features``: (total_tiles, gh, gw, C) for all images, tiles in layout order, images in order.

        Returns one (num_tokens_i, out_dim) tensor per image. ``context`` (tensors only, see
        ``LoupeForConditionalGeneration.connector_context``) carries ``pixel_values`` and, when
        :meth:`token_ids` is not empty, ``token_embeds``.
        """
        raise NotImplementedError


def split_by_image(x: torch.Tensor, layouts: Sequence) -> list[torch.Tensor]:
    """Split a tensor whose first dim runs over all tiles of all images into per-image chunks."""
    return list(torch.split(x, [lay.num_tiles for lay in layouts], dim=0))
