"""``ai2d``: AI2D diagram multiple choice, accuracy (per diagram category when ``categories.json`` is given).

Files (the official AI2D release, ``ai2d-all.zip``): ``questions/<image>.json`` -- ``{"imageName": "0.png",
"questions": {"<question text>": {"answerTexts": [...], "correctAnswer": 1, "abcLabel": false, "questionId":
"0.png-0"}}}`` --, ``images/`` and, optionally, ``categories.json`` (``{"0.png": "partsOfA", ...}``) and
``ai2d_test_ids.csv`` (the test split: one image number per line; without it every question is used).

Prompt (lmms-eval ``ai2d_doc_to_text`` "mcq"; VLMEvalKit's LLaVA ``build_prompt`` gives the same string):
``{question}\\nA. {o1}\\nB. {o2}...\\nAnswer with the option's letter from the given choices directly.``

Scores: ``lmms_eval``: ``MultiChoiceRegexFilter`` (``^\\s*([A-Z])\\.``) then ``exact_match`` ignoring case and
punctuation; ``vlmevalkit``: ``can_infer``; ``uhd_v2`` (and ``llava15``, which has no AI2D script):
``answer.strip().lower() == key.lower()`` (LLaVA-UHD v2 ``eval_ai2d.py``).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import LoupeError
from ..metrics import mcq_extract
from . import register_task
from .base import (MCQ_SUFFIX, LETTERS, Doc, Problem, Task, collect, family_table, find_dir, lettered, mean,
                   option_lines, per_category, read_json)

_TABLE = {
    "llava15": {"prompt": "question + A./B. options + MCQ suffix", "parser": "uhd_lower_equal", "max_new_tokens": 128},
    "uhd_v2": {"prompt": "question + A./B. options + MCQ suffix", "parser": "uhd_lower_equal", "max_new_tokens": 128},
    "lmms_eval": {"prompt": "question + A./B. options + MCQ suffix", "parser": "lmms_eval_ai2d", "max_new_tokens": 16},
    "vlmevalkit": {"prompt": "question + A./B. options + MCQ suffix", "parser": "vlmevalkit", "max_new_tokens": 2048},
}


@register_task
class AI2D(Task):
    name = "ai2d"
    primary = "accuracy"
    files = "questions/*.json + images/ (+ categories.json, ai2d_test_ids.csv)"

    def load(self, path):
        problems = []
        root = Path(path)
        qdir, images = root / "questions", find_dir(root, "images")
        if not qdir.is_dir():
            raise LoupeError(f"no AI2D questions/ folder in {root}")
        cats = read_json(root / "categories.json") if (root / "categories.json").is_file() else {}
        ids_file = root / "ai2d_test_ids.csv"
        keep = {line.strip() for line in ids_file.read_text().splitlines() if line.strip()} if ids_file.is_file() \
            else None
        items = []
        for f in sorted(qdir.glob("*.json")):
            try:
                rec = read_json(f)
            except LoupeError as e:
                problems.append(Problem(f.name, str(e)))
                continue
            image = rec.get("imageName", f.name[:-5])
            if keep is not None and image.split(".")[0] not in keep:
                continue
            for k, (text, q) in enumerate(sorted((rec.get("questions") or {}).items(),
                                                 key=lambda kv: str(kv[1].get("questionId", "")))):
                items.append((str(q.get("questionId", f"{image}-{k}")), (image, text, q)))

        def build(rid, raw):
            image, text, q = raw
            options = lettered(q["answerTexts"])
            key = LETTERS[int(q["correctAnswer"])]
            return Doc(id=rid, images=[str(images / image)], data={"question": text, "options": options,
                                                                  "answer": key}, category=cats.get(image))

        return collect(items, build, problems), problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        return f"{doc.data['question']}\n{option_lines(doc.data['options'])}{MCQ_SUFFIX}"

    def score(self, docs, predictions, protocol):
        parser = self.settings(protocol)["parser"]
        scores = {}
        for d in docs:
            pred, key = predictions[d.id], d.data["answer"]
            if parser == "uhd_lower_equal":
                scores[d.id] = float(pred.strip().lower() == key.lower())
            else:
                scores[d.id] = float(mcq_extract(pred, d.data["options"], parser) == key)
        return {"primary": self.primary, "metrics": {"accuracy": mean(scores.values()), "n": len(scores)},
                "categories": per_category(docs, scores, "accuracy")}
