"""``pope``: POPE object hallucination (COCO), accuracy / precision / recall / F1 / yes-ratio per split.

Files: the official POPE question files ``coco_pope_adversarial.json``, ``coco_pope_popular.json``,
``coco_pope_random.json`` (JSON lines ``{"question_id", "image", "text", "label": "yes"|"no"}``, LLaVA's
``playground/data/eval/pope/coco``) and the COCO ``val2014/`` images. Category = the file's split.

Prompts: ``llava15`` (``llava_pope_test.jsonl``) and ``lmms_eval`` (``pope_doc_to_text``): the question +
``\\nAnswer the question using a single word or phrase.``; ``vlmevalkit``: the bare question.

Scores (:func:`~loupe.evaluation.metrics.pope_metrics`): ``llava15`` / ``uhd_v2`` -- LLaVA ``eval_pope.py``
parser ("No"/"not"/"no" in the first sentence), metrics per split and the **F1 averaged over the three
splits** (what LLaVA-1.5 reports); ``lmms_eval`` -- exact "yes"/"no", pooled over all questions (and its
yes-ratio on the ground truth, upstream's bug); ``vlmevalkit`` -- ``YOrN_Extraction``, pooled.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import LoupeError
from ..metrics import pope_metrics
from . import register_task
from .base import SHORT_ANSWER, Doc, Task, collect, family_table, find_dir, read_jsonl, require

SPLITS = ("adversarial", "popular", "random")
_TABLE = {
    "llava15": {"prompt": "question + short-answer suffix", "parse": "llava", "pool": "mean_f1_over_splits",
                "max_new_tokens": 128},
    "uhd_v2": {"prompt": "question + short-answer suffix", "parse": "llava", "pool": "mean_f1_over_splits",
               "max_new_tokens": 128},
    "lmms_eval": {"prompt": "question + short-answer suffix", "parse": "exact", "pool": "all_questions",
                  "max_new_tokens": 128},
    "vlmevalkit": {"prompt": "question", "parse": "vlmevalkit", "pool": "all_questions", "max_new_tokens": 2048},
}


@register_task
class POPE(Task):
    name = "pope"
    primary = "f1"
    files = "coco_pope_{adversarial,popular,random}.json + val2014/"

    def load(self, path):
        problems, docs = [], []
        root = Path(path)
        qdir = find_dir(root, "coco")
        images = find_dir(root, "val2014", "images")
        files = [(s, qdir / f"coco_pope_{s}.json") for s in SPLITS if (qdir / f"coco_pope_{s}.json").is_file()]
        if not files:
            raise LoupeError(f"no coco_pope_*.json in {qdir}")
        for split, f in files:
            def build(rid, rec, split=split):
                label = str(require(rec, "label")).strip().lower()
                if label not in ("yes", "no"):
                    raise LoupeError(f"label must be yes or no, got {rec['label']!r}")
                return Doc(id=rid, images=[str(images / require(rec, "image"))], category=split,
                           data={"question": require(rec, "text"), "label": label})

            lines = read_jsonl(f, problems)
            docs += collect(((f"{split}-{rec.get('question_id', n)}", rec) for n, rec in lines), build, problems)
        return docs, problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        q = doc.data["question"]
        if protocol.family == "vlmevalkit":
            return q
        return (q.strip() if protocol.family == "lmms_eval" else q) + SHORT_ANSWER

    def score(self, docs, predictions, protocol):
        s = self.settings(protocol)
        cats = {}
        for split in SPLITS:
            mine = [d for d in docs if d.category == split]
            if mine:
                m = pope_metrics([predictions[d.id] for d in mine], [d.data["label"] for d in mine], s["parse"])
                cats[split] = {k: m[k] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio", "n")}
        if s["pool"] == "mean_f1_over_splits":
            metrics = {k: sum(c[k] for c in cats.values()) / len(cats) for k in ("f1", "accuracy", "precision",
                                                                                  "recall", "yes_ratio")}
            metrics["n"] = len(docs)
        else:
            m = pope_metrics([predictions[d.id] for d in docs], [d.data["label"] for d in docs], s["parse"])
            metrics = {k: m[k] for k in ("f1", "accuracy", "precision", "recall", "yes_ratio", "n")}
        return {"primary": self.primary, "metrics": metrics, "categories": cats}
