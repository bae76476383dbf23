"""The vision-encoder part: tiles (N, 3, H, W) -> feature maps (N, gh, gw, C), channels last.

``forward(pixel_values, layouts=None)``: ``layouts`` (one :class:`~loupe.slicers.Layout` per image, tiles in
order) lets an encoder use where each tile sits in the image (e.g. whole-image position features);
encoders that do not need it ignore it.

An encoder owns its accounting: :meth:`VisionEncoder.feature_grid` (pure: the feature-map size of a tile
size, no weights), :attr:`out_dim` (channels), and ``image_mean``/``image_std`` (the normalisation its
weights expect), which the processor uses.
"""

from __future__ import annotations

import torch
from torch import nn


class VisionEncoder(nn.Module):
    Config: type
    registry_name: str = ""
    #: module class names FSDP should not split (models declare, strategies decide)
    no_split_modules: tuple[str, ...] = ()

    def __init__(self, config):
        super().__init__()
        self.config = config

    @classmethod
    def feature_grid(cls, config, tile_size: tuple[int, int]) -> tuple[int, int]:
        """(grid_w, grid_h) of the feature map for a tile of (width, height) pixels."""
        raise NotImplementedError

    @classmethod
    def output_dim(cls, config) -> int:
        raise NotImplementedError

    @property
    def out_dim(self) -> int:
        return self.output_dim(self.config)

    @property
    def image_mean(self):
        return tuple(self.config.image_mean)

    @property
    def image_std(self):
        return tuple(self.config.image_std)

    def load_pretrained(self, path: str) -> None:  # pragma: no cover - per encoder
        raise NotImplementedError(f"{type(self).__name__} cannot load pretrained weights")

    def forward(self, pixel_values: torch.Tensor, layouts=None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
