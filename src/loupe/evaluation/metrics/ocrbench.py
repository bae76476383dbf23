"""OCRBench: substring hits and the 1000-point total.

Follows lmms-eval ``tasks/ocrbench/utils.py`` (``ocrbench_process_results``, ``ocrbench_aggregate_accuracy``)
and VLMEvalKit ``vlmeval/dataset/image_vqa.py:OCRBench.evaluate`` (the copy vendored in LLaVA-UHD v2, which
reports OCRBench, is the same).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from ...errors import LoupeError
from ._names import canonical

__all__ = ["OCRBENCH_VARIANTS", "OCRBENCH_CATEGORIES", "fold_fullwidth_ascii", "ocrbench_hit",
           "ocrbench_scores"]

OCRBENCH_VARIANTS = ("vlmevalkit", "lmms_eval")
HMER_CATEGORY = "Handwritten Mathematical Expression Recognition"
OCRBENCH_RECOGNITION = (
    "Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
    "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
)
OCRBENCH_CATEGORIES = OCRBENCH_RECOGNITION + (
    "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction", HMER_CATEGORY,
)


def fold_fullwidth_ascii(text: str) -> str:
    """lmms-eval ``_fold_fullwidth_ascii``: U+FF01..U+FF5E -> ASCII (minus 0xFEE0), U+3000 -> space."""
    out = []
    for ch in text:
        cp = ord(ch)
        if 0xFF01 <= cp <= 0xFF5E:
            out.append(chr(cp - 0xFEE0))
        elif cp == 0x3000:
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _is_hmer(subset: str | None) -> bool:
    return subset in ("HME100k", HMER_CATEGORY)


def ocrbench_hit(prediction: str, answers: str | Sequence[str], subset: str | None = None,
                 variant: str = "vlmevalkit") -> int:
    """1 if any ground-truth answer is a **substring** of the prediction after normalisation, else 0.

    ``subset`` is the item's ``dataset`` field (lmms-eval keys the rule on ``"HME100k"``) or its category
    (VLMEvalKit keys it on ``"Handwritten Mathematical Expression Recognition"``); in OCRBench these are the
    same 100 items, so either name selects the handwritten-maths rule in both variants:

    * handwritten maths: ``s.strip().replace("\\n", " ").replace(" ", "")`` on both sides -- every space and
      newline removed, case kept;
    * everything else: ``s.lower().strip().replace("\\n", " ")`` on both sides, then ``gt in pred``; the
      ``lmms_eval`` variant first folds full-width ASCII (U+FF01-FF5E) and U+3000 to ASCII
      (:func:`fold_fullwidth_ascii`), VLMEvalKit does not.

    Quirks: an empty answer is a substring of everything (a hit); "1" is found inside "10". Default variant
    ``vlmevalkit``: LLaVA-UHD v2, the seed paper reporting OCRBench, ran VLMEvalKit.
    """
    variant = canonical(variant)
    if variant not in OCRBENCH_VARIANTS:
        raise LoupeError(f"unknown OCRBench variant {variant!r}; valid: {', '.join(OCRBENCH_VARIANTS)}")
    gts = [answers] if isinstance(answers, str) else list(answers)
    pred = str(prediction)
    if variant == "lmms_eval":
        pred = pred.strip()
    for gt in gts:
        if _is_hmer(subset):
            a = gt.strip().replace("\n", " ").replace(" ", "")
            p = pred.strip().replace("\n", " ").replace(" ", "")
        elif variant == "lmms_eval":
            a = fold_fullwidth_ascii(gt).lower().strip().replace("\n", " ")
            p = fold_fullwidth_ascii(pred).lower().strip().replace("\n", " ")
        else:
            a = gt.lower().strip().replace("\n", " ")
            p = pred.lower().strip().replace("\n", " ")
        if a in p:
            return 1
    return 0


def ocrbench_scores(records: Iterable[Mapping[str, Any]], variant: str = "vlmevalkit") -> dict[str, Any]:
    """Totals over OCRBench items. Each record: ``prediction``, ``answer`` (str or list), ``question_type``
    (or ``category``: one of :data:`OCRBENCH_CATEGORIES`) and optionally ``dataset``.

    Returns the per-category hit counts, ``"Text Recognition"`` (the six recognition categories, max 300),
    ``"Final Score"`` (max 1000), ``"Final Score Norm"`` (= Final / 10, VLMEvalKit's and LLaVA-UHD v2's
    figure) and ``"accuracy"`` (= Final / 1000, lmms-eval's figure). Unlike lmms-eval, nothing accumulates
    in a module-level dict, so aggregating twice does not double-count.
    """
    variant = canonical(variant)
    counts = {c: 0 for c in OCRBENCH_CATEGORIES}
    for rec in records:
        cat = rec.get("question_type", rec.get("category"))
        if cat not in counts:
            raise LoupeError(f"unknown OCRBench category {cat!r}; valid: {', '.join(OCRBENCH_CATEGORIES)}")
        subset = rec.get("dataset")
        if variant == "vlmevalkit" or subset is None:
            subset = cat
        counts[cat] += ocrbench_hit(rec["prediction"], rec["answer"], subset, variant)
    recognition = sum(counts[c] for c in OCRBENCH_RECOGNITION)
    final = recognition + sum(counts[c] for c in OCRBENCH_CATEGORIES[len(OCRBENCH_RECOGNITION):])
    return {"categories": counts, "Text Recognition": recognition, "Final Score": final,
            "Final Score Norm": final / 10, "accuracy": final / 1000}
