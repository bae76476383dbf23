"""``chartqa``: ChartQA test, relaxed accuracy (or ANLS for LLaVA-UHD v2), human / augmented splits.

Files (the official ``ChartQA Dataset/test`` folder): ``test_human.json`` and ``test_augmented.json`` --
lists of ``{"imgname": "x.png", "query": ..., "label": ...}`` -- and ``png/``. Categories: ``human`` /
``augmented`` (lmms-eval's ``relaxed_human_split`` / ``relaxed_augmented_split``).

Prompts: lmms-eval ``query + "\\nAnswer the question with a single word."`` (max 16 new tokens); VLMEvalKit
``query`` + the short-answer suffix; ``llava15`` / ``uhd_v2``: LLaVA-UHD v2's ``chartqa.sh`` (LLaVA loader,
short-answer suffix).

Scores: ``lmms_eval`` / ``vlmevalkit``: :func:`~loupe.evaluation.metrics.relaxed_accuracy` (5% relative
tolerance for non-zero numeric targets, else case-insensitive equality; the VLMEvalKit variant strips the
answer). ``uhd_v2`` / ``llava15``: [IMPORTANT] UHD v2 scores ChartQA with ANLS (``eval_docvqa``,
``STVQAANLSEvaluator``), so its "ChartQA" numbers are not relaxed accuracy.
"""

from __future__ import annotations

from pathlib import Path

from ..metrics import anls, relaxed_accuracy
from . import register_task
from .base import SHORT_ANSWER, Doc, Task, collect, family_table, find_dir, mean, per_category, read_json, require
from ...errors import LoupeError

_TABLE = {
    "llava15": {"prompt": "query + short-answer suffix", "metric": "anls", "variant": "uhd_stvqa",
                "max_new_tokens": 128},
    "uhd_v2": {"prompt": "query + short-answer suffix", "metric": "anls", "variant": "uhd_stvqa",
               "max_new_tokens": 128},
    "lmms_eval": {"prompt": "query + '\\nAnswer the question with a single word.'", "metric": "relaxed_accuracy",
                  "variant": "lmms_eval", "max_new_tokens": 16},
    "vlmevalkit": {"prompt": "query + short-answer suffix", "metric": "relaxed_accuracy", "variant": "vlmevalkit",
                   "max_new_tokens": 2048},
}


@register_task
class ChartQA(Task):
    name = "chartqa"
    primary = "relaxed_accuracy"
    files = "test/test_human.json + test/test_augmented.json + test/png/"

    def load(self, path):
        problems, docs = [], []
        root = find_dir(Path(path), "test")
        found = False
        for split in ("human", "augmented"):
            f = root / f"test_{split}.json"
            if not f.is_file():
                continue
            found = True
            png = find_dir(root, "png")

            def build(rid, rec, split=split, png=png):
                return Doc(id=rid, images=[str(png / require(rec, "imgname"))],
                           data={"query": require(rec, "query"), "label": str(require(rec, "label"))},
                           category=split)

            docs += collect(((f"{split}-{i}", r) for i, r in enumerate(read_json(f))), build, problems)
        if not found:
            raise LoupeError(f"no test_human.json / test_augmented.json in {root}")
        return docs, problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        if protocol.family == "lmms_eval":
            return doc.data["query"] + "\nAnswer the question with a single word."
        return doc.data["query"] + SHORT_ANSWER

    def score(self, docs, predictions, protocol):
        s = self.settings(protocol)
        if s["metric"] == "anls":
            scores = {d.id: anls(predictions[d.id], [d.data["label"]], variant=s["variant"]) for d in docs}
        else:
            scores = {d.id: relaxed_accuracy(predictions[d.id], d.data["label"], s["variant"]) for d in docs}
        return {"primary": s["metric"], "metrics": {s["metric"]: mean(scores.values()), "n": len(scores)},
                "categories": per_category(docs, scores, s["metric"])}
