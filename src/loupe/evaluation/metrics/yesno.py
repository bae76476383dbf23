"""Yes/no benchmarks: MME, POPE, HallusionBench.

Follows lmms-eval ``tasks/mme/utils.py`` (``parse_pred_ans`` from Otter, ``mme_aggregate_results``) and
``tasks/pope/utils.py``; LLaVA ``llava/eval/eval_pope.py``; VLMEvalKit ``vlmeval/dataset/utils/yorn.py``
(``YOrN_Extraction``, ``MME_rating``, ``POPE_rating``, ``Hallusion_rating``) in ``exact_matching`` mode (no
LLM judge for "Unknown" answers).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from ...errors import LoupeError
from ._names import canonical
from .vqa import process_punctuation

__all__ = ["MME_PERCEPTION", "MME_COGNITION", "mme_parse", "yorn_extract", "pope_parse", "mme_scores",
           "pope_metrics", "hallusionbench_scores"]

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
# VLMEvalKit sums in this (alphabetical) order; float addition order matters in the last bit.
_VK_PERCEPTION = ("OCR", "artwork", "celebrity", "color", "count", "existence", "landmark", "position",
                  "posters", "scene")
_VK_COGNITION = ("code_reasoning", "commonsense_reasoning", "numerical_calculation", "text_translation")


def mme_parse(prediction: str) -> str:
    """lmms-eval / Otter ``parse_pred_ans``: "yes", "no" or "other".

    Lower-case, strip, delete every "."; "yes"/"no" as is; a single character "y"/"n" -> yes/no (any other
    single character -> other); else "yes" within the first 4 characters -> yes, then "no" -> no (so
    "not sure" -> no, "nope" -> no, "noisy" -> no), else other (counted wrong).
    """
    pred = prediction.lower().strip().replace(".", "")
    if pred in ("yes", "no"):
        return pred
    if len(pred) == 1:
        return {"y": "yes", "n": "no"}.get(pred, "other")
    prefix = pred[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def yorn_extract(output: str) -> str:
    """VLMEvalKit ``YOrN_Extraction``: "Yes" if the word "yes" occurs and "no" does not, "No" for the
    reverse, else "Unknown" (words after lower-casing and VLMEvalKit's ``process_punctuation``)."""
    words = process_punctuation(output.lower(), "vlmevalkit").split()
    if "yes" in words and "no" not in words:
        return "Yes"
    if "yes" not in words and "no" in words:
        return "No"
    return "Unknown"


def pope_parse(text: str, parse: str = "llava") -> str:
    """Read a POPE answer as "yes", "no" or "other" (never "other" under ``llava``).

    * ``llava`` (``eval_pope.py``): keep the text before the first ".", delete ",", split on single spaces;
      any word "No", "not" or "no" -> no, else yes. So "Yes, there is" -> yes, "" -> yes, "NO" -> yes,
      "There is no dog." -> no, "Yes. No." -> yes.
    * ``exact`` (lmms-eval ``pope_process_results``): ``text.lower().strip()`` must be exactly "yes" or "no";
      "Yes, there is" and "Yes." are neither.
    * ``vlmevalkit``: :func:`yorn_extract` ("Unknown" -> "other").
    """
    parse = canonical(parse, {"lmms_eval": "exact"})
    if parse == "llava":
        if text.find(".") != -1:
            text = text.split(".")[0]
        words = text.replace(",", "").split(" ")
        return "no" if ("No" in words or "not" in words or "no" in words) else "yes"
    if parse == "exact":
        pred = text.lower().strip()
        return pred if pred in ("yes", "no") else "other"
    if parse == "vlmevalkit":
        return {"Yes": "yes", "No": "no"}.get(yorn_extract(text), "other")
    raise LoupeError(f"unknown POPE parser {parse!r}; valid: 'llava', 'exact', 'vlmevalkit'")


def _yes_no_label(label: str, what: str) -> str:
    gt = str(label).lower().strip().replace(".", "") if what == "mme" else str(label).lower().strip()
    if gt not in ("yes", "no"):
        raise LoupeError(f"{what} ground truth must be yes or no, got {label!r}")
    return gt


def pope_metrics(predictions: Sequence[str], labels: Sequence[str], parse: str = "llava",
                 yes_ratio_of: str | None = None) -> dict[str, Any]:
    """POPE accuracy, precision, recall, F1 and yes-ratio (fractions in [0, 1]) for one list of answers.

    ``labels`` are "yes"/"no" (any case). Answers are read with :func:`pope_parse`. Positive = yes.

    * ``parse="llava"`` (default: LLaVA-1.5's ``eval_pope.py``, the POPE protocol of the LLaVA-1.5 paper
      that all three seed papers start from and quote as their baseline): every answer is yes or no.
      Acc = (TP+TN)/N, P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2PR/(P+R); LLaVA reports them per category file
      and averages F1 over the three. Upstream divides by zero when nothing is predicted yes; Loupe returns
      0.0 there, as lmms-eval and VLMEvalKit do.
    * ``parse="exact"`` (lmms-eval, used by INF-LLaVA): an answer that is neither counts wrong for accuracy
      and is left out of FP and FN (so it does not lower precision or recall). [IMPORTANT] lmms-eval's
      ``pope_yes_ratio`` is computed on the **ground truth**, not the predictions (a bug: it is always
      about 0.5 on POPE); ``yes_ratio_of=None`` reproduces it for this parser.
    * ``parse="vlmevalkit"`` (ConvLLaVA's tool): "Unknown" is wrong for accuracy and counts as a "no" in
      P/R/F1 (VLMEvalKit reports them x100 and pools its categories).

    ``yes_ratio_of``: ``"predictions"`` (share of answers read as yes) or ``"labels"``; ``None`` picks
    ``"labels"`` for ``exact`` and ``"predictions"`` otherwise. Also returned: ``tp, fp, tn, fn, n, other``.
    """
    if len(predictions) != len(labels):
        raise LoupeError(f"pope_metrics: {len(predictions)} predictions but {len(labels)} labels")
    if not labels:
        raise LoupeError("pope_metrics needs at least one answer")
    if yes_ratio_of not in (None, "predictions", "labels"):
        raise LoupeError(f"yes_ratio_of must be 'predictions', 'labels' or None, got {yes_ratio_of!r}")
    parse = canonical(parse, {"lmms_eval": "exact"})
    gts = [_yes_no_label(g, "POPE") for g in labels]
    preds = [pope_parse(str(p), parse) for p in predictions]
    n = len(gts)
    tp = sum(1 for p, g in zip(preds, gts) if p == "yes" and g == "yes")
    fp = sum(1 for p, g in zip(preds, gts) if p == "yes" and g == "no")
    tn = sum(1 for p, g in zip(preds, gts) if p == "no" and g == "no")
    fn = sum(1 for p, g in zip(preds, gts) if p == "no" and g == "yes")
    other = sum(1 for p in preds if p == "other")
    if parse == "vlmevalkit":  # y_pred = extracted == "Yes": Unknown is a predicted "no"
        fn += sum(1 for p, g in zip(preds, gts) if p == "other" and g == "yes")
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * (precision * recall) / (precision + recall) if precision + recall > 0 else 0.0
    if yes_ratio_of is None:
        yes_ratio_of = "labels" if parse == "exact" else "predictions"
    pool = gts if yes_ratio_of == "labels" else preds
    yes_ratio = sum(1 for x in pool if x == "yes") / n
    return {"accuracy": (tp + tn) / n, "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": yes_ratio, "tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": n, "other": other}


def _image_key(rec: Mapping[str, Any], variant: str) -> Any:
    keys = ("question_id", "image_path") if variant == "lmms_eval" else ("image_path", "question_id")
    for key in keys:
        if key in rec:
            return rec[key]
    raise LoupeError("an MME record needs 'question_id' (the image, as in lmms-eval) or 'image_path'")


def mme_scores(records: Iterable[Mapping[str, Any]], variant: str = "lmms_eval") -> dict[str, Any]:
    """MME perception / cognition scores. Each record: ``category``, ``prediction``, ``answer`` (yes/no) and
    the image it asks about as ``question_id`` (lmms-eval's field: the image path, shared by its two
    questions) or ``image_path`` (VLMEvalKit's).

    Per category: ``acc * 100 + acc+ * 100`` where acc is over questions and acc+ over images with **both**
    questions right (max 200). Perception sums the 10 perception categories (max 2000), cognition the 4
    cognition categories (max 800).

    * ``lmms_eval`` (default; LLaVA-UHD v2's MME^P comes from LLaVA's official-calculation script, whose
      parser and score this matches): answers read with :func:`mme_parse` ("other" is wrong); the ground
      truth is lower-cased with "." removed; every image must have exactly 2 questions
      (:class:`~loupe.errors.LoupeError` otherwise); per image ``acc_plus + acc``, averaged over images;
      a category not in either list counts towards cognition (lmms-eval routes by "is it perception").
    * ``vlmevalkit``: answers read with :func:`yorn_extract` (no judge: "Unknown" is wrong), compared
      case-insensitively with the answer; ``acc = mean(all scores) * 100``, ``acc+ = mean(s0 * s1) * 100``
      over each image's first two questions; sums over the fixed lists in VLMEvalKit's order (missing
      categories are skipped; VLMEvalKit raises KeyError).

    Returns ``{"perception", "cognition", "categories": {category: score}}``.
    """
    variant = canonical(variant)
    if variant not in ("lmms_eval", "vlmevalkit"):
        raise LoupeError(f"unknown MME variant {variant!r}; valid: 'lmms_eval', 'vlmevalkit'")
    stats: dict[str, dict[Any, list[float]]] = defaultdict(dict)
    for rec in records:
        gt = _yes_no_label(rec["answer"], "mme")
        if variant == "lmms_eval":
            score = 1.0 if mme_parse(str(rec["prediction"])) == gt else 0.0
        else:
            score = 1.0 if yorn_extract(str(rec["prediction"])).lower() == gt else 0.0
        stats[rec["category"]].setdefault(_image_key(rec, variant), []).append(score)
    categories: dict[str, float] = {}
    for cat, images in stats.items():
        if variant == "lmms_eval":
            total = 0.0
            for image, scores in images.items():
                if len(scores) != 2:
                    raise LoupeError(f"MME image {image!r} ({cat}) has {len(scores)} questions; "
                                     "MME only supports pairwise evaluation")
                total += (sum(scores) == 2) * 100.0 + sum(scores) / len(scores) * 100.0
            categories[cat] = total / len(images)
        else:
            values = [s for scores in images.values() for s in scores]
            plus = []
            for image, scores in images.items():
                if len(scores) < 2:
                    raise LoupeError(f"MME image {image!r} ({cat}) has {len(scores)} question(s), needs 2")
                plus.append(scores[0] * scores[1])
            categories[cat] = sum(values) / len(values) * 100 + sum(plus) / len(plus) * 100
    if variant == "lmms_eval":
        perception = sum(v for c, v in categories.items() if c in MME_PERCEPTION)
        cognition = sum(v for c, v in categories.items() if c not in MME_PERCEPTION)
    else:
        perception = 0
        for c in _VK_PERCEPTION:
            if c in categories:
                perception += categories[c]
        cognition = 0
        for c in _VK_COGNITION:
            if c in categories:
                cognition += categories[c]
    return {"perception": float(perception), "cognition": float(cognition), "categories": categories}


def hallusionbench_scores(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """VLMEvalKit ``Hallusion_rating`` (exact matching, no judge), in percent.

    Each record: ``l2-category``, optional ``category``, the ids ``set_id``, ``figure_id``, ``question_id``
    (or VLMEvalKit's ``index`` string, whose ``_``-separated fields 3, 4, 5 are those ids), and either a
    ``score`` (0/1) or ``prediction`` + ``answer`` (Yes/No; read with :func:`yorn_extract`, compared
    case-insensitively). aAcc = mean question score; fAcc = share of (l2-category, set, figure) groups with
    every question right; qAcc = share of (l2-category, set, question) groups with every question right.
    Returns ``{"Overall": {...}, <category>: {...}, <l2-category>: {...}}``.
    """
    rows = []
    for rec in records:
        if "set_id" in rec:
            ids = (rec["set_id"], rec["figure_id"], rec["question_id"])
        else:
            parts = str(rec["index"]).split("_")
            ids = (parts[3], parts[4], parts[5])
        if "score" in rec:
            score = bool(rec["score"])
        else:
            score = yorn_extract(str(rec["prediction"])).lower() == str(rec["answer"]).strip().lower()
        rows.append((rec.get("category"), rec["l2-category"], ids, score))

    def rate(sub: list) -> dict[str, float]:
        figs: dict[str, list[bool]] = defaultdict(list)
        qs: dict[str, list[bool]] = defaultdict(list)
        for _, l2, (set_id, fig, q), score in sub:
            figs[f"{l2}_{set_id}_{fig}"].append(score)
            qs[f"{l2}_{set_id}_{q}"].append(score)
        return {"aAcc": sum(r[3] for r in sub) / len(sub) * 100,
                "fAcc": sum(all(v) for v in figs.values()) / len(figs) * 100,
                "qAcc": sum(all(v) for v in qs.values()) / len(qs) * 100}

    if not rows:
        raise LoupeError("hallusionbench_scores needs at least one record")
    out = {"Overall": rate(rows)}
    for idx in (0, 1):
        if all(r[idx] is not None for r in rows):
            for cat in sorted({r[idx] for r in rows}, key=str):
                out[cat] = rate([r for r in rows if r[idx] == cat])
    return out
