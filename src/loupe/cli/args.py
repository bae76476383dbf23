"""Argument types shared by the subcommands: a bad value is an ``error: argument --x: ...`` line and exit 2
from argparse, before any work starts (never a traceback, never a silently empty run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, batch sizes, token budgets)."""
    n = _int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {n}")
    return n


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    n = _int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def share(text: str) -> float:
    """A float in [0, 1]."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= x <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a share in [0, 1], got {text}")
    return x


def output_dir(text: str) -> str:
    """A folder to write into: it may not exist yet, but must not be an existing file."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is an existing file, not a folder")
    return text


def existing_dir(text: str) -> str:
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"folder not found: {text}")
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text


def existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"not found: {text}")
    return text


def int_list(minimum: int, what: str):
    """An argparse type: a comma- (or space-) separated list of whole numbers >= ``minimum``, none twice."""
    def parse(text: str) -> list[int]:
        items = [t for t in text.replace(" ", ",").split(",") if t]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}")
        vals = [_int(t) for t in items]
        bad = [v for v in vals if v < minimum]
        if bad:
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {bad}")
        if len(set(vals)) != len(vals):
            raise argparse.ArgumentTypeError(f"{what} listed twice in {text!r}")
        return vals

    return parse
