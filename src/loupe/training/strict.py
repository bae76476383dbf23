"""Strict, typed loading of nested dataclasses from plain dicts (YAML/JSON) — one source of truth.

Architecture principle 9: an unknown key is an error that lists the valid keys; a wrong type is an error that
names the key path; nothing is silently ignored or coerced except the safe cases below:

* ``int`` -> ``float`` fields (``lr: 0`` means 0.0);
* numeric strings -> ``int``/``float`` fields — PyYAML (YAML 1.1) reads ``1e-3`` as a *string* (it wants
  ``1.0e-3``), and ``key=value`` overrides arrive as strings;
* ``"true"/"false"`` strings -> ``bool`` (overrides), never ``bool("False") is True`` (nanoVLM's bug).

A dataclass may define ``_coerce(cls, value)`` (a classmethod) to accept a shorthand (``connector: 1.0e-3`` for
``{lr: 1.0e-3}``). Supported annotations: the scalars, ``X | None``, ``Literal[...]``, ``list[X]``,
``dict[str, X]``, nested dataclasses, and bare ``dict`` (free-form, e.g. preset config overrides).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from ..errors import LoupeError


def from_dict(cls, data: Any, where: str = ""):
    """Build dataclass ``cls`` from ``data``, strictly; ``where`` is the key path used in messages."""
    return _convert(cls, data, where or cls.__name__)


def to_dict(obj) -> Any:
    """Plain nested dicts/lists (for YAML dumps and markers)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _dataclass(cls, data, where):
    coerce = getattr(cls, "_coerce", None)
    if coerce is not None:
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
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise LoupeError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except LoupeError as e:
        raise LoupeError(f"{where}: {e}") from None


def _convert(tp, value, where):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for a in options:
            try:
                return _convert(a, value, where)
            except LoupeError as e:
                errors.append(str(e))
        raise LoupeError(errors[0] if len(errors) == 1 else f"{where}: {_show(value)} matches none of {options}")
    if value is None:
        raise LoupeError(f"{where}: may not be null")
    if origin is Literal:
        if value not in args:
            raise LoupeError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, where)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise LoupeError(f"{where}: expected a list, got {_show(value)}")
        item = args[0] if args else Any
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise LoupeError(f"{where}: expected a mapping, got {_show(value)}")
        if not args:
            return dict(value)
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise LoupeError(f"{where}: expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, bool):
            raise LoupeError(f"{where}: expected an integer, got {_show(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise LoupeError(f"{where}: expected an integer, got {_show(value)}")
    if tp is float:
        if isinstance(value, bool):
            raise LoupeError(f"{where}: expected a number, got {_show(value)}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise LoupeError(f"{where}: expected a number, got {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise LoupeError(f"{where}: expected a string, got {_show(value)}")
    raise TypeError(f"unsupported annotation {tp!r} at {where}")  # a programming error, not a user error


def _show(value) -> str:
    return f"{type(value).__name__} {value!r}"[:120]
