"""Image geometry shared by processor, model and profiler: the one place visual tokens are counted.

``ImageGeometry`` composes three pure functions owned by the parts:
``slicer.plan(size) -> Layout``, ``encoder.feature_grid(cfg, tile_size)`` and
``connector.token_plan(cfg, layout, grids) -> spans`` (:mod:`loupe.tokens`). Nothing here touches weights or pixels.
"""

from __future__ import annotations

from typing import Sequence

from .registry import CONNECTORS, ENCODERS
from .tokens import num_positions, num_visual
from . import slicers as _slicers
from . import encoders as _encoders  # noqa: F401  (registers encoders)
from . import connectors as _connectors  # noqa: F401  (registers connectors)


class ImageGeometry:
    def __init__(self, slicer: dict, vision: dict, connector: dict):
        self.slicer = _slicers.build(slicer)
        self.encoder_cls = ENCODERS.get(vision["name"])
        self.encoder_cfg = ENCODERS.config(vision)
        self.connector_cls = CONNECTORS.get(connector["name"])
        self.connector_cfg = CONNECTORS.config(connector)

    @classmethod
    def from_config(cls, config) -> "ImageGeometry":
        return cls(config.slicer, config.vision, config.connector)

    def layout(self, image_size: Sequence[int]):
        """Layout of an image of (width, height)."""
        return self.slicer.plan(tuple(image_size))

    def grids(self, layout) -> list[tuple[int, int]]:
        return [self.encoder_cls.feature_grid(self.encoder_cfg, s) for s in layout.tile_sizes]

    def _layout(self, image_size_or_layout):
        if isinstance(image_size_or_layout, _slicers.Layout):
            return image_size_or_layout
        return self.layout(image_size_or_layout)

    def token_plan(self, image_size_or_layout) -> tuple:
        """The spans the image takes in the sequence (:mod:`loupe.tokens`): visual spans and text spans."""
        layout = self._layout(image_size_or_layout)
        return self.connector_cls.token_plan(self.connector_cfg, layout, self.grids(layout))

    def num_tokens(self, image_size_or_layout) -> int:
        """Every position the image takes in the sequence (visual tokens and the plan's text tokens)."""
        return num_positions(self.token_plan(image_size_or_layout))

    def num_visual_tokens(self, image_size_or_layout) -> int:
        """The tokens the connector outputs for the image (the ``image_token_id`` slots)."""
        return num_visual(self.token_plan(image_size_or_layout))
