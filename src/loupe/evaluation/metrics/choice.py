"""Multiple-choice answer extraction, MMBench CircularEval, SEED-Bench and RealWorldQA accuracy.

Each ``style`` of :func:`mcq_extract` reproduces one reference parser:

==========================  =================================================================================
style                       reference
==========================  =================================================================================
``llava_sqa``               LLaVA ``llava/eval/eval_science_qa.py``
``llava_seed``              LLaVA ``scripts/convert_seed_for_submission.py`` (exact ``text == answer``)
``lmms_eval``               lmms-eval ``tasks/_task_utils/mcq_extract.py:extract_mcq_answer`` over the options
``lmms_eval_sqa``           lmms-eval ``tasks/scienceqa/utils.py:sqa_process_results``
``lmms_eval_ai2d``          lmms-eval ``tasks/ai2d/utils.py:MultiChoiceRegexFilter`` + ``exact_match``
                            (ignore_case, ignore_punctuation)
``lmms_eval_seedbench``     lmms-eval ``tasks/seedbench/utils.py`` (first character, case-insensitive)
``lmms_eval_realworldqa``   lmms-eval ``tasks/realworldqa/utils.py`` (``extract_mcq_answer`` over A-D)
``lmms_eval_mmbench``       lmms-eval ``tasks/mmbench/mmbench_evals.py`` ``can_infer`` (bare letter with the
                            article-"A" guard, then the wrapper list ``X.``, ``(X)``, ``:X`` ...), then
                            option text, then the ``static`` fallback ``extract_mcq_answer``
``vlmevalkit``              VLMEvalKit ``vlmeval/utils/matching_util.py:can_infer`` at e8e78f05 (2026-08)
``vlmevalkit_2024``         the same file before #1175 (2025-08): the version LLaVA-UHD v2 vendors and
                            ConvLLaVA ran (no "last four tokens" rule, no length cap, no "answer is" regex)
==========================  =================================================================================

Note: the bare-letter article guard and the ``X.``/``(X)``/``:X`` wrapper list are lmms-eval's MMBench
``can_infer_option``; VLMEvalKit instead blanks ``.()[],:;!*#{}`` before splitting, and its "A might be an
article" guard only runs when the ``VERBOSE`` environment variable is set (never, by default).
"""

from __future__ import annotations

import math
import re
import string
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, Sequence

from ...errors import LoupeError
from ._names import canonical

__all__ = ["MCQ_STYLES", "extract_mcq_answer", "can_infer", "mcq_extract", "circular_eval",
           "seed_accuracy", "realworldqa_correct"]

