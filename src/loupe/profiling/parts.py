"""Each part's own analytic FLOPs, looked up by the profiler, and the cross-check against a counted run.

Parts own their accounting (architecture principle 11): an encoder class may define
``flops(config, tile_size[, all_layers=True]) -> {"total": ...}`` (per tile of (W, H) px) and a connector class
``flops(config, layout, grids, in_dim, out_dim) -> {"total": ...}`` (per image). A part without one is
reported as ``analytic: None`` and flagged; its counted value is used.
"""

from __future__ import annotations

from collections import Counter as _Tally

TOLERANCE = 0.02  # flag any analytic / counted gap above 2%


def encoder_flops(encoder_cls, config, tile_sizes, all_layers: bool) -> int | None:
    """Sum of the encoder's analytic FLOPs over the tiles, or None when it has no ``flops``."""
    fn = getattr(encoder_cls, "flops", None)
    if fn is None:
        return None
    total = 0
    for size, n in _Tally(tuple(s) for s in tile_sizes).items():
        try:
            f = fn(config, size, all_layers=all_layers) if all_layers else fn(config, size)
        except TypeError:  # no ``all_layers`` option: the encoder runs every block anyway
            f = fn(config, size)
        total += n * int(f["total"])
    return total


def connector_flops(connector_cls, config, layout, grids, in_dim: int, out_dim: int) -> int | None:
    fn = getattr(connector_cls, "flops", None)
    if fn is None:
        return None
    try:
        return int(fn(config, layout, grids, in_dim, out_dim)["total"])
    except TypeError:  # another signature: not comparable, fall back to the counted value
        return None


def check(part: str, analytic: int | None, counted: int, hint: str = "") -> dict:
    """``{"part", "analytic", "counted", "gap", "flag"}``; gap = (counted - analytic) / counted; ``hint`` is
    appended to a flag (a known reason for a gap)."""
    if analytic is None:
        return {"part": part, "analytic": None, "counted": counted, "gap": None,
                "flag": "no analytic flops() on this part: counted value used"}
    gap = (counted - analytic) / counted if counted else (0.0 if analytic == 0 else 1.0)
    flag = None
    if abs(gap) > TOLERANCE:
        flag = f"counted differs from analytic by {100 * gap:+.1f}% (> {100 * TOLERANCE:.0f}%){hint}"
    return {"part": part, "analytic": analytic, "counted": counted, "gap": gap, "flag": flag}
