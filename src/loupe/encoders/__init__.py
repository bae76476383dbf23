"""Vision encoders: tiles -> feature maps. One file per encoder; ``get(name)`` returns the class."""

from ..registry import ENCODERS
from .base import VisionEncoder
from . import clip  # noqa: F401  (registers "clip")

get = ENCODERS.get
names = ENCODERS.names

__all__ = ["VisionEncoder", "get", "names"]
