"""VQA accuracy (TextVQA, VQAv2) and exact match, with the EvalAI answer normaliser.

Follows, character for character:

* LLaVA ``llava/eval/m4c_evaluator.py`` (``EvalAIAnswerProcessor``, ``TextVQAAccuracyEvaluator``), copied from
  MMF; lmms-eval ``lmms_eval/tasks/_task_utils/vqa_eval_metric.py`` is a byte-identical copy.
* lmms-eval ``tasks/textvqa/utils.py`` (full processor) and ``tasks/vqav2/utils.py`` (no ``word_tokenize``).
* VLMEvalKit ``vlmeval/dataset/utils/vqa_eval.py`` (``process_answer``, ``process_line``) with
  ``vlmeval/smp/misc.py:process_punctuation``.
* lmms-eval ``lmms_eval/api/metrics.py:exact_match_hf_evaluate`` for :func:`exact_match`.

[IMPORTANT] fidelity traps kept on purpose (each changes scores on real data):

* ``PERIOD_STRIP = r"(?!<=\\d)(\\.)(?!\\d)"`` is a typo for ``(?<!\\d)``: the look-*ahead* ``(?!<=\\d)`` never
  fires, so EvalAI deletes *every* period not followed by a digit ("1." -> "1", "3.14" stays). VLMEvalKit
  writes the look-behind correctly, so there "1." stays "1.".
* ``PERIOD_STRIP.sub("", s, re.UNICODE)`` passes ``re.UNICODE`` (= 32) as the *count*: only the first 32
  periods are removed.
* ``process_punctuation`` decides "delete or replace by a space" per punctuation mark by looking at the
  *original* text: the mark is deleted when the text contains ``p + " "`` or ``" " + p`` **or** when the
  text contains a comma between digits (then every mark is deleted, not only commas).
* Contractions are looked up after lower-casing, so the dict's capitalised keys ("Im", "Ive", "Id've")
  never match, and "somebody'd" is mapped to "somebodyd" (a typo in the original table).
"""

from __future__ import annotations

import re
import statistics
import string
from typing import Any, Iterable, Mapping, Sequence

from ...errors import LoupeError
from ._names import canonical

__all__ = [
    "CONTRACTIONS",
    "NUMBER_MAP",
    "ARTICLES",
    "PUNCTUATIONS",
    "VQA_VARIANTS",
    "word_tokenize",
    "process_punctuation",
    "process_digit_article",
    "evalai_normalize",
    "vqa_normalize",
    "vqa_accuracy",
    "exact_match",
]

# --- the EvalAI tables (identical in LLaVA, lmms-eval and VLMEvalKit) -------------------------------------
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
NUMBER_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = ("a", "an", "the")
PUNCTUATIONS = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                ",", "?", "!")

# EvalAI (LLaVA / lmms-eval): the typo'd period regex and a comma regex allowing several commas.
_PERIOD_STRIP_EVALAI = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: "(?!<=" is a no-op look-ahead
_COMMA_STRIP_EVALAI = re.compile(r"(?<=\d)(\,)+(?=\d)")
# VLMEvalKit (vlmeval/smp/misc.py): the intended look-behind, and exactly one comma between digits.
_PERIOD_STRIP_VK = re.compile(r"(?<!\d)\.(?!\d)")
_COMMA_STRIP_VK = re.compile(r"(\d)(,)(\d)")
# Both call ``.sub("", text, re.UNICODE)``: re.UNICODE (32) lands in the ``count`` slot.
_PERIOD_SUB_COUNT = int(re.UNICODE)

VQA_VARIANTS = ("llava", "lmms_eval_textvqa", "lmms_eval_vqav2", "vlmevalkit")
_VQA_ALIASES = {"lmms_eval": "lmms_eval_textvqa"}


def word_tokenize(text: str) -> str:
    """EvalAI ``word_tokenize``: lower-case, delete "," and "?", split "'s" off as " 's", strip."""
    return text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()


