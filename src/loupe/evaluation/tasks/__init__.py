"""Benchmark tasks, one small file each, registered by name where they are defined.

=================  ===========================================================  ===============================
task               published files read (a local folder; nothing is downloaded)  primary score
=================  ===========================================================  ===============================
``textvqa``        LLaVA ``llava_textvqa_val_v051_ocr.jsonl`` + ``TextVQA_0.5.1_val.json``  VQA accuracy
``docvqa``         ``val_v1.0_withQT.json`` (or ``val_v1.0.json``) + ``documents/``     ANLS
``chartqa``        ``test/test_human.json``, ``test/test_augmented.json``, ``test/png/``  relaxed accuracy / ANLS
``ocrbench``       ``OCRBench.json`` + ``OCRBench_Images/``                            Final Score (/1000)
``ai2d``           ``questions/*.json`` + ``images/`` (+ ``ai2d_test_ids.csv``)         accuracy
``scienceqa_img``  ``problems.json`` + ``pid_splits.json`` + ``images/test/<pid>/``     IMG accuracy
``mmbench``        ``MMBench_DEV_EN.tsv`` (base64 images, circular copies)             CircularEval accuracy
``mme``            ``MME_Benchmark_release_version/<category>/`` (txt + images)         perception score
``pope``           ``coco_pope_{adversarial,popular,random}.json`` + ``val2014/``        F1
``seedbench``      ``SEED-Bench.json`` + ``SEED-Bench-image/`` (image part)             accuracy
``realworldqa``    ``annotations.json`` (image, question, answer) + images              accuracy
``refcoco``        ``refcoco_{val,testA,testB}.jsonl`` (InternVL / ConvLLaVA format)    Acc@0.5
``loupe_synth``    ``test.json`` + ``images/`` from :func:`loupe.data.synth.generate`   exact match
=================  ===========================================================  ===============================
"""

from __future__ import annotations

from ...errors import LoupeError
from .base import Doc, Problem, Task

TASKS: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    if cls.name in TASKS:
        raise LoupeError(f"task {cls.name!r} is registered twice")
    TASKS[cls.name] = cls()
    return cls


def get_task(name: str) -> Task:
    key = name.strip().lower().replace("-", "_")
    key = {"sqa": "scienceqa_img", "scienceqa": "scienceqa_img", "seed": "seedbench", "rwqa": "realworldqa",
           "synth": "loupe_synth"}.get(key, key)
    try:
        return TASKS[key]
    except KeyError:
        raise LoupeError(f"unknown task {name!r}; tasks: {', '.join(sorted(TASKS))}") from None


from . import (  # noqa: E402,F401  (each module registers its task)
    ai2d, chartqa, docvqa, loupe_synth, mmbench, mme, ocrbench, pope, realworldqa, refcoco, scienceqa, seedbench,
    textvqa,
)

__all__ = ["TASKS", "Doc", "Problem", "Task", "get_task", "register_task"]
