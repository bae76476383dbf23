"""Variant names: "lmms-eval" and "lmms_eval" (or "padded-square") mean the same thing."""

from __future__ import annotations


def canonical(name: object, aliases: dict[str, str] | None = None) -> str:
    """``name`` with hyphens as underscores, then mapped through ``aliases``."""
    key = str(name).replace("-", "_")
    return (aliases or {}).get(key, key)
