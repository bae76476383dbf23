"""``seedbench``: SEED-Bench, image part (SEED-IMG), accuracy per evaluation dimension.

Files: the official ``SEED-Bench.json`` -- ``{"question_type": {"Scene Understanding": 1, ...}, "questions":
[{"question_id", "question", "choice_a".."choice_d", "answer": "A", "data_id": "x.jpg", "data_type": "image" |
"video", "question_type_id"}]}`` -- and ``SEED-Bench-image/<data_id>``. Video questions are not loaded
(Loupe models take images; LLaVA-1.5 reports the image part as well).

Prompt (LLaVA ``llava-seed-bench.jsonl``, lmms-eval ``seed_doc_to_text`` and VLMEvalKit's LLaVA wrapper all
give this string): ``{question}\\nA. a\\nB. b\\nC. c\\nD. d\\nAnswer with the option's letter from the given
choices directly.``

Scores: ``llava15`` -- exact ``text == answer`` (``convert_seed_for_submission.py``); ``lmms_eval`` -- the first
character of the stripped answer, case-insensitive; ``vlmevalkit`` / ``uhd_v2`` -- ``can_infer``.
"""

from __future__ import annotations

from pathlib import Path

from ..metrics import mcq_extract, seed_accuracy
from . import register_task
from .base import MCQ_SUFFIX, Doc, Task, collect, family_table, find_dir, find_file, mean, option_lines, \
    per_category, read_json

_TABLE = {
    "llava15": {"prompt": "question + A.-D. + suffix", "parser": "llava", "max_new_tokens": 128},
    "lmms_eval": {"prompt": "question + A.-D. + suffix", "parser": "lmms_eval", "max_new_tokens": 1024,
                  "image_aspect_ratio": "original"},
    "vlmevalkit": {"prompt": "question + A.-D. + suffix", "parser": "vlmevalkit", "max_new_tokens": 2048},
    "uhd_v2": {"prompt": "question + A.-D. + suffix", "parser": "vlmevalkit", "max_new_tokens": 2048},
}


@register_task
class SEEDBench(Task):
    name = "seedbench"
    primary = "accuracy"
    files = "SEED-Bench.json + SEED-Bench-image/"

    def load(self, path):
        problems = []
        qfile = find_file(Path(path), "SEED-Bench.json")
        raw = read_json(qfile)
        names = {int(v): k for k, v in raw.get("question_type", {}).items()}
        images = find_dir(qfile.parent, "SEED-Bench-image")

        def build(rid, q):
            if q.get("data_type", "image") != "image":
                return None
            options = {k.upper(): q[f"choice_{k}"] for k in "abcd"}
            if not q.get("answer"):
                raise KeyError("answer")
            tid = q.get("question_type_id")
            return Doc(id=rid, images=[str(images / q["data_id"])],
                       data={"question": q["question"], "options": options, "answer": q["answer"],
                             "question_type_id": tid},
                       category=names.get(int(tid), str(tid)) if tid is not None else None)

        items = [(str(q.get("question_id", i)), q) for i, q in enumerate(raw["questions"])]
        return collect(items, build, problems), problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        return f"{doc.data['question']}\n{option_lines(doc.data['options'])}{MCQ_SUFFIX}"

    def score(self, docs, predictions, protocol):
        parser = self.settings(protocol)["parser"]
        scores = {}
        for d in docs:
            pred = predictions[d.id]
            if parser == "vlmevalkit":
                scores[d.id] = float(mcq_extract(pred, d.data["options"], "vlmevalkit") == d.data["answer"])
            else:
                one = [{"prediction": pred, "answer": d.data["answer"], "data_type": "image"}]
                scores[d.id] = seed_accuracy(one, parser)["seed_all"]
        return {"primary": self.primary, "metrics": {"accuracy": mean(scores.values()), "n": len(scores)},
                "categories": per_category(docs, scores, "accuracy")}
