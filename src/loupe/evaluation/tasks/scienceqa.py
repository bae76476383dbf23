"""``scienceqa_img``: ScienceQA test questions that have an image (SQA-IMG), accuracy per subject.

Files (the official ScienceQA release): ``problems.json`` (``{pid: {"question", "choices", "answer": index,
"hint", "image": "image.png" | null, "subject", ...}}``), ``pid_splits.json`` (``{"test": [pid, ...]}``) and
``images/test/<pid>/image.png`` (LLaVA's ``playground/data/eval/scienceqa/images/test``).

Prompts:

* ``llava15`` / ``uhd_v2``: LLaVA's ``convert_sqa_to_llava.py`` (``CQM-A``) then ``model_vqa_science.py
  --single-pred-prompt``: ``Context: {hint or "N/A"}\\nQuestion: {q}\\nOptions: (A) x (B) y`` (double spaces
  collapsed once, stripped) + ``\\nAnswer with the option's letter from the given choices directly.``
* ``lmms_eval``: ``Context: {hint}\\n`` (only if there is a hint) + ``{q}\\nA. x\\nB. y`` + the same suffix.
* ``vlmevalkit``: LLaVA wrapper ``build_prompt``: ``{hint}\\n`` (if any) ``{q}\\nA. x\\nB. y`` + the suffix.

Scores: LLaVA ``eval_science_qa.py`` (exact letter, ``X. ``, or one ``The answer is X.``; else FAILED = wrong),
lmms-eval ``sqa_process_results``, or VLMEvalKit ``can_infer``.
"""

from __future__ import annotations

from pathlib import Path

from ..metrics import mcq_extract
from . import register_task
from .base import MCQ_SUFFIX, Doc, Task, collect, family_table, find_dir, find_file, lettered, mean, \
    option_lines, per_category, read_json

_TABLE = {
    "llava15": {"prompt": "LLaVA CQM-A + single-pred suffix", "parser": "llava_sqa", "max_new_tokens": 1024},
    "uhd_v2": {"prompt": "LLaVA CQM-A + single-pred suffix", "parser": "llava_sqa", "max_new_tokens": 1024},
    "lmms_eval": {"prompt": "Context/question/A. options + suffix", "parser": "lmms_eval_sqa", "max_new_tokens": 16,
                  "image_aspect_ratio": "original"},
    "vlmevalkit": {"prompt": "hint/question/A. options + suffix", "parser": "vlmevalkit", "max_new_tokens": 2048},
}


def llava_cqm(hint: str, question: str, choices: list[str]) -> str:
    context = " ".join([hint, ""]).strip() or "N/A"
    choice = " ".join(f"({'ABCDE'[i]}) {c}" for i, c in enumerate(choices))
    text = f"Context: {context}\nQuestion: {question}\nOptions: {choice}\n"
    return text.replace("  ", " ").strip()


@register_task
class ScienceQAImg(Task):
    name = "scienceqa_img"
    primary = "accuracy"
    files = "problems.json + pid_splits.json + images/test/<pid>/"

    def load(self, path):
        problems = []
        pfile = find_file(Path(path), "problems.json")
        root = pfile.parent
        all_problems = read_json(pfile)
        split = read_json(find_file(root, "pid_splits.json"))["test"]
        images = find_dir(root, "images/test", "test")

        def build(pid, prob):
            if prob is None:
                raise KeyError("problem")
            if not prob.get("image"):
                return None  # not an IMG question
            return Doc(id=pid, images=[str(images / pid / prob["image"])],
                       data={"hint": prob.get("hint") or "", "question": prob["question"],
                             "choices": list(prob["choices"]), "answer": "ABCDE"[int(prob["answer"])]},
                       category=prob.get("subject"))

        return collect(((str(pid), all_problems.get(str(pid))) for pid in split), build, problems), problems

    def settings(self, protocol):
        return family_table(self.name, protocol, _TABLE)

    def prompt(self, doc, protocol):
        d = doc.data
        if protocol.family in ("llava15", "uhd_v2"):
            return llava_cqm(d["hint"], d["question"], d["choices"]) + MCQ_SUFFIX
        options = option_lines(lettered(d["choices"]))
        if protocol.family == "lmms_eval":
            context = f"Context: {d['hint']}\n" if d["hint"] else ""
            return f"{context}{d['question']}\n{options}{MCQ_SUFFIX}"
        hint = f"{d['hint']}\n" if d["hint"] else ""
        return f"{hint}{d['question']}\n{options}{MCQ_SUFFIX}"

    def score(self, docs, predictions, protocol):
        parser = self.settings(protocol)["parser"]
        scores = {}
        for d in docs:
            options = lettered(d.data["choices"])
            found = mcq_extract(predictions[d.id], options, parser)
            scores[d.id] = float(found is not None and found in options and found == d.data["answer"])
        return {"primary": self.primary, "metrics": {"accuracy": mean(scores.values()), "n": len(scores)},
                "categories": per_category(docs, scores, "accuracy")}
