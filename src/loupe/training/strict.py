"""Strict, typed loading of recipes from plain dicts (YAML/JSON): :mod:`loupe.validation`, recipe flavour.

The one validation of Loupe (:func:`loupe.validation.build`) with ``yaml_floats=True``: PyYAML (YAML 1.1)
reads ``1e-3`` as a *string* (it wants ``1.0e-3``), so in a ``float`` field that exponent form is read as a
number; nothing else is coerced (``max_steps: "10"`` and ``tile_size: "336"`` fail, naming the key path).
A dataclass may define ``_coerce(cls, value)`` (a classmethod) to accept a shorthand (``connector: 1.0e-3``
for ``{lr: 1.0e-3}``); bounds are declared per field (:func:`loupe.validation.bounded`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..validation import build, field_names  # noqa: F401  (re-exported)


def from_dict(cls, data: Any, where: str = ""):
    """Build dataclass ``cls`` from ``data``, strictly; ``where`` is the key path used in messages."""
    return build(cls, data, where or cls.__name__, yaml_floats=True)


def to_dict(obj) -> Any:
    """Plain nested dicts/lists (for YAML dumps and markers)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
