"""``loupe info``: registered parts and presets."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("info", help="list registered parts and presets")
    p.set_defaults(func=run)


def run(args) -> int:
    import loupe
    from loupe.registry import CONNECTORS, ENCODERS, SLICERS

    print(f"loupe {loupe.__version__}")
    for reg in (SLICERS, ENCODERS, CONNECTORS):
        print(f"{reg.kind}s: {', '.join(reg.names())}")
    print("presets:")
    for name, desc in loupe.list_presets().items():
        print(f"  {name:24s} {desc}")
    return 0
