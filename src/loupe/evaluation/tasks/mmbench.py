"""``mmbench``: MMBench (dev, English) with CircularEval, per category and L2 category.

Files: the official TSV (``MMBench_DEV_EN.tsv``, the one VLMEvalKit and lmms-eval read) with columns
``index, question, hint, A, B, C, D[, E], answer, category, image, source, l2-category, comment, split``;
``image`` is base64, or -- in circular copies -- the index of the row holding the image. Circular copies
have ``index = original + k * 1e6`` and rotated options. Rows without ``answer`` (the test split) are
reported as malformed: score those on the MMBench server.

Prompts: ``llava15`` (``model_vqa_mmbench.py --single-pred-prompt``) and ``vlmevalkit`` (LLaVA wrapper):
``{hint}\\n{question}\\nA. x\\nB. y`` + ``\\nAnswer with the option's letter from the given choices directly.``;
``lmms_eval`` (``en_utils.mmbench_doc_to_text``): ``f"{hint} {question} There are several options:\\nA. x\\nB.
y"`` + ``"\\n" + post_prompt`` (so a blank line before the suffix, as upstream).

Scores: :func:`~loupe.evaluation.metrics.circular_eval` -- a question counts only if every rotation is right
(no GPT judge) -- with ``mcq_extract`` style ``vlmevalkit``, ``lmms_eval_mmbench`` (``static`` fallback), or
for ``llava15`` / ``uhd_v2`` the 2024 VLMEvalKit matcher (the copy UHD v2 vendors; LLaVA-1.5 used the server).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from ..metrics import circular_eval
from . import register_task
from .base import MCQ_SUFFIX, Doc, Task, collect, family_table, find_file, option_lines

_TABLE = {
    "llava15": {"prompt": "hint/question/A. options + suffix", "style": "vlmevalkit_2024", "max_new_tokens": 1024},
    "uhd_v2": {"prompt": "hint/question/A. options + suffix", "style": "vlmevalkit_2024", "max_new_tokens": 2048},
    "lmms_eval": {"prompt": "hint question 'There are several options:' options + \\n + suffix",
                  "style": "lmms_eval_mmbench", "max_new_tokens": 1024, "image_aspect_ratio": "original"},
    "vlmevalkit": {"prompt": "hint/question/A. options + suffix", "style": "vlmevalkit", "max_new_tokens": 2048},
}
SYS_PROMPT = "There are several options:"


def read_tsv(path: Path) -> list[dict]:
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@register_task
class MMBench(Task):
    name = "mmbench"
    primary = "circular_accuracy"
    files = "MMBench_DEV_EN.tsv (base64 images, circular copies)"

    def load(self, path):
        problems = []
        tsv = find_file(Path(path), "MMBench_DEV_EN.tsv", "MMBench_DEV_EN_V11.tsv", "MMBench.tsv")
        rows = read_tsv(tsv)
        images = {str(r.get("index")): r.get("image", "") for r in rows}

        def build(rid, r):
            image = r["image"]
            if len(image) <= 64 and image in images:  # a circular copy points at its original's row
                image = images[image]
            if not image:
                raise KeyError("image")
            options = {k: r[k] for k in "ABCDE" if (r.get(k) or "").strip() and r[k] != "nan"}
            if not r.get("answer"):
                raise KeyError("answer")
            return Doc(id=rid, images=["base64:" + image],
                       data={"index": int(float(r["index"])), "question": r["question"],
                             "hint": r.get("hint") or "", "options": options, "answer": r["answer"].strip(),
                             "l2": r.get("l2-category") or r.get("L2-category")},
                       category=r.get("category"))

        return collect(((str(r.get("index")), r) for r in rows), build, problems), problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        d = doc.data
        hint = d["hint"] if d["hint"] and d["hint"] != "nan" else ""
        if protocol.family == "lmms_eval":
            options = f"{SYS_PROMPT}\n{option_lines(dict(sorted(d['options'].items())))}"
            query = f"{hint} {d['question']} {options}" if hint else f"{d['question']} {options}"
            return f"{query}\n{MCQ_SUFFIX}"
        question = f"{hint}\n{d['question']}" if hint else d["question"]
        return f"{question}\n{option_lines(d['options'])}{MCQ_SUFFIX}"

    def score(self, docs, predictions, protocol):
        style = self.settings(protocol)["style"]
        recs = []
        for d in docs:
            rec = {"index": d.data["index"], "answer": d.data["answer"], "prediction": predictions[d.id],
                   "category": d.category, "l2-category": d.data["l2"]}
            rec.update({k: d.data["options"].get(k) for k in "ABCDE"})
            recs.append(rec)
        out = circular_eval(recs, style=style)
        n = len(out["hits"])
        cats = {c: {"circular_accuracy": v, "n": sum(1 for r in recs if r["index"] < 1e6 and r["category"] == c)}
                for c, v in sorted(out.get("category", {}).items(), key=lambda kv: str(kv[0]))}
        for c, v in sorted(out.get("l2-category", {}).items(), key=lambda kv: str(kv[0])):
            cats[f"L2: {c}"] = {"circular_accuracy": v,
                                "n": sum(1 for r in recs if r["index"] < 1e6 and r["l2-category"] == c)}
        return {"primary": self.primary, "metrics": {"circular_accuracy": out["accuracy"], "n": n,
                                                     "rows": len(recs)}, "categories": cats}
