"""One small registry type, used by every kind of part (slicers, encoders, connectors, training objectives).

A part registers its id once, where it is defined (lmms-eval's ``@register_model``)::

    @SLICERS.register("pad")
    class PadSlicer(Slicer):
        @dataclass
        class Config: ...

Each part class carries a ``Config`` dataclass: the typed, strict schema of its options. Configurations
travel as plain dicts ``{"name": "pad", "tile_size": 336, ...}`` inside :class:`~loupe.LoupeConfig`
(so they serialise to ``config.json``); :meth:`Registry.config` turns such a dict into the dataclass through
:func:`loupe.validation.build`: unknown keys fail with the list of valid ones, and each value is checked
against its annotation and the bounds its field declares (:func:`loupe.validation.bounded`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Generic, TypeVar

from .errors import LoupeError

T = TypeVar("T")


class Registry(Generic[T]):
    """``base``: the dotted path of the part's abstract base class (imported on first registration, so this module
    imports no part); a class that does not derive from it, or leaves one of its abstract members undefined, is
    refused at registration with the list of what is missing."""

    def __init__(self, kind: str, base: str | None = None):
        self.kind = kind
        self.base = base
        self._items: dict[str, type] = {}

    def _base(self) -> type | None:
        if self.base is None:
            return None
        module, _, name = self.base.rpartition(".")
        return getattr(importlib.import_module(module), name)

    def register(self, name: str) -> Callable[[type], type]:
        def deco(cls: type) -> type:
            if name in self._items and self._items[name] is not cls:
                raise LoupeError(f"{self.kind} {name!r} is registered twice ({self._items[name]} and {cls})")
            if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
                raise LoupeError(f"{self.kind} {name!r}: class {cls.__name__} needs a dataclass `Config`")
            base = self._base()
            if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
                raise LoupeError(f"{self.kind} {name!r}: class {getattr(cls, '__name__', cls)} must derive from "
                                 f"{base.__module__}.{base.__name__}")
            missing = sorted(getattr(cls, "__abstractmethods__", ()))
            if missing:
                raise LoupeError(f"{self.kind} {name!r}: class {cls.__name__} does not define {', '.join(missing)} "
                                 f"(the {base.__name__ if base else self.kind} contract)")
            cls.registry_name = name
            self._items[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> type:
        try:
            return self._items[name]
        except KeyError:
            raise LoupeError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def config(self, spec: dict[str, Any] | Any, where: str | None = None, yaml_floats: bool = False) -> Any:
        """Turn ``{"name": ..., **options}`` into the part's ``Config`` dataclass, strictly and typed
        (:func:`loupe.validation.build`: unknown keys, wrong types and out-of-range values fail, the message
        starting with ``where``, e.g. ``model.config.slicer.tile_size: expected int, got str '336'``).
        ``yaml_floats``: read ``1e-3`` written in a YAML recipe (a string there) as a float."""
        from .validation import build

        where = where or self.kind
        if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
            return spec
        if not isinstance(spec, dict) or "name" not in spec:
            raise LoupeError(f"{where}: a {self.kind} configuration must be a dict with a 'name' key, got {spec!r}")
        if not isinstance(spec["name"], str):
            raise LoupeError(f"{where}.name: expected str, got {type(spec['name']).__name__} {spec['name']!r}")
        try:
            cls = self.get(spec["name"])
        except LoupeError as e:
            raise LoupeError(f"{where}: {e}") from None
        fields = [f.name for f in dataclasses.fields(cls.Config) if f.init]
        options = {k: v for k, v in spec.items() if k != "name"}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise LoupeError(f"{where}: unknown option(s) {unknown} for {self.kind} {spec['name']!r}; "
                             f"valid: {', '.join(sorted(fields))}")
        return build(cls.Config, options, where, yaml_floats=yaml_floats)

    def to_dict(self, cfg: Any) -> dict[str, Any]:
        """The serialisable dict of a Config dataclass, ``name`` first."""
        for name, cls in self._items.items():
            if isinstance(cfg, cls.Config):
                return {"name": name, **_jsonable(dataclasses.asdict(cfg))}
        raise LoupeError(f"{cfg!r} is not the Config of any registered {self.kind}")

    def normalise(self, spec: dict[str, Any], where: str | None = None) -> dict[str, Any]:
        """Validate a dict and fill in defaults."""
        return self.to_dict(self.config(spec, where))


def _jsonable(x: Any) -> Any:
    if isinstance(x, tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    return x


SLICERS: Registry = Registry("slicer", base="loupe.slicers.base.Slicer")
ENCODERS: Registry = Registry("vision encoder", base="loupe.encoders.base.VisionEncoder")
CONNECTORS: Registry = Registry("connector", base="loupe.connectors.base.Connector")
OBJECTIVES: Registry = Registry("objective", base="loupe.objectives.base.Objective")  # training objectives
