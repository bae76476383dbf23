"""``loupe_synth``: the generated fine-grained benchmark (:mod:`loupe.data.synth`), exact match per category.

Reads ``test.json`` (LLaVA-format records with ``category`` and ``answer``) and ``images/`` as written by
:func:`loupe.data.synth.generate`. The prompt is the record's question (the image goes first); the answer is
right when ``exact_match`` holds after ``strip().lower().rstrip(".")`` on both sides (the demo's rule).
Every protocol asks the same question: the benchmark is Loupe's own, so only decoding and the image
placement differ between protocols. The lmms-eval task written by
:func:`loupe.evaluation.lmms_eval_plugin.write_synth_task` calls :func:`prompt_text` and :func:`correct`.
"""

from __future__ import annotations

from pathlib import Path

from ..metrics import exact_match
from . import register_task
from .base import Doc, Task, collect, find_dir, find_file, mean, per_category, read_json, require


def question_of(rec: dict) -> str:
    for turn in rec["conversations"]:
        if turn.get("from") in ("human", "user"):
            return turn["value"]
    raise KeyError("conversations[human]")


def prompt_text(question: str) -> str:
    return question.replace("<image>\n", "").replace("<image>", "").strip()


def _norm(s: str) -> str:
    return str(s).strip().lower().rstrip(".").strip()


def correct(prediction: str, answer: str) -> float:
    return exact_match(_norm(prediction), _norm(answer))


@register_task
class LoupeSynth(Task):
    name = "loupe_synth"
    primary = "exact_match"
    files = "test.json + images/ (loupe.data.synth.generate)"

    def load(self, path):
        problems = []
        data = find_file(Path(path), "test.json")
        images = find_dir(data.parent, "images")
        raw = read_json(data)

        def build(rid, rec):
            return Doc(id=str(require(rec, "id")), images=[str(images / require(rec, "image"))],
                       data={"question": prompt_text(question_of(rec)), "answer": str(require(rec, "answer"))},
                       category=rec.get("category"))

        items = [(str(r.get("id", f"record {i}")) if isinstance(r, dict) else f"record {i}", r)
                 for i, r in enumerate(raw)]
        return collect(items, build, problems), problems

    def settings(self, protocol):
        return {"prompt": "the record's question", "metric": "exact_match(strip/lower/rstrip('.'))",
                "max_new_tokens": 8}

    def prompt(self, doc, protocol):
        return doc.data["question"]

    def score(self, docs, predictions, protocol):
        scores = {d.id: correct(predictions[d.id], d.data["answer"]) for d in docs}
        return {"primary": self.primary, "metrics": {"exact_match": mean(scores.values()), "n": len(scores)},
                "categories": per_category(docs, scores, "exact_match")}
