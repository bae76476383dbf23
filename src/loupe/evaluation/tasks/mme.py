"""``mme``: MME yes/no benchmark, perception (max 2000) and cognition (max 800) scores per category.

Files: the official ``MME_Benchmark_release_version/`` folder: one sub-folder per category holding either
``images/`` + ``questions_answers_YN/<image>.txt`` (artwork, celebrity, landmark, posters, scene) or the images
and ``<image>.txt`` side by side; each txt has one ``question<TAB>answer`` line per question (two per image,
answers Yes / No); questions whose image lacks its pair (``--limit``, a malformed line) are left out of the
score and counted. The image key of :func:`~loupe.evaluation.metrics.mme_scores` is ``<category>/<image>``.

Prompts: ``llava15`` (``llava_mme.jsonl``) and ``lmms_eval`` (``mme_doc_to_text``): the question with
``" Please answer yes or no."`` replaced by ``\\nAnswer the question using a single word or phrase.``;
``vlmevalkit``: the question as published. Scores: ``mme_scores`` variant ``lmms_eval`` (Otter's
``parse_pred_ans``, which LLaVA's ``calculation.py`` shares) or ``vlmevalkit`` (``YOrN_Extraction``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ...errors import LoupeError
from ..metrics import mme_scores
from ..metrics.yesno import mme_parse, yorn_extract
from . import register_task
from .base import SHORT_ANSWER, Doc, Problem, Task, collect, family_table

REPLACE = " Please answer yes or no."
_IMAGE_EXT = (".jpg", ".png", ".jpeg", ".JPG", ".PNG")
_TABLE = {
    "llava15": {"prompt": "question, ' Please answer yes or no.' -> short-answer suffix", "variant": "lmms_eval",
                "max_new_tokens": 128},
    "uhd_v2": {"prompt": "question, ' Please answer yes or no.' -> short-answer suffix", "variant": "lmms_eval",
               "max_new_tokens": 128},
    "lmms_eval": {"prompt": "question, ' Please answer yes or no.' -> short-answer suffix", "variant": "lmms_eval",
                  "max_new_tokens": 16},
    "vlmevalkit": {"prompt": "question as published", "variant": "vlmevalkit", "max_new_tokens": 2048},
}


def _image_for(txt: Path, image_dir: Path) -> Path | None:
    for ext in _IMAGE_EXT:
        if (image_dir / (txt.stem + ext)).is_file():
            return image_dir / (txt.stem + ext)
    return None


@register_task
class MME(Task):
    name = "mme"
    primary = "perception"
    files = "MME_Benchmark_release_version/<category>/ (txt + images)"

    def load(self, path):
        problems: list[Problem] = []
        root = Path(path)
        if (root / "MME_Benchmark_release_version").is_dir():
            root = root / "MME_Benchmark_release_version"
        items = []
        for cat_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            qa_dir = cat_dir / "questions_answers_YN"
            txt_dir, image_dir = (qa_dir, cat_dir / "images") if qa_dir.is_dir() else (cat_dir, cat_dir)
            for txt in sorted(txt_dir.glob("*.txt")):
                image = _image_for(txt, image_dir)
                lines = [ln for ln in txt.read_text(encoding="utf-8").splitlines() if ln.strip()]
                for k, line in enumerate(lines):
                    items.append((f"{cat_dir.name}/{txt.stem}#{k}", (cat_dir.name, txt, image, line)))
        if not items:
            raise LoupeError(f"no MME category folders with question files in {root}")

        def build(rid, raw):
            cat, txt, image, line = raw
            if image is None:
                raise LoupeError(f"image not found for {txt.name}")
            parts = line.split("\t")
            if len(parts) < 2 or not parts[1].strip():
                raise KeyError("answer")
            return Doc(id=rid, images=[str(image)], category=cat,
                       data={"question": parts[0], "answer": parts[1].strip(), "image_key": f"{cat}/{image.name}"})

        return collect(items, build, problems), problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        q = doc.data["question"]
        if protocol.family == "vlmevalkit":
            return q
        if protocol.family == "lmms_eval":
            q = q.strip()
        return q.replace(REPLACE, "") + SHORT_ANSWER

    def score(self, docs, predictions, protocol):
        variant = self.settings(protocol)["variant"]
        pairs = Counter(d.data["image_key"] for d in docs)  # --limit or a malformed line can split a pair
        dropped = sum(1 for d in docs if pairs[d.data["image_key"]] != 2)
        docs = [d for d in docs if pairs[d.data["image_key"]] == 2]
        if not docs:
            return {"primary": self.primary, "metrics": {"incomplete_pairs_dropped": dropped}, "categories": {}}
        recs = [{"category": d.category, "prediction": predictions[d.id], "answer": d.data["answer"],
                 "question_id": d.data["image_key"], "image_path": d.data["image_key"]} for d in docs]
        out = mme_scores(recs, variant)
        read = mme_parse if variant == "lmms_eval" else (lambda p: yorn_extract(p).lower())
        cats = {}
        for c, v in sorted(out["categories"].items()):
            mine = [d for d in docs if d.category == c]
            acc = sum(read(predictions[d.id]) == d.data["answer"].lower().strip() for d in mine) / len(mine)
            cats[c] = {"score": v, "accuracy": acc, "n": len(mine)}
        return {"primary": self.primary, "metrics": {"perception": out["perception"], "cognition": out["cognition"],
                                                     "total": out["perception"] + out["cognition"], "n": len(docs),
                                                     "incomplete_pairs_dropped": dropped},
                "categories": cats}
