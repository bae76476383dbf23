"""``realworldqa``: xAI RealWorldQA (765 questions), accuracy for multiple-choice and open answers.

Files: a JSON list (``annotations.json``, or ``realworldqa.json`` / ``.jsonl``) of the release's records
``{"image": "images/0.webp", "question": "...\\nA. Left\\nB. Right\\n...Please answer directly with only the
letter of the correct option and nothing else.", "answer": "A"}`` -- the three columns of the published
dataset -- with image paths relative to that file. Category: ``multiple-choice`` (answer A-D) or ``open``.

Prompts: ``lmms_eval`` -- the question as published, stripped (``post_prompt: ""``); ``vlmevalkit`` (and
``llava15`` / ``uhd_v2``: LLaVA-1.5 has no script and UHD v2 ran VLMEvalKit for RWQA) -- the LLaVA wrapper's
MCQ prompt rebuilt from the stem and the ``X. text`` option lines parsed out of the question (the published
instruction line dropped); open questions keep the question.

Scores: lmms-eval ``realworldqa_process_results`` (``extract_mcq_answer`` over A-D, open answers compared
lower-cased without a final period) or VLMEvalKit ``can_infer`` over the parsed options.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..metrics import mcq_extract, realworldqa_correct
from . import register_task
from .base import MCQ_SUFFIX, Doc, Task, collect, family_table, find_file, mean, option_lines, per_category, \
    read_json, read_jsonl, require

INSTRUCTION = "Please answer directly with only the letter of the correct option and nothing else."
_OPTION = re.compile(r"^([A-F])\.\s*(.*)$")
_TABLE = {
    "lmms_eval": {"prompt": "question as published", "parser": "lmms_eval", "max_new_tokens": 16},
    "vlmevalkit": {"prompt": "stem + A. options + MCQ suffix", "parser": "vlmevalkit", "max_new_tokens": 2048},
    "llava15": {"prompt": "stem + A. options + MCQ suffix", "parser": "vlmevalkit", "max_new_tokens": 2048},
    "uhd_v2": {"prompt": "stem + A. options + MCQ suffix", "parser": "vlmevalkit", "max_new_tokens": 2048},
}


def split_question(text: str) -> tuple[str, dict[str, str]]:
    """(stem, options) parsed from a RealWorldQA question; options empty for open questions."""
    stem, options = [], {}
    for line in text.replace(INSTRUCTION, "").split("\n"):
        m = _OPTION.match(line.strip())
        if m:
            options[m.group(1)] = m.group(2).strip()
        elif not options and line.strip():
            stem.append(line.strip())
    return "\n".join(stem), options


@register_task
class RealWorldQA(Task):
    name = "realworldqa"
    primary = "accuracy"
    files = "annotations.json (image, question, answer) + images/"

    def load(self, path):
        problems = []
        qfile = find_file(Path(path), "annotations.json", "realworldqa.json", "realworldqa.jsonl")
        if qfile.suffix == ".jsonl":
            records = [(f"line {n}", r) for n, r in read_jsonl(qfile, problems)]
        else:
            records = [(str(i), r) for i, r in enumerate(read_json(qfile))]

        def build(rid, rec):
            question, answer = require(rec, "question"), str(require(rec, "answer")).strip()
            stem, options = split_question(question)
            kind = "multiple-choice" if answer.upper() in ("A", "B", "C", "D") else "open"
            return Doc(id=str(rec.get("id", rid)), images=[str(qfile.parent / require(rec, "image"))],
                       data={"question": question, "answer": answer, "stem": stem, "options": options},
                       category=kind)

        return collect(records, build, problems), problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        d = doc.data
        if protocol.family == "lmms_eval" or not d["options"]:
            return d["question"].strip()
        return f"{d['stem']}\n{option_lines(d['options'])}{MCQ_SUFFIX}"

    def score(self, docs, predictions, protocol):
        parser = self.settings(protocol)["parser"]
        scores = {}
        for d in docs:
            pred, gt = predictions[d.id], d.data["answer"]
            if parser == "lmms_eval" or not d.data["options"]:
                scores[d.id] = realworldqa_correct(pred, gt)
            else:
                scores[d.id] = float(mcq_extract(pred, d.data["options"], "vlmevalkit") == gt.upper())
        return {"primary": self.primary, "metrics": {"accuracy": mean(scores.values()), "n": len(scores)},
                "categories": per_category(docs, scores, "accuracy")}
