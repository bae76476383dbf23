"""Image geometry shared by processor, model and profiler: the one place visual tokens are counted.

``ImageGeometry`` composes three pure functions owned by the parts:
``slicer.plan(size) -> Layout``, ``encoder.feature_grid(cfg, tile_size)`` and
``connector.num_tokens(cfg, layout, grids)``. Nothing here touches weights or pixels.
"""

from __future__ import annotations

from typing import Sequence

from .registry import CONNECTORS, ENCODERS
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

    def num_tokens(self, image_size_or_layout) -> int:
        layout = image_size_or_layout
        if not isinstance(layout, _slicers.Layout):
            layout = self.layout(image_size_or_layout)
        return self.connector_cls.num_tokens(self.connector_cfg, layout, self.grids(layout))
