"""``textvqa``: TextVQA val, VQA accuracy (EvalAI normaliser, 10 answers), OCR tokens on or off.

Files (LLaVA's ``playground/data/eval/textvqa`` layout): ``llava_textvqa_val_v051_ocr.jsonl`` (one line per
question: ``question_id`` -- the **image** id --, ``image``, ``text`` = ``question\\nReference OCR token: t1,
t2, ...\\nAnswer the question using a single word or phrase.``), ``TextVQA_0.5.1_val.json`` (``data``: one
entry per question with ``image_id``, ``question``, ``question_id``, ten ``answers``) and ``train_images/``.
Questions are matched to annotations as LLaVA's ``eval_textvqa.py`` does: by ``(image_id,
question.lower())``, the question being read back from the prompt by its ``prompt_processor``.

Prompts ([IMPORTANT] the OCR line is the best-known protocol gap: LLaVA-1.5's 58.2 has it, VLMEvalKit's
numbers do not -- ConvLLaVA's paper says so):

* ``llava15`` / ``uhd_v2``: LLaVA's ``text`` field verbatim (OCR tokens on); with ``ocr_tokens=false`` the OCR
  line is removed.
* ``lmms_eval``: ``question.capitalize()`` (the annotation's question) + optional ``\\nReference OCR token:
  ...`` (``ocr: false`` by default) + the short-answer suffix (``tasks/textvqa/utils.py``).
* ``vlmevalkit``: question + ``\\nAnswer the question using a single word or phrase.`` (``ImageVQADataset``).

Scores: :func:`~loupe.evaluation.metrics.vqa_accuracy` with variant ``llava`` / ``lmms_eval_textvqa`` /
``vlmevalkit``. TextVQA has no categories.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import LoupeError
from ..metrics import vqa_accuracy
from . import register_task
from .base import SHORT_ANSWER, Doc, Task, collect, family_table, find_dir, find_file, mean, read_json, read_jsonl

OCR_PREFIX = "Reference OCR token: "

_TABLE = {
    "llava15": {"prompt": "LLaVA jsonl text", "ocr_tokens": True, "variant": "llava", "max_new_tokens": 128},
    "uhd_v2": {"prompt": "LLaVA jsonl text", "ocr_tokens": True, "variant": "llava", "max_new_tokens": 128},
    "lmms_eval": {"prompt": "question.capitalize() [+ OCR] + short-answer suffix", "ocr_tokens": False,
                  "variant": "lmms_eval_textvqa", "max_new_tokens": 1024},
    "vlmevalkit": {"prompt": "question + short-answer suffix", "ocr_tokens": False, "variant": "vlmevalkit",
                   "max_new_tokens": 2048},
}


def split_llava_text(text: str) -> tuple[str, list[str] | None]:
    """(question, OCR tokens or None) from a LLaVA TextVQA prompt, as ``eval_textvqa.prompt_processor``."""
    lines = text.split("\n")
    if OCR_PREFIX.strip() in text and len(lines) == 3:
        q, ocr = (lines[1], lines[0]) if text.startswith(OCR_PREFIX.strip()) else (lines[0], lines[1])
        return q, [t for t in ocr[len(OCR_PREFIX):].split(", ")] if ocr.startswith(OCR_PREFIX) else []
    if len(lines) == 2:
        return lines[0], None
    raise LoupeError(f"unexpected LLaVA TextVQA prompt layout ({len(lines)} lines)")


@register_task
class TextVQA(Task):
    name = "textvqa"
    primary = "vqa_accuracy"
    files = "llava_textvqa_val_v051_ocr.jsonl + TextVQA_0.5.1_val.json + train_images/"

    def load(self, path):
        problems = []
        qfile = find_file(Path(path), "llava_textvqa_val_v051_ocr.jsonl")
        ann = read_json(find_file(Path(path), "TextVQA_0.5.1_val.json"))["data"]
        images = find_dir(qfile.parent, "train_images", "images")
        by_key = {(str(a.get("image_id")), str(a.get("question", "")).lower()): a for a in ann}

        def build(rid, rec):
            question, ocr = split_llava_text(rec["text"])
            a = by_key.get((str(rec["question_id"]), question.lower()))
            if a is None:
                raise LoupeError(f"no annotation for image {rec['question_id']!r} and question {question!r}")
            answers = a.get("answers")
            if not answers:
                raise KeyError("answers")
            return Doc(id=str(a.get("question_id", rid)), images=[str(images / rec["image"])],
                       data={"llava_text": rec["text"], "question": question, "ann_question": a["question"],
                             "ocr": ocr if ocr is not None else a.get("ocr_tokens", []), "answers": answers})

        lines = read_jsonl(qfile, problems)
        items = [(f"{qfile.name}:line {n} (question_id {rec.get('question_id')})", rec) for n, rec in lines]
        return collect(items, build, problems), problems

    def settings(self, protocol):
        s = family_table(self.name, protocol, _TABLE)
        if protocol.ocr_tokens is not None:
            s["ocr_tokens"] = protocol.ocr_tokens
        return s

    def prompt(self, doc, protocol):
        s = self.settings(protocol)
        d = doc.data
        ocr_line = f"\n{OCR_PREFIX}{', '.join(d['ocr'])}" if s["ocr_tokens"] else ""
        if protocol.family in ("llava15", "uhd_v2"):
            return d["llava_text"] if s["ocr_tokens"] else d["question"] + SHORT_ANSWER
        if protocol.family == "lmms_eval":
            return f"{d['ann_question'].capitalize()}{ocr_line}{SHORT_ANSWER}"
        return f"{d['ann_question']}{ocr_line}{SHORT_ANSWER}"

    def score(self, docs, predictions, protocol):
        variant = self.settings(protocol)["variant"]
        scores = {d.id: vqa_accuracy(predictions[d.id], d.data["answers"], variant) for d in docs}
        return {"primary": self.primary, "metrics": {"vqa_accuracy": mean(scores.values()), "n": len(scores)},
                "categories": {}}
