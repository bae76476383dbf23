"""One typed, strict validation for every configuration Loupe reads: part configs, recipes, eval protocols.

A configuration is a dataclass; its annotations are the types and each field's ``metadata`` declares the
value constraints (:func:`bounded` writes it)::

    @dataclass
    class Config:
        tile_size: int = bounded(336, min=1)
        fill: tuple = bounded(CLIP_MEAN, min=0.0, max=1.0)      # a list/tuple: every element is checked
        mode: Literal["pad", "resize"] = "pad"

:func:`build` turns a plain mapping (YAML, JSON, ``config.json``, keyword arguments) into the dataclass:

* an unknown key is an error that lists the valid keys; a missing required key is named;
* every value is checked against its annotation (``int``, ``float``, ``str``, ``bool``, ``X | None``,
  ``Union``, ``Literal[...]``, ``tuple`` / ``tuple[X, ...]`` / ``tuple[X, Y]``, ``list[X]``, ``dict[K, V]``,
  nested dataclasses, ``Any``). An ``int`` is accepted where a ``float`` is expected; a ``bool`` is never an
  ``int``; a string is never a number (``tile_size: "336"`` fails) except, with ``yaml_floats=True``, the
  exponent form PyYAML's YAML 1.1 resolver leaves as a string (``1e-3``) in a ``float`` field (recipes);
* ``min`` / ``max`` (inclusive) and ``gt`` / ``lt`` (exclusive) bounds from the field's metadata;
* the dataclass's own ``__post_init__`` checks (cross-field rules) run last; their ``ValueError`` becomes a
  :class:`~loupe.errors.LoupeError` prefixed with the path.

Every message starts with the full key path, e.g. ``model.config.slicer.tile_size: expected int, got str
'336'``. :func:`parse_text` converts a command-line ``KEY=VALUE`` string to a field's type first (the eval
protocols' overrides).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal, Union

from .errors import LoupeError

__all__ = ["bounded", "build", "check_value", "parse_text", "field_names", "BOUND_KEYS"]

BOUND_KEYS = ("min", "max", "gt", "lt")
_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def bounded(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **bounds):
    """A dataclass field with value bounds (``min``, ``max``: inclusive; ``gt``, ``lt``: exclusive)."""
    unknown = set(bounds) - set(BOUND_KEYS)
    if unknown:
        raise TypeError(f"bounded() takes {BOUND_KEYS}, got {sorted(unknown)}")  # a programming error
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=bounds)
    return dataclasses.field(default=default, metadata=bounds)


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def build(cls, data: Any, where: str = "", *, yaml_floats: bool = False):
    """Dataclass ``cls`` from the mapping ``data``, strictly (see the module docstring); ``where`` is the key
    path that prefixes every message."""
    where = where or cls.__name__
    coerce = getattr(cls, "_coerce", None)
    if coerce is not None:  # a shorthand the dataclass accepts (``connector: 1.0e-3`` for ``{lr: 1.0e-3}``)
        data = coerce(data)
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise LoupeError(f"{where}: expected a mapping with keys {field_names(cls)}, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise LoupeError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            value = check_value(hints[name], data[name], f"{where}.{name}", yaml_floats=yaml_floats)
            _check_bounds(f.metadata, value, f"{where}.{name}")
            kwargs[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise LoupeError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except LoupeError as e:
        msg = str(e)
        raise LoupeError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    except (TypeError, ValueError) as e:
        raise LoupeError(f"{where}: {e}") from None


def check_value(tp: Any, value: Any, where: str, *, yaml_floats: bool = False) -> Any:
    """``value`` checked against the annotation ``tp`` (lists become tuples for ``tuple`` fields)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for a in options:
            try:
                return check_value(a, value, where, yaml_floats=yaml_floats)
            except LoupeError as e:
                errors.append(str(e))
        if len(errors) == 1:
            raise LoupeError(errors[0])
        raise LoupeError(f"{where}: expected {_name(tp)}, got {_show(value)}")
    if value is None:
        raise LoupeError(f"{where}: expected {_name(tp)}, got null")
    if origin is Literal:
        if isinstance(value, bool) != any(isinstance(a, bool) for a in args) or value not in args:
            raise LoupeError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, yaml_floats=yaml_floats)
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise LoupeError(f"{where}: expected a list, got {_show(value)}")
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_value(args[0], v, f"{where}[{i}]", yaml_floats=yaml_floats)
                         for i, v in enumerate(value))
        if len(value) != len(args):
            raise LoupeError(f"{where}: expected {len(args)} values, got {len(value)}: {_show(value)}")
        return tuple(check_value(a, v, f"{where}[{i}]", yaml_floats=yaml_floats)
                     for i, (a, v) in enumerate(zip(args, value)))
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise LoupeError(f"{where}: expected a list, got {_show(value)}")
        item = args[0] if args else Any
        return [check_value(item, v, f"{where}[{i}]", yaml_floats=yaml_floats) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise LoupeError(f"{where}: expected a mapping, got {_show(value)}")
        if not args:
            return dict(value)
        return {check_value(args[0], k, f"{where} key", yaml_floats=yaml_floats):
                check_value(args[1], v, f"{where}.{k}", yaml_floats=yaml_floats) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise LoupeError(f"{where}: expected true or false (bool), got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise LoupeError(f"{where}: expected int, got {_show(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if yaml_floats and isinstance(value, str) and _YAML11_FLOAT.match(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads ``1e-3`` as a string
        raise LoupeError(f"{where}: expected float, got {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise LoupeError(f"{where}: expected str, got {_show(value)}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise LoupeError(f"{where}: expected {tp.__name__}, got {_show(value)}")
    raise TypeError(f"unsupported annotation {tp!r} at {where}")  # a programming error, not a user error


def _check_bounds(meta, value, where: str) -> None:
    if not any(k in meta for k in BOUND_KEYS) or value is None:
        return
    values = value if isinstance(value, (list, tuple)) else [value]
    for i, v in enumerate(values):
        if isinstance(v, (list, tuple)):
            _check_bounds(meta, v, f"{where}[{i}]")
            continue
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        at = f"{where}[{i}]" if values is value else where
        for key, ok, words in (("min", lambda a, b: a >= b, ">="), ("max", lambda a, b: a <= b, "<="),
                               ("gt", lambda a, b: a > b, ">"), ("lt", lambda a, b: a < b, "<")):
            if key in meta and not ok(v, meta[key]):
                raise LoupeError(f"{at}: must be {words} {meta[key]}, got {v!r}")


def parse_text(tp: Any, text: str, where: str) -> Any:
    """A command-line string converted to the annotation ``tp`` (``none``/``null`` -> None, ``true``/``false``/
    ``yes``/``no``/``on``/``off``/``1``/``0`` -> bool, numbers), then checked with :func:`check_value`."""
    s = text.strip()
    low = s.lower()
    options = [tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if low in ("none", "null") and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
    for a in options:
        value: Any = s
        if a is bool:
            value = {"1": True, "true": True, "yes": True, "on": True,
                     "0": False, "false": False, "no": False, "off": False}.get(low, s)
        elif a is int:
            try:
                value = int(s)
            except ValueError:
                pass
        elif a is float:
            try:
                value = float(s)
            except ValueError:
                pass
        try:
            return check_value(a, value, where)
        except LoupeError:
            continue
    return check_value(tp, s, where)  # raises, naming the expected type


def check_bounds(cls, name: str, value: Any, where: str) -> None:
    """The declared bounds of field ``name`` of dataclass ``cls`` applied to ``value``."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    _check_bounds(f.metadata, value, where)


def _name(tp) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return tp.__name__
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    return str(tp).replace("typing.", "")


def _show(value) -> str:
    return f"{type(value).__name__} {value!r}"[:120]
