"""Tiny copies of each benchmark's published files, in the official schema, for tests and smoke runs.

``write_fixture(task, root)`` writes a few records (with small generated images) in exactly the layout the
task's loader reads -- the same file names, fields and nesting as the real release -- and returns the path to
pass as ``--data``. ``oracle(task, doc)`` is the answer a perfect model would give (the ground truth in the
form the reference parser accepts), used to check that every task scores a perfect model as perfect.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

SHORT = "\nAnswer the question using a single word or phrase."


def _png(path: Path, w: int = 40, h: int = 30, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _png_bytes(w: int = 40, h: int = 30, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def textvqa(root: Path) -> Path:
    qs = [("img1", "what is written on the sign?", ["stop"] * 10, ["STOP", "sign"]),
          ("img1", "what color is the sign?", ["red"] * 8 + ["dark red"] * 2, ["STOP"]),
          ("img2", "what brand is this?", ["sony"] * 10, [])]
    lines, data = [], []
    for k, (img, q, answers, ocr) in enumerate(qs):
        _png(root / "train_images" / f"{img}.jpg", seed=k)
        text = q + (f"\nReference OCR token: {', '.join(ocr)}" if ocr else "") + SHORT
        lines.append({"question_id": img, "image": f"{img}.jpg", "text": text})
        data.append({"question": q, "image_id": img, "image_classes": ["Sign"], "flickr_original_url": "",
                     "flickr_300k_url": "", "image_width": 40, "image_height": 30, "answers": answers,
                     "question_tokens": q.split(), "question_id": 34602 + k, "set_name": "val"})
    _jsonl(root / "llava_textvqa_val_v051_ocr.jsonl", lines)
    (root / "TextVQA_0.5.1_val.json").write_text(json.dumps(
        {"dataset_name": "textvqa", "dataset_type": "val", "dataset_version": "0.5.1", "data": data}))
    return root


def docvqa(root: Path) -> Path:
    val = root / "val"
    data = []
    for k, (q, a, types) in enumerate([("What is the date?", ["1/2/1990", "January 2, 1990"], ["form"]),
                                       ("Who signed the letter?", ["J. Smith"], ["handwritten", "layout"])]):
        _png(val / "documents" / f"doc{k}.png", seed=k)
        data.append({"questionId": 5000 + k, "question": q, "question_types": types,
                     "image": f"documents/doc{k}.png", "docId": k, "ucsf_document_id": f"u{k}",
                     "ucsf_document_page_no": "1", "answers": a, "data_split": "val"})
    (val / "val_v1.0_withQT.json").write_text(json.dumps(
        {"dataset_name": "docvqa", "dataset_split": "val", "dataset_version": "1.0", "data": data}))
    return root


def chartqa(root: Path) -> Path:
    test = root / "test"
    for split, rows in (("human", [("What is the highest value?", "45"), ("Which year is lowest?", "2010")]),
                        ("augmented", [("What is the share of A?", "12.5")])):
        recs = []
        for k, (q, label) in enumerate(rows):
            name = f"{split}_{k}.png"
            _png(test / "png" / name, seed=k)
            recs.append({"imgname": name, "query": q, "label": label})
        (test / f"test_{split}.json").write_text(json.dumps(recs))
    return root


def ocrbench(root: Path) -> Path:
    rows = [("IIIT5K", "what is written in the image?", ["STOP"], "Regular Text Recognition"),
            ("HME100k", "Please write out the expression of the formula in the image using LaTeX format.",
             ["x ^ { 2 }"], "Handwritten Mathematical Expression Recognition"),
            ("docVQA", "What is the title?", ["Annual Report"], "Doc-oriented VQA")]
    recs = []
    for k, (ds, q, a, t) in enumerate(rows):
        _png(root / "OCRBench_Images" / ds / f"{k}.png", seed=k)
        recs.append({"dataset_name": ds, "id": k, "image_path": f"{ds}/{k}.png", "question": q, "answers": a,
                     "type": t})
    (root / "OCRBench.json").write_text(json.dumps(recs))
    return root


def ai2d(root: Path) -> Path:
    for k in range(2):
        _png(root / "images" / f"{k}.png", seed=k)
        qs = {f"Which stage comes after stage {k}?": {
            "abcLabel": False, "answerTexts": ["egg", "larva", "pupa", "adult"], "correctAnswer": (k + 1) % 4,
            "questionId": f"{k}.png-0"}}
        if k == 0:
            qs["What does label A show?"] = {"abcLabel": True, "answerTexts": ["sun", "moon"], "correctAnswer": 0,
                                             "questionId": f"{k}.png-1"}
        (root / "questions").mkdir(parents=True, exist_ok=True)
        (root / "questions" / f"{k}.png.json").write_text(json.dumps({"imageName": f"{k}.png", "questions": qs}))
    (root / "categories.json").write_text(json.dumps({"0.png": "lifeCycles", "1.png": "partsOfA"}))
    return root


def scienceqa(root: Path) -> Path:
    base = {"task": "closed choice", "grade": "grade4", "topic": "t", "category": "c", "skill": "s",
            "lecture": "", "solution": "", "split": "test"}
    problems = {
        "10": dict(base, question="Which animal is a mammal?", choices=["frog", "dog", "snake"], answer=1,
                   hint="Look at the picture.", image="image.png", subject="natural science"),
        "11": dict(base, question="Which word is a noun?", choices=["run", "table"], answer=1, hint="",
                   image="image.png", subject="language science"),
        "12": dict(base, question="Text-only question?", choices=["yes", "no"], answer=0, hint="", image=None,
                   subject="social science"),
    }
    for pid in ("10", "11"):
        _png(root / "images" / "test" / pid / "image.png", seed=int(pid))
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps({"train": [], "val": [], "test": ["10", "11", "12"]}))
    return root


def mmbench(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cols = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
            "l2-category", "comment", "split"]
    img0, img1 = base64.b64encode(_png_bytes(seed=1)).decode(), base64.b64encode(_png_bytes(seed=2)).decode()
    opts = ["cat", "dog", "bird"]
    rows = []
    for k in range(3):  # question 0 and its two rotations (answer "dog")
        rot = opts[k:] + opts[:k]
        rows.append([k * 1000000, "Which animal is shown?", "The image shows a pet.", *rot, "",
                     "ABC"[rot.index("dog")], "attribute_recognition", img0 if k == 0 else "0", "s",
                     "finegrained_perception", "", "dev"])
    rows.append([1, "What is the weather?", "", "sunny", "rainy", "", "", "A", "scene", img1, "s",
                 "coarse_perception", "", "dev"])
    with open(root / "MMBench_DEV_EN.tsv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(cols)
        w.writerows(rows)
    return root


def mme(root: Path) -> Path:
    base = root / "MME_Benchmark_release_version"
    _png(base / "existence" / "000000006040.jpg", seed=1)
    (base / "existence" / "000000006040.txt").write_text(
        "Is there a train in this image? Please answer yes or no.\tYes\n"
        "Is there a bed in this image? Please answer yes or no.\tNo\n")
    _png(base / "artwork" / "images" / "10002.jpg", seed=2)
    (base / "artwork" / "questions_answers_YN").mkdir(parents=True, exist_ok=True)
    (base / "artwork" / "questions_answers_YN" / "10002.txt").write_text(
        "Is this artwork created by da Vinci? Please answer yes or no.\tNo\n"
        "Is this artwork created by Monet? Please answer yes or no.\tYes\n")
    _png(base / "code_reasoning" / "0001.png", seed=3)
    (base / "code_reasoning" / "0001.txt").write_text(
        "The image shows a python code. Will the number 3 appear in the output? Please answer yes or no.\tYes\n"
        "The image shows a python code. Will the number 7 appear in the output? Please answer yes or no.\tNo\n")
    return root


def pope(root: Path) -> Path:
    for k in range(2):
        _png(root / "val2014" / f"COCO_val2014_00000000000{k}.jpg", seed=k)
    for split, objs in (("random", ["dog", "car"]), ("popular", ["person", "chair"]), ("adversarial", ["cup", "fork"])):
        rows = []
        for k, obj in enumerate(objs):
            rows.append({"question_id": k + 1, "image": f"COCO_val2014_00000000000{k}.jpg",
                         "text": f"Is there a {obj} in the image?", "label": "yes" if k == 0 else "no"})
        _jsonl(root / "coco" / f"coco_pope_{split}.json", rows)
    return root


def seedbench(root: Path) -> Path:
    qs = []
    for k in range(3):
        _png(root / "SEED-Bench-image" / f"{k}.jpg", seed=k)
        qs.append({"answer": "ABCD"[k], "choice_a": "a tree", "choice_b": "a car", "choice_c": "a dog",
                   "choice_d": "a cup", "data_id": f"{k}.jpg", "data_type": "image",
                   "question": f"What is in region {k}?", "question_id": str(100 + k), "question_type_id": 1 + k % 2})
    qs.append({"answer": "A", "choice_a": "x", "choice_b": "y", "choice_c": "z", "choice_d": "w",
               "data_id": "v1.mp4", "data_type": "video", "question": "What happens next?", "question_id": "900",
               "question_type_id": 10})
    (root / "SEED-Bench.json").write_text(json.dumps(
        {"question_type": {"Scene Understanding": 1, "Instance Identity": 2, "Action Recognition": 10},
         "questions": qs}))
    return root


def realworldqa(root: Path) -> Path:
    recs = [{"image": "images/0.png", "question": "In which direction is the car facing?\n\nA. Left\nB. Straight\n"
             "C. Right\n\nPlease answer directly with only the letter of the correct option and nothing else.",
             "answer": "B"},
            {"image": "images/1.png", "question": "How many lanes are there? Please answer directly with a single "
             "word or number.", "answer": "2"}]
    for k in range(2):
        _png(root / "images" / f"{k}.png", seed=k)
    (root / "annotations.json").write_text(json.dumps(recs))
    return root


def refcoco(root: Path) -> Path:
    rows = []
    for k, (w, h, box) in enumerate([(64, 24, [2.0, 2.0, 20.0, 20.0]), (24, 64, [3.0, 5.0, 21.0, 25.0])]):
        rel = f"coco/train2014/COCO_train2014_00000000000{k}.jpg"
        _png(root / rel, w, h, seed=k)
        rows.append({"image": rel, "sent": ["left dog", "red car"][k], "bbox": box, "height": h, "width": w})
    _jsonl(root / "refcoco_val.jsonl", rows)
    return root


def loupe_synth(root: Path) -> Path:
    from ..data.synth import SynthConfig, generate

    generate(root, SynthConfig(n_train=0, n_test=3, sizes=[[64, 64], [96, 64]]))
    return root


WRITERS = {"textvqa": textvqa, "docvqa": docvqa, "chartqa": chartqa, "ocrbench": ocrbench, "ai2d": ai2d,
           "scienceqa_img": scienceqa, "mmbench": mmbench, "mme": mme, "pope": pope, "seedbench": seedbench,
           "realworldqa": realworldqa, "refcoco": refcoco, "loupe_synth": loupe_synth}


def write_fixture(task: str, root: str | Path) -> Path:
    return WRITERS[task](Path(root))


def oracle(task: str, doc, protocol) -> str:
    """What a perfect model answers for ``doc`` (in the form the protocol's parser reads)."""
    d = doc.data
    if task in ("textvqa", "docvqa"):
        return d["answers"][0]
    if task == "chartqa":
        return d["label"]
    if task == "ocrbench":
        return d["answers"][0] if isinstance(d["answers"], list) else d["answers"]
    if task in ("ai2d", "scienceqa_img", "mmbench", "seedbench", "realworldqa", "loupe_synth"):
        return d["answer"]
    if task == "mme":
        return d["answer"]
    if task == "pope":
        return d["label"].capitalize() if protocol.family != "lmms_eval" else d["label"]
    if task == "refcoco":
        from .tasks import get_task

        frame = get_task("refcoco").settings(protocol)["frame"]
        (x1, y1, x2, y2), (w, h) = d["bbox"], d["size"]
        if frame == "original":
            vals = [x1 / w, y1 / h, x2 / w, y2 / h]
        else:
            side = max(w, h)
            ox, oy = (side - w) // 2, (side - h) // 2
            vals = [(x1 + ox) / side, (y1 + oy) / side, (x2 + ox) / side, (y2 + oy) / side]
        return "[" + ", ".join(f"{v:.3f}" for v in vals) + "]"
    raise KeyError(task)
