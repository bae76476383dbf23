"""Profiling: visual tokens, parameters, FLOPs per part, KV cache, memory and latency per method and resolution.

    from loupe.profiling import profile
    records = profile("llava-next-7b", "336x336,672x672", text_tokens=0, batch=1)   # meta device, no weights

Conventions (``paper`` / ``full`` totals, FLOPs = 2 x MACs): :mod:`loupe.profiling.profiler`; paper anchors:
:mod:`loupe.profiling.anchors`; memory assumptions: :mod:`loupe.profiling.memory`; outputs (terminal table,
JSON, Markdown, README table, PNG plots): :mod:`loupe.profiling.report` and :mod:`loupe.profiling.plots`.
"""

from .anchors import ANCHORS, anchor_for
from .profiler import parse_sizes, profile, profile_many, visual_tokens

__all__ = ["profile", "profile_many", "visual_tokens", "parse_sizes", "ANCHORS", "anchor_for"]
