"""Slicers: image -> tiles + :class:`Layout`. One file per method; ``get(name)`` returns the class."""

from ..registry import SLICERS
from .base import Layout, Slicer, normalize
from . import pad  # noqa: F401  (registers "pad")
from . import anyres, aspect, dcm, uhd  # noqa: F401  (register "anyres", "aspect", "dcm", "uhd")
from . import internvl, native  # noqa: F401  (register "internvl", "native")

get = SLICERS.get
names = SLICERS.names


def build(spec) -> Slicer:
    """A slicer instance from ``{"name": ..., **options}`` or a Config dataclass."""
    cfg = SLICERS.config(spec)
    name = SLICERS.to_dict(cfg)["name"]
    return SLICERS.get(name)(cfg)


__all__ = ["Layout", "Slicer", "normalize", "get", "names", "build"]