def process_punctuation(text: str, variant: str = "evalai") -> str:
    """EvalAI ``process_punctuation`` (``variant="evalai"``) or VLMEvalKit's (``variant="vlmevalkit"``).

    For each mark in :data:`PUNCTUATIONS`: delete it if the *original* text contains ``mark + " "`` or
    ``" " + mark``, or contains a comma between digits; otherwise replace it by a space. Then delete up to
    32 periods: EvalAI every period not followed by a digit (typo'd look-behind), VLMEvalKit only those
    neither preceded nor followed by a digit. The comma test differs too: EvalAI ``(?<=\\d)(\\,)+(?=\\d)``
    (several commas allowed), VLMEvalKit ``(\\d)(,)(\\d)`` (exactly one).
    """
    variant = canonical(variant)
    if variant == "evalai":
        comma_re, period_re = _COMMA_STRIP_EVALAI, _PERIOD_STRIP_EVALAI
    elif variant == "vlmevalkit":
        comma_re, period_re = _COMMA_STRIP_VK, _PERIOD_STRIP_VK
    else:
        raise LoupeError(f"unknown punctuation variant {variant!r}; valid: 'evalai', 'vlmevalkit'")
    out = text
    digit_comma = comma_re.search(text) is not None
    for p in PUNCTUATIONS:
        if (p + " " in text or " " + p in text) or digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return period_re.sub("", out, count=_PERIOD_SUB_COUNT)


def process_digit_article(text: str) -> str:
    """EvalAI ``process_digit_article``: lower-case, split on whitespace, number words none/zero..ten ->
    "0".."10", drop a/an/the, map contractions (after lower-casing), join with single spaces."""
    words = []
    for word in text.lower().split():
        word = NUMBER_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def evalai_normalize(text: str) -> str:
    """The full EvalAI answer processor (``EvalAIAnswerProcessor.__call__`` in LLaVA / lmms-eval).

    ``word_tokenize`` -> ``\\n``/``\\t`` to spaces, strip -> ``process_punctuation`` (typo'd period regex,
    count=32) -> ``process_digit_article``. Examples: "Two" -> "2", "the cat." -> "cat", "1,000" -> "1000",
    "dont" -> "don't", "3.14" -> "3.14", "a man's" -> "man 's".
    """
    text = word_tokenize(text)
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text, "evalai"))


def vqa_normalize(text: str, variant: str = "llava") -> str:
    """Normalise one answer the way ``variant`` of :func:`vqa_accuracy` does.

    * ``llava`` / ``lmms_eval_textvqa``: :func:`evalai_normalize`.
    * ``lmms_eval_vqav2``: no ``word_tokenize`` (so no lower-casing before punctuation, "?"/"," follow the
      punctuation rule, "'s" is not split): ``\\n``/``\\t`` -> space, strip, EvalAI punctuation, digits/articles.
    * ``vlmevalkit`` (``process_answer``): as ``lmms_eval_vqav2`` but with VLMEvalKit's punctuation step.
    """
    variant = canonical(variant, _VQA_ALIASES)
    if variant in ("llava", "lmms_eval_textvqa"):
        return evalai_normalize(text)
    if variant not in ("lmms_eval_vqav2", "vlmevalkit"):
        raise LoupeError(f"unknown VQA variant {variant!r}; valid: {', '.join(VQA_VARIANTS)}")
    text = text.replace("\n", " ").replace("\t", " ").strip()
    punct = "evalai" if variant == "lmms_eval_vqav2" else "vlmevalkit"
    return process_digit_article(process_punctuation(text, punct))


def _leave_one_out(pred: str, gts: Sequence[str]) -> list[float]:
    # acc_i = min(1, #{j != i : gt_j == pred} / 3), exactly as written upstream (int 1 or a float).
    accs = []
    for i in range(len(gts)):
        matches = sum(1 for j, g in enumerate(gts) if j != i and g == pred)
        accs.append(min(1, float(matches) / 3))
    return accs


