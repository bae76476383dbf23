"""Evaluation protocols: named, versioned records of every setting that moves a benchmark score.

Paper numbers fail to reproduce mostly through a hidden protocol detail (VLMEvalKit issues #554 and #1029, LLaVA #927
and #1835, lmms-eval #433 and #882: TextVQA 21.9 against 58.2, MME and POPE gaps): OCR tokens in the TextVQA prompt,
the box coordinate frame, the answer parser, the conversation format. A :class:`Protocol` names all of them;
:func:`record` (protocol plus the settings a task resolved from it) is written next to every score, and
:func:`differences` lists what two results disagree on, so a report can say when two numbers are not comparable.

Built-in protocols (``family`` is the key each task file looks up in its own small table):

* ``llava15`` -- LLaVA-1.5's ``scripts/v1_5/eval/*.sh`` (haotian-liu/LLaVA c121f043): ``<image>\\n`` before the
  text, the model's conversation template (``vicuna_v1`` for LLaVA-1.5), greedy, the ``--single-pred-prompt``
  MCQ suffix, TextVQA **with** OCR tokens, LLaVA's own answer parsers. Benchmarks LLaVA-1.5 has no script for
  follow the LLaVA-style script of the seed paper that has one (LLaVA-UHD v2 for DocVQA / ChartQA / AI2D,
  ConvLLaVA's ``evaluate_grounding.py`` for RefCOCO); each task file says which.
* ``lmms-eval`` -- lmms-eval 0.7.x task YAMLs and ``utils.py`` (EvolvingLMMs-Lab/lmms-eval 75571cfe): their
  ``lmms_eval_specific_kwargs["default"]`` prompts, ``generation_kwargs`` token limits and
  ``process_results`` scoring; TextVQA **without** OCR tokens; REC in the original-image frame.
* ``vlmevalkit`` -- VLMEvalKit (open-compass e8e78f05): the dataset ``build_prompt`` (VQA suffix
  ``\\nAnswer the question using a single word or phrase.``), its LLaVA wrapper's MCQ prompt, images inlined
  as ``" <image> "``, ``max_new_tokens=2048``, ``can_infer`` exact matching (no LLM judge). REC follows
  ConvLLaVA's script (the paper that used VLMEvalKit ran its own REC scorer).
* ``uhd-v2`` -- LLaVA-UHD v2's LLaVA-style scripts (thunlp/LLaVA-UHD ec06a5ba): ChartQA and DocVQA scored
  with ANLS (``STVQAANLSEvaluator``), AI2D by lower-cased equality, REC with unparsable answers skipped.

Decoding is always greedy (``do_sample=False, num_beams=1``): every reference above evaluates that way.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, get_type_hints

from ..errors import LoupeError
from ..validation import bounded, check_bounds, parse_text

__all__ = ["Protocol", "PROTOCOLS", "get_protocol", "record", "differences", "FAMILIES"]

FAMILIES = ("llava15", "lmms_eval", "vlmevalkit", "uhd_v2")


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol. ``None`` for ``max_new_tokens`` / ``ocr_tokens`` / ``coord_frame`` means
    "what the reference does for that benchmark" (the task resolves it and the resolved value is recorded)."""

    name: str
    version: str
    family: str  # which column of each task's table: llava15 | lmms_eval | vlmevalkit | uhd_v2
    source: str  # the reference code this reproduces
    chat_template: str = "model"  # "model": the saved processor's template; else a name in loupe.templates
    image_placement: Literal["newline", "inline"] = "newline"  # "newline": <image>\n then text (LLaVA, lmms-eval); "inline": " <image> "
    image_handling: str = "model"  # what the reference does to the image ("pad" = expand2square, ...); recorded
    ocr_tokens: bool | None = None  # TextVQA "Reference OCR token:" line
    do_sample: bool = False
    num_beams: int = bounded(1, min=1)
    temperature: float = bounded(0.0, min=0.0)
    max_new_tokens: int | None = bounded(None, min=1)
    coord_frame: Literal["padded_square", "original"] | None = None  # REC
    overrides: tuple = field(default=(), compare=False)

    @property
    def id(self) -> str:
        extra = "".join(f"+{k}={v}" for k, v in self.overrides)
        return f"{self.name}@{self.version}{extra}"

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = {k: v for k, v in self.overrides}
        d["id"] = self.id
        return d


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("llava15", "1", "llava15", "haotian-liu/LLaVA scripts/v1_5/eval (c121f043), model_vqa_loader.py",
                 image_handling="pad"),
        Protocol("lmms-eval", "1", "lmms_eval", "EvolvingLMMs-Lab/lmms-eval 0.7.x task YAMLs (75571cfe)",
                 image_handling="pad"),
        Protocol("vlmevalkit", "1", "vlmevalkit", "open-compass/VLMEvalKit (e8e78f05), vlm/llava/llava.py",
                 image_placement="inline", image_handling="pad"),
        Protocol("uhd-v2", "1", "uhd_v2", "thunlp/LLaVA-UHD branch LLaVA-UHD-v2 (ec06a5ba) llava/eval",
                 image_handling="model"),
    )
}

