"""``ocrbench``: OCRBench (1000 questions), substring hits summed to a Final Score out of 1000.

Files: the official ``OCRBench.json`` -- a list of ``{"dataset_name", "id", "image_path", "question",
"answers": str | [str], "type"}`` (``type`` is one of the ten categories) -- and ``OCRBench_Images/``;
``image_path`` is resolved against the JSON's folder, then against ``OCRBench_Images/``.

Prompt: the bare question in every protocol (lmms-eval ``post_prompt: ""``, max 128 new tokens; VLMEvalKit
``OCRBench`` uses the base ``build_prompt``; LLaVA-UHD v2 ran VLMEvalKit for OCRBench, and ``llava15`` follows
it). Scores: :func:`~loupe.evaluation.metrics.ocrbench_scores` -- ``lmms_eval`` folds full-width characters
first; handwritten maths (``HME100k``) compares with every space removed. Per category: hits / questions.
"""

from __future__ import annotations

from pathlib import Path

from ..metrics import ocrbench_hit, ocrbench_scores
from . import register_task
from .base import Doc, Task, collect, family_table, find_file, per_category, read_json, require

_TABLE = {
    "llava15": {"prompt": "question", "variant": "vlmevalkit", "max_new_tokens": 2048},
    "uhd_v2": {"prompt": "question", "variant": "vlmevalkit", "max_new_tokens": 2048},
    "lmms_eval": {"prompt": "question.strip()", "variant": "lmms_eval", "max_new_tokens": 128},
    "vlmevalkit": {"prompt": "question", "variant": "vlmevalkit", "max_new_tokens": 2048},
}


@register_task
class OCRBench(Task):
    name = "ocrbench"
    primary = "Final Score"
    files = "OCRBench.json + OCRBench_Images/"

    def load(self, path):
        problems = []
        qfile = find_file(Path(path), "OCRBench.json")
        root = qfile.parent

        def build(rid, rec):
            rel = require(rec, "image_path")
            img = root / rel
            if not img.is_file():
                img = root / "OCRBench_Images" / rel
            answers = require(rec, "answers")
            return Doc(id=rid, images=[str(img)],
                       data={"question": require(rec, "question"), "answers": answers,
                             "dataset": rec.get("dataset_name"), "type": require(rec, "type")},
                       category=rec["type"])

        items = [(str(r.get("id", i)), r) for i, r in enumerate(read_json(qfile))]
        return collect(items, build, problems), problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        q = doc.data["question"]
        return q.strip() if protocol.family == "lmms_eval" else q

    def score(self, docs, predictions, protocol):
        variant = self.settings(protocol)["variant"]
        recs = [{"prediction": predictions[d.id], "answer": d.data["answers"], "question_type": d.data["type"],
                 "dataset": d.data["dataset"]} for d in docs]
        totals = ocrbench_scores(recs, variant)
        hits = {}
        for d in docs:
            subset = d.data["dataset"] if variant == "lmms_eval" and d.data["dataset"] else d.data["type"]
            hits[d.id] = float(ocrbench_hit(predictions[d.id], d.data["answers"], subset, variant))
        metrics = {"Final Score": totals["Final Score"], "Final Score Norm": totals["Final Score Norm"],
                   "accuracy": totals["accuracy"], "Text Recognition": totals["Text Recognition"], "n": len(docs)}
        return {"primary": self.primary, "metrics": metrics, "categories": per_category(docs, hits, "accuracy")}
