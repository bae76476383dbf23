"""Vision encoders: tiles -> feature maps. One file per encoder; ``get(name)`` returns the class."""

from ..registry import ENCODERS
from .base import VisionEncoder
from . import clip, convnext, hybrid, tinyconv  # noqa: F401  (register "clip", "convnext", "hybrid", "tinyconv")
from . import internvit, qwen2_vl, siglip  # noqa: F401  (register "internvit", "qwen2_vl", "siglip")

get = ENCODERS.get
names = ENCODERS.names

__all__ = ["VisionEncoder", "get", "names"]
