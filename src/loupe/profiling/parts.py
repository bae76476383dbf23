"""Each part's own analytic FLOPs, looked up by the profiler, and the cross-check against a counted run.

Parts own their accounting: every encoder defines ``flops(config, tile_size, all_layers=False) -> {"total": ...}``
(per tile of (W, H) px) and every connector ``flops(config, layout, grids, in_dim, out_dim) -> {"total": ...}`` (per
image): both are abstract members of the part contracts, so a part without one cannot be registered.
"""

from __future__ import annotations

from collections import Counter as _Tally

TOLERANCE = 0.02  # flag any analytic / counted gap above 2%


def encoder_flops(encoder_cls, config, tile_sizes, all_layers: bool) -> int:
    """Sum of the encoder's analytic FLOPs (its :meth:`~loupe.encoders.base.VisionEncoder.flops`) over the tiles."""
    total = 0
    for size, n in _Tally(tuple(s) for s in tile_sizes).items():
        total += n * int(encoder_cls.flops(config, size, all_layers=all_layers)["total"])
    return total


def connector_flops(connector_cls, config, layout, grids, in_dim: int, out_dim: int) -> int:
    """The connector's analytic FLOPs of one image (its :meth:`~loupe.connectors.base.Connector.flops`)."""
    return int(connector_cls.flops(config, layout, grids, in_dim, out_dim)["total"])


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
