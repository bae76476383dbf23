"""Evaluation: benchmark tasks, recorded protocols, the runner and adapters for outside harnesses.

:mod:`loupe.evaluation.metrics` holds the metrics as pure functions matching the reference code (LLaVA,
lmms-eval, VLMEvalKit, ConvLLaVA, LLaVA-UHD v2) exactly, quirks included.
"""

from . import metrics

__all__ = ["metrics"]