MCQ_STYLES = ("vlmevalkit", "vlmevalkit_2024", "llava_sqa", "llava_seed", "lmms_eval", "lmms_eval_sqa",
              "lmms_eval_ai2d", "lmms_eval_seedbench", "lmms_eval_realworldqa", "lmms_eval_mmbench")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _options_dict(options: Mapping[str, Any] | Sequence[Any] | None) -> dict[str, Any]:
    """Letter -> option text; a sequence is lettered A, B, C, ... Missing (None / NaN) options are dropped,
    as VLMEvalKit's ``build_choices`` drops NaN cells."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        items = list(options.items())
    elif isinstance(options, (str, bytes)):
        raise LoupeError("options must be a mapping letter -> text or a sequence of option texts, not a string")
    else:
        items = [(chr(ord("A") + i), v) for i, v in enumerate(options)]
    out = {}
    for key, value in items:
        if not (isinstance(key, str) and len(key) == 1 and key in string.ascii_uppercase):
            raise LoupeError(f"option keys must be single letters A-Z, got {key!r}")
        if not _is_missing(value):
            out[key] = value
    return out


# --- lmms-eval: extract_mcq_answer ---------------------------------------------------------------------
_ANSWER_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
    "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)
_FORMAT_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4,
                    "right_paren": 3, "space": 2, "fallback": 0}
_DEFAULT_CHOICES = ("A", "B", "C", "D", "E", "F", "G", "H")


def extract_mcq_answer(response: str, choices: Sequence[str] | None = None) -> str:
    """lmms-eval ``extract_mcq_answer``: the best-ranked choice letter, or "" if none.

    Strips the response, then ``, . ! ? ; : ' "`` from both ends (one character class after another), pads
    it with spaces and collects candidates: ``(X)``, ``X.``, ``X:``, ``X)``, ``X␣`` (last occurrence each),
    the first letter after an answer phrase ("the answer is", "答案是", ...), a leading standalone letter,
    a trailing standalone letter, and -- only when nothing else matched -- any occurrence. Ranking: start >
    end > phrase > (X) > X. > X: > X) > X␣ > fallback, ties broken by the later position. ``choices``
    defaults to A-H (also when empty). Matching is case-sensitive except the phrase search.
    """
    if not response or not response.strip():
        return ""
    all_choices = list(choices) if choices else list(_DEFAULT_CHOICES)
    text = response.strip()
    for char in [",", ".", "!", "?", ";", ":", "'", '"']:
        text = text.strip(char)
    text = " " + text + " "
    candidates: list[tuple[str, int, str]] = []
    for fmt, (pre, suf) in (("parentheses", ("(", ")")), ("period", ("", ".")), ("colon", ("", ":")),
                            ("right_paren", ("", ")")), ("space", ("", " "))):
        for ch in all_choices:
            if f"{pre}{ch}{suf}" in text:
                candidates.append((ch, text.rfind(f"{pre}{ch}{suf}"), fmt))
    text_lower = text.lower()
    for phrase in _ANSWER_PHRASES:
        idx = text_lower.find(phrase)
        if idx != -1:
            after = idx + len(phrase)
            for ch in all_choices:
                ch_pos = text.find(ch, after)
                if ch_pos != -1:
                    candidates.append((ch, ch_pos, "phrase"))
    stripped = text.strip()
    for ch in all_choices:
        if stripped.startswith(ch) and (len(stripped) == 1 or not stripped[1].isalpha()):
            candidates.append((ch, 0, "start"))
    for ch in all_choices:
        if stripped.endswith(ch) and (len(stripped) == 1 or not stripped[-2].isalpha()):
            candidates.append((ch, len(text) - 1, "end"))
    if not candidates:
        for ch in all_choices:
            if ch in text:
                candidates.append((ch, text.rfind(ch), "fallback"))
    if not candidates:
        return ""
    candidates.sort(key=lambda x: (_FORMAT_PRIORITY.get(x[2], 0), x[1]), reverse=True)
    return candidates[0][0]


# --- VLMEvalKit: can_infer -----------------------------------------------------------------------------
_VK_REJECT = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
              "I'm sorry, but without the image provided", "Cannot determine the answer")
_VK_VERBOSE_ANSWER_RE = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def _vk_can_infer_option(answer: str, choices: Mapping[str, Any], version: str) -> str | bool:
    if "Failed to obtain answer via API" in answer:
        return False
    for err in _VK_REJECT:
        if err in answer:
            return "Z"
    answer_mod = answer
    for c in ".()[],:;!*#{}":
        answer_mod = answer_mod.replace(c, " ")
    splits = [x.strip() for x in answer_mod.split()]
    count = sum(1 for c in choices if c in splits)
    if count == 1:
        for ch in choices:
            # (the "'A' in splits and len(splits) > 3" article guard only runs with $VERBOSE set)
            if ch in splits and (version == "2024" or splits.index(ch) > len(splits) - 5):
                return ch
    elif count == 0 and "Z" in splits:
        return "Z"
    if version != "2024":
        match = _VK_VERBOSE_ANSWER_RE.search(answer or "")
        if match and match.group(1).upper() in choices:
            return match.group(1).upper()
    return False


def _vk_can_infer_text(answer: str, choices: Mapping[str, Any], version: str) -> str | bool:
    answer = answer.lower()
    if version != "2024" and len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return False
    lowered = {k: str(v).lower() for k, v in choices.items()}
    cands = [k for k, v in lowered.items() if v in answer]
    return cands[0] if len(cands) == 1 else False


def can_infer(answer: Any, choices: Mapping[str, Any], version: str = "current") -> str | bool:
    """VLMEvalKit ``can_infer``: ``can_infer_option`` then ``can_infer_text``; a letter or ``False``.

    ``can_infer_option``: "Failed to obtain answer via API" -> False; a refusal phrase -> "Z"; blank out
    ``.()[],:;!*#{}``, split on whitespace; exactly one option letter among the tokens -> that letter
    (``version="current"`` also requires its first occurrence to be among the last four tokens); no option
    letter but a bare "Z" token -> "Z"; ``current`` then tries ``(correct )answer is **X**`` (X in A-D,
    case-insensitive -- "the answer is a dog" yields "A"). ``can_infer_text``: exactly one option text is a
    substring of the lower-cased answer (``current`` first gives up when the answer is longer than twice the
    total option length). ``version="2024"`` is the pre-#1175 file.
    """
    answer = str(answer)
    copt = _vk_can_infer_option(answer, choices, version)
    return copt if copt else _vk_can_infer_text(answer, choices, version)


# --- lmms-eval MMBench: can_infer with wrappers --------------------------------------------------------
_LE_WRAPPERS = (("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."), (":", ""),
                (":", ","), (":", "."), (":", ")"), (":", ")."))


def _le_mmb_can_infer_option(answer: str) -> str | bool:
    choices = "ABCDE"  # num_choice=5, whatever the item's options
    if "Failed to obtain answer via API" in answer:
        return False
    splits = [x.strip() for x in answer.split()]

    def count(prefix: str = "", suffix: str = "") -> int:
        return sum(1 for c in choices if prefix + c + suffix in splits)

    if count() == 1:
        for ch in choices:
            if "A" in splits and len(splits) > 3:  # "A" is probably an article
                break
            if ch in splits:
                return ch
    for pre, suf in _LE_WRAPPERS:
        if count(pre, suf) == 1:
            for ch in choices:
                if pre + ch + suf in splits:
                    return ch
    return False


def _le_mmb_extract(text: str, options: Mapping[str, Any]) -> str | None:
    # build_choices looks at A-D only
    choices = {ch: options[ch] for ch in "ABCD" if ch in options}
    found = _le_mmb_can_infer_option(text)
    if not found:
        found = _vk_can_infer_text(text, choices, "2024")  # same code as VLMEvalKit's 2024 can_infer_text
    if not found:
        found = extract_mcq_answer(text, choices=sorted(choices.keys()))  # eval_method="static"
    return found or None


# --- small per-benchmark parsers -----------------------------------------------------------------------
_LLAVA_SQA_OPTIONS = ("A", "B", "C", "D", "E")
_LLAVA_SQA_RE = re.compile(r"The answer is ([A-Z]).")
_AI2D_RE = re.compile(r"^\s*([A-Z])\.")


def _single_ascii_letter(s: str) -> str | None:
    return s.upper() if len(s) == 1 and s in string.ascii_lowercase else None


def _llava_sqa(text: str) -> str | None:
    if text in _LLAVA_SQA_OPTIONS:
        return text
    if len(text) >= 3 and text[0] in _LLAVA_SQA_OPTIONS and text[1:3] == ". ":
        return text[0]
    res = _LLAVA_SQA_RE.findall(text)
    return res[0] if len(res) == 1 else None


def _lmms_eval_sqa(text: str) -> str | None:
    pred = text.strip()
    letter = _single_ascii_letter(pred.lower())
    if letter:
        return letter
    if len(pred) >= 2 and pred[0].isupper() and pred[1] == ".":
        return _single_ascii_letter(pred[0].lower()) or pred[0]  # upstream compares pred[0].lower()
    return None


def _lmms_eval_ai2d(text: str) -> str | None:
    from .vqa import exact_match  # the filtered response then goes through exact_match

    m = _AI2D_RE.match(text)
    if m:
        return m.group(1)
    for letter in string.ascii_uppercase:
        if exact_match(text, letter, ignore_case=True, ignore_punctuation=True):
            return letter
    return None


def _lmms_eval_seed(text: str) -> str | None:
    pred = text.strip()
    if len(pred) > 1:
        pred = pred[0]
    return _single_ascii_letter(pred.lower().strip())


def mcq_extract(text: str, options: Mapping[str, Any] | Sequence[Any] | None = None,
                style: str = "vlmevalkit") -> str | None:
    """The option letter a reference parser reads from a model answer, or ``None`` when it finds none.

    ``options``: a mapping letter -> option text (``{"A": "cat", "B": "dog"}``) or a sequence of option
    texts lettered A, B, ...; only the text-matching styles use the texts. Compare the result with the
    answer key: a returned letter that is not an option is simply wrong (VLMEvalKit returns "Z" for
    refusals, LLaVA's ScienceQA parser may return any capital after "The answer is"). Styles (see the module
    docstring for the source files; default ``vlmevalkit``, the tool ConvLLaVA and LLaVA-UHD v2 used for
    MMBench / SEED / RealWorldQA):

    * ``llava_sqa``: the text is exactly one of A-E; else ``text[0]`` in A-E and ``text[1:3] == ". "``; else
      exactly one match of ``r"The answer is ([A-Z])."`` (note the unescaped "." needs one more character);
      else FAILED -> ``None``. No stripping.
    * ``llava_seed``: the text itself if it is exactly an option letter (``text == answer`` upstream).
    * ``lmms_eval``: :func:`extract_mcq_answer` with the option letters as choices.
    * ``lmms_eval_sqa``: ``pred.strip().lower()`` is one letter, or ``pred[0].isupper() and pred[1] == "."``.
    * ``lmms_eval_ai2d``: ``^\\s*([A-Z])\\.``; else the raw answer must equal a letter under ``exact_match``
      with ignore_case and ignore_punctuation (so "(b)" reads "B", but "B " does not).
    * ``lmms_eval_seedbench``: the first character of the stripped answer, case-insensitively.
    * ``lmms_eval_realworldqa``: :func:`extract_mcq_answer` with choices A-D whatever the options.
    * ``lmms_eval_mmbench``: lmms-eval's MMBench ``can_infer`` (letters A-E; bare letter unless "A" is present
      among more than three tokens -- the article guard -- then the wrappers ``X. X, X: X) X). (X) (X). :X
      :X, :X. :X) :X).``, each accepted if exactly one letter matches), then ``can_infer_text`` over options
      A-D, then ``eval_method="static"``'s :func:`extract_mcq_answer`.
    * ``vlmevalkit`` / ``vlmevalkit_2024``: :func:`can_infer` (current / 2024 file).
    """
    style = canonical(style)
    opts = _options_dict(options)
    text = str(text)
    if style in ("vlmevalkit", "vlmevalkit_2024"):
        found = can_infer(text, opts, "current" if style == "vlmevalkit" else "2024")
        return found or None
    if style == "llava_sqa":
        return _llava_sqa(text)
    if style == "llava_seed":
        valid = opts if opts else string.ascii_uppercase
        return text if len(text) == 1 and text in valid else None
    if style == "lmms_eval":
        return extract_mcq_answer(text, choices=list(opts)) or None
    if style == "lmms_eval_realworldqa":
        return extract_mcq_answer(text, choices=["A", "B", "C", "D"]) or None
    if style == "lmms_eval_sqa":
        return _lmms_eval_sqa(text)
    if style == "lmms_eval_ai2d":
        return _lmms_eval_ai2d(text)
    if style == "lmms_eval_seedbench":
        return _lmms_eval_seed(text)
    if style == "lmms_eval_mmbench":
        return _le_mmb_extract(text, opts)
    raise LoupeError(f"unknown mcq_extract style {style!r}; valid: {', '.join(MCQ_STYLES)}")


def realworldqa_correct(prediction: str, answer: str) -> float:
    """lmms-eval ``realworldqa_process_results``: answers A-D go through :func:`extract_mcq_answer` (choices
    A-D); open answers need ``pred.lower().strip().rstrip(".") == answer.strip().lower()``."""
    gt = answer.strip()
    if gt.upper() in ("A", "B", "C", "D"):
        return 1.0 if extract_mcq_answer(prediction, choices=["A", "B", "C", "D"]) == gt.upper() else 0.0
    return 1.0 if prediction.lower().strip().rstrip(".") == gt.lower() else 0.0


def circular_eval(records: Iterable[Mapping[str, Any]], style: str = "vlmevalkit",
                  extract: Callable[[str, dict], str | None] | None = None) -> dict[str, Any]:
    """MMBench CircularEval (VLMEvalKit ``mcq_circular_eval``, lmms-eval ``MMBench_Evaluator.eval_result``).

    Each record: ``index`` (int; a rotation of question ``g`` has ``index = g + k * 1e6``), ``answer`` (the
    key letter for that rotation), ``prediction`` and the option texts under their letters ``"A"``,
    ``"B"``, ... (``None``/NaN for absent options); optionally ``category`` / ``l2-category``.

    A question (``index < 1e6``, grouped by ``int(index % 1e6)``) is a hit only if **every** rotation's
    answer, read with ``mcq_extract(prediction, options, style)`` (or ``extract``), equals its key; an
    unreadable rotation is a miss (VLMEvalKit's ``exact_matching`` mode; lmms-eval's ``static`` mode is the
    ``lmms_eval_mmbench`` style's fallback). No GPT judge and no random letter. Rotations whose original is
    absent are ignored. Returns ``{"accuracy", "hits": {g: 0|1}, "category": {...}, "l2-category": {...}}``
    (per-category means of the hits, present only when the records carry those fields).
    """
    read = extract or (lambda text, opts: mcq_extract(text, opts, style))
    rows = list(records)
    groups: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for rec in rows:
        groups[int(rec["index"] % 1e6)].append(rec)
    originals = sorted((rec for rec in rows if rec["index"] < 1e6), key=lambda r: r["index"])
    hits: dict[int, int] = {}
    for rec in originals:
        g = int(rec["index"])
        ok = True
        for row in groups[g]:
            opts = {k: v for k, v in row.items() if len(k) == 1 and k in string.ascii_uppercase}
            if read(str(row["prediction"]), opts) != row["answer"]:
                ok = False
                break
        hits[g] = 1 if ok else 0
    out: dict[str, Any] = {"accuracy": (sum(hits.values()) / len(hits)) if hits else float("nan"),
                           "hits": hits}
    for field in ("category", "l2-category"):
        if originals and all(field in r for r in originals):
            by: dict[Any, list[int]] = defaultdict(list)
            for rec in originals:
                by[rec[field]].append(hits[int(rec["index"])])
            out[field] = {k: sum(v) / len(v) for k, v in by.items()}
    return out


def seed_accuracy(records: Iterable[Mapping[str, Any]], variant: str = "lmms_eval") -> dict[str, Any]:
    """SEED-Bench accuracy. Each record: ``prediction``, ``answer`` (letter), ``data_type``
    ("image"/"video") and, for per-dimension numbers, ``question_type_id``.

    * ``lmms_eval`` (``tasks/seedbench/utils.py``): the first character of the stripped prediction,
      compared case-insensitively; ``seed_image``, ``seed_video``, ``seed_all`` as fractions.
    * ``llava`` (``scripts/convert_seed_for_submission.py``): exact ``text == answer``; accuracy per
      ``question_type_id`` and the micro-average, image and video parts separately. Returned as fractions
      (LLaVA prints percentages).
    """
    variant = canonical(variant)
    if variant not in ("lmms_eval", "llava"):
        raise LoupeError(f"unknown SEED variant {variant!r}; valid: 'lmms_eval', 'llava'")
    correct: dict[str, list[int]] = defaultdict(list)
    by_type: dict[Any, list[int]] = defaultdict(list)
    for rec in records:
        if variant == "lmms_eval":
            pred = str(rec["prediction"]).strip()
            if len(pred) > 1:
                pred = pred[0]
            hit = int(pred.lower().strip() == str(rec["answer"]).lower().strip())
        else:
            hit = int(rec["prediction"] == rec["answer"])
        correct["seed_all"].append(hit)
        correct[f"seed_{rec.get('data_type', 'image')}"].append(hit)
        if "question_type_id" in rec:
            by_type[rec["question_type_id"]].append(hit)
    out: dict[str, Any] = {k: sum(v) / len(v) for k, v in correct.items()}
    if by_type:
        ordered = sorted(by_type.items(), key=lambda kv: str(kv[0]))
        out["question_type"] = {k: sum(v) / len(v) for k, v in ordered}
    return out
