"""ChartQA relaxed accuracy.

Follows lmms-eval ``tasks/chartqa/utils.py:relaxed_correctness`` (from Qwen-VL, after pix2struct
``metrics.py``) and VLMEvalKit ``vlmeval/dataset/utils/vqa_eval.py:relaxed_correctness`` with
``process_line(method="relaxed_accuracy")`` and ``hit_calculate`` (max over answers).

None of the seed papers scores ChartQA with this: LLaVA-UHD v2's ``scripts/v1_5/eval/chartqa.sh`` uses ANLS
(:func:`loupe.evaluation.metrics.anls`). It is here for lmms-eval / VLMEvalKit protocols.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import LoupeError
from ._names import canonical

__all__ = ["RELAXED_VARIANTS", "relaxed_accuracy"]

RELAXED_VARIANTS = ("lmms_eval", "vlmevalkit")


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def _relaxed_correctness(prediction: str, target: str, max_relative_change: float) -> bool:
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        return abs(prediction_float - target_float) / abs(target_float) <= max_relative_change
    return prediction.lower() == target.lower()


def relaxed_accuracy(prediction: str, target: str | Sequence[str], variant: str = "lmms_eval",
                     max_relative_change: float = 0.05) -> float:
    """Relaxed correctness of one ChartQA answer: 1.0 or 0.0.

    * A string ending in "%" parses as ``float(s.rstrip("%")) / 100``, anything else as Python ``float(s)``
      (which accepts surrounding whitespace, "1_000", "nan", "inf"); failure -> not a number.
    * If the prediction parses **and** the target parses to a **non-zero** number: correct iff
      ``|p - t| / |t| <= 0.05``. Otherwise (target 0, text answers, units, "1,000"): the case-insensitive
      strings must be equal -- so a zero target needs an exact string match ("0.0" != "0"), and "Yes." !=
      "yes". A period right after a number still parses ("45." is 45.0); "45.0." does not.
    * "45%" vs "0.45" is correct (both 0.45); "45%" vs "45" compares 0.45 with 45 and is wrong.

    Variants (default ``lmms_eval``, the Qwen-VL original):

    * ``lmms_eval``: the prediction is **not** stripped ("0.45 " still parses as a float, but "45% " does
      not end with "%"). lmms-eval's ChartQA has one target; a list here scores the max over it.
    * ``vlmevalkit``: the prediction is stripped; a list of targets scores the max over them.
    """
    variant = canonical(variant)
    if variant not in RELAXED_VARIANTS:
        raise LoupeError(f"unknown relaxed-accuracy variant {variant!r}; valid: {', '.join(RELAXED_VARIANTS)}")
    targets = [target] if isinstance(target, str) else list(target)
    if not targets:
        raise LoupeError("relaxed_accuracy needs a target")
    if variant == "lmms_eval":
        hit = any(_relaxed_correctness(prediction, t, max_relative_change) for t in targets)
        return 1.0 if hit else 0.0
    pred = str(prediction).strip()
    hit = any(_relaxed_correctness(pred, str(t), max_relative_change) for t in targets)
    return 1.0 if hit else 0.0
