"""Connectors: features + layout -> visual token embeddings. One file per connector."""

from ..registry import CONNECTORS
from .base import Connector
from . import mlp  # noqa: F401  (registers "mlp")
from . import llava_next  # noqa: F401  (registers "llava_next")
from . import dem  # noqa: F401  (registers "dem")
from . import hiwin  # noqa: F401  (registers "hiwin", LLaVA-UHD v2)
from . import anyres_max, patch_merge, pixel_shuffle  # noqa: F401  (OneVision, Qwen2-VL, InternVL)

get = CONNECTORS.get
names = CONNECTORS.names

__all__ = ["Connector", "get", "names"]
