"""Benchmark metrics as pure functions that reproduce the reference evaluation code exactly, quirks included.

One module per family; each function's docstring cites the file it follows and lists the quirks it keeps.
Where the tools disagree, a named ``variant`` / ``style`` / ``parse`` / ``parser`` argument selects one; the
default is the one the seed papers (ConvLLaVA, INF-LLaVA, LLaVA-UHD v2) used, stated in the docstring.
Names accept hyphens for underscores ("lmms-eval" == "lmms_eval", "padded-square"); POPE's ``parse`` also
takes "lmms_eval" for "exact", and :func:`vqa_accuracy` takes "lmms_eval" for "lmms_eval_textvqa".

* :mod:`.vqa`: EvalAI normaliser, :func:`vqa_accuracy` (TextVQA / VQAv2), :func:`exact_match`
* :mod:`.anls`: :func:`anls` (DocVQA / InfoVQA, UHD v2's ChartQA)
* :mod:`.chartqa`: :func:`relaxed_accuracy`
* :mod:`.ocrbench`: :func:`ocrbench_hit`, :func:`ocrbench_scores`
* :mod:`.choice`: :func:`mcq_extract`, :func:`circular_eval` (MMBench), :func:`seed_accuracy`,
  :func:`realworldqa_correct`
* :mod:`.yesno`: :func:`mme_scores`, :func:`pope_metrics`, :func:`hallusionbench_scores`
* :mod:`.grounding`: :func:`rec_accuracy`, :func:`rec_iou`, :func:`parse_box` (RefCOCO)
"""

from .anls import ANLS_VARIANTS, anls, levenshtein
from .chartqa import RELAXED_VARIANTS, relaxed_accuracy
from .choice import (
    MCQ_STYLES,
    can_infer,
    circular_eval,
    extract_mcq_answer,
    mcq_extract,
    realworldqa_correct,
    seed_accuracy,
)
from .grounding import REC_FRAMES, REC_PARSERS, box_iou, parse_box, rec_accuracy, rec_iou
from .ocrbench import (
    OCRBENCH_CATEGORIES,
    OCRBENCH_VARIANTS,
    fold_fullwidth_ascii,
    ocrbench_hit,
    ocrbench_scores,
)
from .vqa import (
    VQA_VARIANTS,
    evalai_normalize,
    exact_match,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
    vqa_normalize,
    word_tokenize,
)
from .yesno import (
    MME_COGNITION,
    MME_PERCEPTION,
    hallusionbench_scores,
    mme_parse,
    mme_scores,
    pope_metrics,
    pope_parse,
    yorn_extract,
)

__all__ = [
    "ANLS_VARIANTS", "MCQ_STYLES", "MME_COGNITION", "MME_PERCEPTION", "OCRBENCH_CATEGORIES", "OCRBENCH_VARIANTS",
    "REC_FRAMES", "REC_PARSERS", "RELAXED_VARIANTS", "VQA_VARIANTS",
    "anls", "box_iou", "can_infer", "circular_eval", "evalai_normalize", "exact_match", "extract_mcq_answer",
    "fold_fullwidth_ascii", "hallusionbench_scores", "levenshtein", "mcq_extract", "mme_parse", "mme_scores",
    "ocrbench_hit", "ocrbench_scores", "parse_box", "pope_metrics", "pope_parse", "process_digit_article",
    "process_punctuation", "realworldqa_correct", "rec_accuracy", "rec_iou", "relaxed_accuracy",
    "seed_accuracy", "vqa_accuracy", "vqa_normalize", "word_tokenize", "yorn_extract",
]
