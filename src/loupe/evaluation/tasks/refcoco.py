"""``refcoco``: referring-expression comprehension (RefCOCO / + / g), Acc@0.5 with an explicit box frame.

Files: the per-split JSON-lines files ConvLLaVA's ``llava/eval/evaluate_grounding.py`` reads (InternVL's
``data/refcoco/refcoco_val.jsonl``, ``refcoco_testA.jsonl``, ``refcoco+_val.jsonl``, ``refcocog_test.jsonl``
...): ``{"image": "coco/train2014/x.jpg", "sent": "...", "bbox": [x1, y1, x2, y2] (pixels), "height", "width"}``,
image paths relative to the data folder. ``--data`` is one such file, or a folder (every ``*.jsonl`` in it is a
split). Category = split.

Prompts: ``llava15`` / ``vlmevalkit`` / ``uhd_v2``: LLaVA-1.5's REC training prompt, as ConvLLaVA evaluates
(``Please provide the bounding box coordinate of the region this sentence describes: {sent}.``); ``lmms_eval``:
its ``refcoco_bbox_rec_doc_to_text`` (format explained, values in [0, 1]).

[IMPORTANT] The frame the model's normalised box refers to: ``padded_square`` (ConvLLaVA, and the ``llava15`` /
``vlmevalkit`` protocols here: the paper that used VLMEvalKit ran ConvLLaVA's REC script) or ``original``
(lmms-eval, UHD v2); set it with ``--set coord_frame=...``. Unparsable answers count as wrong, except under
``uhd_v2``, whose ``eval_rec.py`` skips them (reported as ``skipped``).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import LoupeError
from ..metrics import rec_accuracy, rec_iou
from . import register_task
from .base import Doc, Task, collect, family_table, mean, per_category, read_jsonl, require

LLAVA_PROMPT = "Please provide the bounding box coordinate of the region this sentence describes: {}."
LMMS_PROMPT = ("Bounding box coordinates are specified in the format (top-left x, top-left y, bottom-right x, "
               "bottom-right y). All values are floating point numbers bounded between 0 and 1. Please provide "
               "the bounding box coordinate of the region this sentence describes: ")
_TABLE = {
    "llava15": {"prompt": "LLaVA-1.5 REC prompt", "frame": "padded_square", "parser": "convllava",
                "on_unparsable": "wrong", "max_new_tokens": 128},
    "vlmevalkit": {"prompt": "LLaVA-1.5 REC prompt", "frame": "padded_square", "parser": "convllava",
                   "on_unparsable": "wrong", "max_new_tokens": 128},
    "lmms_eval": {"prompt": "lmms-eval REC prompt", "frame": "original", "parser": "lmms_eval",
                  "on_unparsable": "wrong", "max_new_tokens": 1024},
    "uhd_v2": {"prompt": "LLaVA-1.5 REC prompt", "frame": "original", "parser": "uhd", "on_unparsable": "skip",
               "max_new_tokens": 128},
}


@register_task
class RefCOCO(Task):
    name = "refcoco"
    primary = "acc@0.5"
    files = "refcoco_<split>.jsonl (image, sent, bbox xyxy, height, width) + images"

    def load(self, path):
        problems, docs = [], []
        root = Path(path)
        files = [root] if root.is_file() else sorted(root.glob("*.jsonl"))
        if not files:
            raise LoupeError(f"no REC .jsonl files in {root}")
        for f in files:
            def build(rid, rec, split=f.stem, f=f):
                box = [float(v) for v in require(rec, "bbox")]
                if len(box) != 4:
                    raise LoupeError(f"bbox must have 4 numbers, got {len(box)}")
                image = Path(require(rec, "image"))
                if not image.is_absolute():
                    image = f.parent / image if (f.parent / image).exists() else f.parent / "images" / image
                return Doc(id=rid, images=[str(image)], category=split,
                           data={"sent": require(rec, "sent"), "bbox": box,
                                 "size": [int(require(rec, "width")), int(require(rec, "height"))]})

            docs += collect(((f"{f.stem}-{n}", rec) for n, rec in read_jsonl(f, problems)), build, problems)
        return docs, problems

    def settings(self, protocol):
        s = family_table(self.name, protocol, _TABLE)
        if protocol.coord_frame is not None:
            s["frame"] = protocol.coord_frame
        return s

    def prompt(self, doc, protocol):
        if protocol.family == "lmms_eval":
            return LMMS_PROMPT + doc.data["sent"]
        return LLAVA_PROMPT.format(doc.data["sent"])

    def score(self, docs, predictions, protocol):
        s = self.settings(protocol)
        scores, ious, unparsable = {}, [], 0
        for d in docs:
            args = (predictions[d.id], d.data["bbox"], d.data["size"], s["frame"])
            iou = rec_iou(*args, parser=s["parser"])
            unparsable += iou is None
            if iou is not None:
                ious.append(iou)
            scores[d.id] = rec_accuracy(*args, iou=0.5, parser=s["parser"], on_unparsable=s["on_unparsable"])
        kept = [v for v in scores.values() if v is not None]
        metrics = {"acc@0.5": mean(kept), "mean_iou_parsed": mean(ious), "unparsable": unparsable,
                   "skipped": len(scores) - len(kept), "n": len(scores)}
        return {"primary": self.primary, "metrics": metrics, "categories": per_category(docs, scores, "acc@0.5")}