def vqa_accuracy(prediction: str, answers: Sequence[Any], variant: str = "llava") -> float:
    """VQA soft accuracy of one prediction: the mean over the leave-one-out subsets of the ground-truth
    answers of ``min(1, matches / 3)``, after normalising prediction and answers (:func:`vqa_normalize`).

    With 10 answers and ``k`` annotators agreeing with the prediction: k=1 -> 0.3, 2 -> 0.6, 3 -> 0.9,
    k>=4 -> 1.0 (e.g. k=1: nine subsets keep the match, ``9 * (1/3) / 10``).

    Variants (the default ``llava`` is LLaVA-1.5's ``scripts/v1_5/eval/textvqa.sh`` scorer, which LLaVA-UHD v2
    reuses for TextVQA; for exactly 10 answers it equals ``lmms_eval_textvqa``):

    * ``llava`` -- ``m4c_evaluator.TextVQAAccuracyEvaluator``: full EvalAI processor on both sides; the
      upstream ``assert len(answers) == 10`` becomes a :class:`~loupe.errors.LoupeError`; mean = ``sum/len``.
    * ``lmms_eval_textvqa`` -- ``tasks/textvqa/utils.py``: same processor, any number of answers (the mean
      is over ``len(answers)`` subsets, so a single answer always scores 0), ``statistics.mean``.
    * ``lmms_eval_vqav2`` -- ``tasks/vqav2/utils.py``: no ``word_tokenize``. Upstream removes "the" answer by
      dict inequality (``item != gtAnsDatum``); VQAv2's answer dicts carry a unique ``answer_id``, so one
      answer is left out per subset. Plain strings are treated as such distinct entries; if you pass
      dicts with an ``"answer"`` key they are compared as upstream does, so identical dicts (no
      ``answer_id``) are all left out together.
    * ``vlmevalkit`` -- ``vqa_eval.py:process_line(method="vqa_score")`` + ``hit_calculate``: VLMEvalKit's
      punctuation step (correct period regex), any number of answers, ``np.mean``.

    Every variant raises :class:`~loupe.errors.LoupeError` on an empty answer list (upstream: assertion,
    ``StatisticsError`` or NaN).
    """
    variant = canonical(variant, _VQA_ALIASES)
    if variant not in VQA_VARIANTS:
        raise LoupeError(f"unknown VQA variant {variant!r}; valid: {', '.join(VQA_VARIANTS)}")
    answers = list(answers)
    if not answers:
        raise LoupeError("vqa_accuracy needs at least one ground-truth answer")
    if variant == "llava" and len(answers) != 10:
        raise LoupeError(
            f"variant 'llava' (TextVQAAccuracyEvaluator) needs exactly 10 answers, got {len(answers)}; "
            "use variant='lmms_eval_textvqa' or 'vlmevalkit' for other counts")
    pred = vqa_normalize(prediction, variant)
    if variant == "lmms_eval_vqav2" and any(isinstance(a, Mapping) for a in answers):
        dicts = [dict(a, answer=vqa_normalize(a["answer"], variant)) for a in answers]
        accs = []
        for gt in dicts:
            matches = sum(1 for item in dicts if item != gt and item["answer"] == pred)
            accs.append(min(1, float(matches) / 3))
    else:
        gts = [vqa_normalize(a["answer"] if isinstance(a, Mapping) else a, variant) for a in answers]
        accs = _leave_one_out(pred, gts)
    if variant == "llava":
        return float(sum(accs) / len(accs))
    if variant == "vlmevalkit":
        import numpy as np

        return float(np.mean(accs))
    return float(statistics.mean(accs))


_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_DIGIT_TABLE = str.maketrans("", "", string.digits)


def _numpy_string_ops(raw: str, regexes: Iterable[str] | None, ops: list) -> str:
    """Emulate one element going through ``exact_match_hf_evaluate``'s numpy string arrays: an array's
    itemsize is the length of the Python string it was built from (trailing NULs included), reading an
    element drops trailing NULs, and ``np.char`` results are cut to the itemsize."""
    if regexes is not None:
        for i, rx in enumerate(regexes):
            # the first pass iterates the Python list, later passes the previous numpy array
            raw = re.sub(rx, "", raw if i == 0 else raw.rstrip("\x00"))
    size, value = len(raw), raw.rstrip("\x00")
    for op in ops:
        value = op(value)[:size].rstrip("\x00")
    return value


def exact_match(
    prediction: str,
    target: str,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
    ignore_numbers: bool = False,
    regexes_to_ignore: Iterable[str] | None = None,
) -> float:
    """lmms-eval ``exact_match`` (``api/metrics.py:exact_match_hf_evaluate``, from HF ``evaluate``) for one
    pair: 1.0 or 0.0.

    Order: delete every ``regexes_to_ignore`` match (``re.sub``), lower-case, delete
    ``string.punctuation``, delete digits, compare. No stripping: "B " != "B". Quirks of the numpy string
    arrays upstream, reproduced: trailing NUL characters are dropped, and ``np.char.lower`` cuts its output
    to the array's itemsize (so a lone "İ" lower-cases to "i", not "i̇").
    """
    ops = []
    if ignore_case:
        ops.append(str.lower)
    if ignore_punctuation:
        ops.append(lambda v: v.translate(_PUNCT_TABLE))
    if ignore_numbers:
        ops.append(lambda v: v.translate(_DIGIT_TABLE))
    regexes = list(regexes_to_ignore) if regexes_to_ignore is not None else None
    pred = _numpy_string_ops(prediction, regexes, ops)
    ref = _numpy_string_ops(target, regexes, ops)
    return 1.0 if pred == ref else 0.0