_HINTS = get_type_hints(Protocol)
_SETTABLE = {f.name: f for f in dataclasses.fields(Protocol) if f.name not in ("name", "version", "family",
                                                                             "source", "overrides")}


def _parse_value(key: str, text: str) -> Any:
    """A ``KEY=VALUE`` override parsed and checked against the :class:`Protocol` field's type and bounds
    (:func:`loupe.validation.parse_text`, the validation every Loupe configuration uses)."""
    low = text.strip().lower()
    if low == "default":
        text = "none"
    elif key == "coord_frame":
        text = low.replace("-", "_")
    where = f"protocol setting {key}"
    value = parse_text(_HINTS[key], text, where)
    check_bounds(Protocol, key, value, where)
    return value


def get_protocol(name: str | Protocol = "llava15", overrides: Iterable[str] = ()) -> Protocol:
    """A built-in protocol by name, with ``KEY=VALUE`` overrides (recorded in its id, e.g.
    ``llava15@1+ocr_tokens=False``). Unknown names or keys fail with the valid choices."""
    if isinstance(name, Protocol):
        proto = name
    else:
        key = str(name).strip()
        proto = PROTOCOLS.get(key) or PROTOCOLS.get(key.replace("_", "-"))
        if proto is None:
            raise LoupeError(f"unknown protocol {name!r}; built-in: {', '.join(PROTOCOLS)}")
    changes: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise LoupeError(f"a protocol override is KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if k not in _SETTABLE:
            raise LoupeError(f"unknown protocol setting {k!r}; settable: {', '.join(sorted(_SETTABLE))}")
        changes[k] = _parse_value(k, v)
    if not changes:
        return proto
    if changes.get("do_sample") or (changes.get("num_beams") or 1) != 1:
        raise LoupeError("Loupe evaluates with greedy decoding only (do_sample=false, num_beams=1)")
    merged = dict(proto.overrides)
    merged.update(changes)
    return dataclasses.replace(proto, **changes, overrides=tuple(sorted(merged.items())))


def record(protocol: Protocol, task_settings: dict[str, Any]) -> dict[str, Any]:
    """What is written next to a score: the protocol and the per-task settings resolved from it."""
    out = protocol.as_dict()
    out["task_settings"] = json.loads(json.dumps(task_settings, default=str))
    return out


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human-readable list of the settings two protocol records disagree on (empty: comparable)."""
    diffs = []
    skip = {"id", "source", "overrides", "version"}
    flat_a = {**{k: v for k, v in a.items() if k != "task_settings"}, **{f"task.{k}": v for k, v in
                                                                        a.get("task_settings", {}).items()}}
    flat_b = {**{k: v for k, v in b.items() if k != "task_settings"}, **{f"task.{k}": v for k, v in
                                                                        b.get("task_settings", {}).items()}}
    if a.get("version") != b.get("version") and a.get("name") == b.get("name"):
        diffs.append(f"version: {a.get('version')} vs {b.get('version')}")
    for key in sorted(set(flat_a) | set(flat_b)):
        if key in skip:
            continue
        if flat_a.get(key) != flat_b.get(key):
            diffs.append(f"{key}: {flat_a.get(key)!r} vs {flat_b.get(key)!r}")
    return diffs
