"""``docvqa``: DocVQA val, ANLS, per question type.

Files: the official ``val_v1.0_withQT.json`` (or ``val_v1.0.json``) -- ``{"dataset_name": "docvqa", "data": [
{"questionId", "question", "image": "documents/x.png", "docId", "answers": [...], "question_types": [...]}]}`` --
with ``documents/`` beside it. Per-category numbers use ``question_types`` (only in the ``withQT`` file; a
question with several types counts in each).

Prompt: ``question`` + ``\\nAnswer the question using a single word or phrase.`` in every protocol (lmms-eval
``_default_template_docvqa_yaml``, VLMEvalKit ``ImageVQADataset.build_prompt``, LLaVA-UHD v2's LLaVA-style
loader; LLaVA-1.5 has no DocVQA script, so ``llava15`` follows UHD v2).

Scores: :func:`~loupe.evaluation.metrics.anls` -- ``lmms_eval`` / ``vlmevalkit`` (raw-length denominator,
``>= 0.5`` kept) or, for ``llava15`` / ``uhd_v2``, ``uhd_stvqa`` (UHD v2's ``STVQAANLSEvaluator``; note UHD's
own annotation has one answer per question, the official file has several: max over them, as the evaluator
does).
"""

from __future__ import annotations

from pathlib import Path

from ..metrics import anls
from . import register_task
from .base import SHORT_ANSWER, Doc, Task, collect, family_table, find_file, mean, per_category, read_json, require

_TABLE = {
    "llava15": {"prompt": "question + short-answer suffix", "variant": "uhd_stvqa", "max_new_tokens": 128},
    "uhd_v2": {"prompt": "question + short-answer suffix", "variant": "uhd_stvqa", "max_new_tokens": 128},
    "lmms_eval": {"prompt": "question + short-answer suffix", "variant": "lmms_eval", "max_new_tokens": 32},
    "vlmevalkit": {"prompt": "question + short-answer suffix", "variant": "vlmevalkit", "max_new_tokens": 2048},
}


@register_task
class DocVQA(Task):
    name = "docvqa"
    primary = "anls"
    files = "val_v1.0_withQT.json (or val_v1.0.json) + documents/"

    def load(self, path):
        problems = []
        qfile = find_file(Path(path), "val_v1.0_withQT.json", "val_v1.0.json", "test_v1.0.json")
        root = qfile.parent

        def build(rid, rec):
            answers = require(rec, "answers")
            return Doc(id=str(rec["questionId"]), images=[str(root / require(rec, "image"))],
                       data={"question": require(rec, "question"), "answers": list(answers)},
                       category=rec.get("question_types"))

        data = read_json(qfile)["data"]
        items = [(str(r.get("questionId", f"record {i}")), r) for i, r in enumerate(data)]
        return collect(items, build, problems), problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        return doc.data["question"] + SHORT_ANSWER

    def score(self, docs, predictions, protocol):
        variant = self.settings(protocol)["variant"]
        scores = {d.id: anls(predictions[d.id], d.data["answers"], variant=variant) for d in docs}
        return {"primary": self.primary, "metrics": {"anls": mean(scores.values()), "n": len(scores)},
                "categories": per_category(docs, scores, "anls")}
