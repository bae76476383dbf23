"""ANLS (DocVQA, InfoVQA; LLaVA-UHD v2 also scores ChartQA with it).

Follows lmms-eval ``lmms_eval/api/metrics.py:anls`` (taken from Qwen-VL ``eval_mm/infographicsvqa_eval.py``),
which VLMEvalKit ``vlmeval/dataset/utils/vqa_eval.py:anls_compute`` + ``hit_calculate`` repeats, and LLaVA-UHD
v2 ``llava/eval/m4c_evaluator.py:STVQAANLSEvaluator`` (its ``eval_docvqa.py`` / ChartQA scorer).
"""

from __future__ import annotations

from typing import Sequence

from ...errors import LoupeError
from ._names import canonical

__all__ = ["ANLS_VARIANTS", "levenshtein", "anls"]

ANLS_VARIANTS = ("lmms_eval", "vlmevalkit", "uhd_stvqa")


def levenshtein(a: str, b: str) -> int:
    """Plain Levenshtein distance (insert / delete / substitute, cost 1 each) over characters."""
    if len(a) > len(b):
        a, b = b, a
    prev = list(range(len(a) + 1))
    for i2, c2 in enumerate(b):
        cur = [i2 + 1]
        for i1, c1 in enumerate(a):
            cur.append(prev[i1] if c1 == c2 else 1 + min(prev[i1], prev[i1 + 1], cur[-1]))
        prev = cur
    return prev[-1]


def anls(prediction: str, answers: str | Sequence[str], threshold: float = 0.5,
         variant: str = "lmms_eval") -> float:
    """Average Normalised Levenshtein Similarity of one prediction against its ground-truth answers.

    ``lmms_eval`` (default; ``vlmevalkit`` is the same code -- ConvLLaVA's DocVQA numbers come from it):

    * each answer ``g`` and the prediction ``p`` are normalised as ``" ".join(s.strip().lower().split())``;
    * ``NL = lev(g_norm, p_norm) / max(len(g.upper()), len(p.upper()))`` -- [IMPORTANT] the denominator uses
      the *raw, un-normalised* strings (upper-cased, so "ß" counts 2), so extra spaces or padding shrink
      ``NL``; ``NL = 0`` when both raw strings are empty;
    * ``s = 1 - min_g NL``; ``s = 0`` if ``s < threshold``. So ``NL == 0.5`` exactly keeps 0.5 (the ANLS paper's
      ``NL < tau`` would give 0).

    ``uhd_stvqa`` (``STVQAANLSEvaluator``): ``s.lower().strip()`` only (no whitespace collapsing), the
    denominator is the *normalised* lengths, ``s_g`` kept if ``>= 0.5`` (here ``>= threshold``), max over
    answers. Upstream divides by zero when both strings are empty; Loupe scores that pair 1.0.

    Raises :class:`~loupe.errors.LoupeError` on an empty answer list (upstream ``min([])`` fails).
    """
    variant = canonical(variant)
    if isinstance(answers, str):
        answers = [answers]
    answers = list(answers)
    if not answers:
        raise LoupeError("anls needs at least one ground-truth answer")
    if variant in ("lmms_eval", "vlmevalkit"):
        det = " ".join(prediction.strip().lower().split())
        values = []
        for answer in answers:
            gt = " ".join(answer.strip().lower().split())
            dist = levenshtein(gt, det)
            length = max(len(answer.upper()), len(prediction.upper()))
            values.append(0.0 if length == 0 else float(dist) / float(length))
        result = 1 - min(values)
        return 0.0 if result < threshold else float(result)
    if variant == "uhd_stvqa":
        best = None
        p = prediction.lower().strip()
        for answer in answers:
            g = answer.lower().strip()
            length = max(len(p), len(g))
            sim = 1.0 if length == 0 else 1 - levenshtein(p, g) / length
            score = sim if sim >= threshold else 0.0
            best = score if best is None else max(best, score)
        return float(best)
    raise LoupeError(f"unknown ANLS variant {variant!r}; valid: {', '.join(ANLS_VARIANTS)}")
