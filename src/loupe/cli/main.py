"""``loupe`` entry point. Each subcommand lives in ``loupe/cli/<name>.py`` and defines
``add_parser(subparsers)`` (which sets ``func``) — adding one is one file plus one line in ``SUBCOMMANDS``.

Bad input never ends in a traceback: argparse rejects malformed values (shared types in :mod:`loupe.cli.args`)
and a :class:`~loupe.errors.LoupeError` from the work becomes ``loupe CMD: error: ...``; both exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ["info", "chat", "train", "demo", "compare", "data", "eval", "profile", "serve", "convert", "show"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loupe", description="High-resolution multimodal LLMs from parts.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"loupe.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"loupe.cli.{name}":
                continue  # not built yet
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import LoupeError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed "loupe CMD: error: ..." (or the help): return its code
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except LoupeError as e:
        print(f"loupe {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
