"""What a benchmark task is: published files in, prompts out, answers scored with the exact metrics.

A task (one small file per benchmark, lmms-eval's "YAML plus a few functions" shape) defines:

* ``load(path) -> (docs, problems)``: read the benchmark's **published** files from a local folder (nothing is
  downloaded); every malformed record (broken JSON line, missing field, missing image) becomes a
  :class:`Problem` naming its id (or line), and loading goes on;
* ``settings(protocol) -> dict``: the per-benchmark choices a protocol implies (prompt style, parser or metric
  variant, max new tokens, ...), written next to the score;
* ``prompt(doc, protocol) -> str``: the user text (the image goes where the protocol puts it);
* ``score(docs, predictions, protocol) -> dict``: ``{"primary", "metrics", "categories"}`` from the functions
  in :mod:`loupe.evaluation.metrics`.

A :class:`Doc` carries its images as absolute paths (or ``base64:`` strings for TSV benchmarks) and the
task's own fields in ``data``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ...errors import LoupeError

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
MCQ_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Doc:
    id: str
    images: list = field(default_factory=list)  # absolute paths, or "base64:..." strings
    data: dict = field(default_factory=dict)
    category: str | list | None = None  # a list counts the doc in several categories (DocVQA question types)


@dataclass
class Problem:
    id: str
    reason: str

    def as_dict(self) -> dict:
        return {"id": self.id, "reason": self.reason}


class Task:
    """Base class; subclasses set ``name``, ``primary`` and ``files`` (a one-line layout description)."""

    name = ""
    primary = ""
    files = ""

    def load(self, path: Path) -> tuple[list[Doc], list[Problem]]:
        raise NotImplementedError

    def settings(self, protocol) -> dict[str, Any]:
        raise NotImplementedError

    def prompt(self, doc: Doc, protocol) -> str:
        raise NotImplementedError

    def score(self, docs: list[Doc], predictions: Mapping[str, str], protocol) -> dict[str, Any]:
        raise NotImplementedError

    def max_new_tokens(self, protocol) -> int:
        if protocol.max_new_tokens is not None:
            return int(protocol.max_new_tokens)
        return int(self.settings(protocol)["max_new_tokens"])


# --- reading published files -------------------------------------------------------------------------
def find_file(root: Path, *names: str) -> Path:
    """``root`` itself if it is a file, else the first of ``names`` found in ``root`` or one level below."""
    root = Path(root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise LoupeError(f"data path not found: {root}")
    for name in names:
        for cand in [root / name, *sorted(root.glob(f"*/{name}"))]:
            if cand.is_file():
                return cand
    raise LoupeError(f"none of {', '.join(names)} found in {root}")


def find_dir(root: Path, *names: str) -> Path:
    """The first existing sub-folder of ``root`` among ``names`` (``root`` itself if none exists)."""
    root = Path(root)
    base = root if root.is_dir() else root.parent
    for name in names:
        if (base / name).is_dir():
            return base / name
    return base


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LoupeError(f"{path} is not valid JSON: {e}") from None


def read_jsonl(path: Path, problems: list[Problem]) -> list[tuple[int, dict]]:
    """``(line number, record)`` for every parsable line; a broken line becomes a Problem ``line N``."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(Problem(f"{Path(path).name}:line {n}", f"broken JSON line: {e.msg}"))
                continue
            if not isinstance(rec, dict):
                problems.append(Problem(f"{Path(path).name}:line {n}", "a JSON line that is not an object"))
                continue
            out.append((n, rec))
    return out


def collect(items: Iterable[tuple[str, Any]], build: Callable[[str, Any], Doc | None],
            problems: list[Problem]) -> list[Doc]:
    """Run ``build(id, raw)`` on each item; a missing field or a missing image file becomes a Problem."""
    docs = []
    for rid, raw in items:
        try:
            doc = build(rid, raw)
        except KeyError as e:
            problems.append(Problem(str(rid), f"missing field {e.args[0]!r}"))
            continue
        except (LoupeError, TypeError, ValueError) as e:
            problems.append(Problem(str(rid), str(e)))
            continue
        if doc is None:
            continue
        missing = [p for p in doc.images if not str(p).startswith("base64:") and not Path(p).is_file()]
        if missing:
            problems.append(Problem(doc.id, f"image not found: {missing[0]}"))
            continue
        docs.append(doc)
    return docs


def require(raw: Mapping, key: str) -> Any:
    """``raw[key]``, treating None / "" as missing (KeyError, reported as a malformed record)."""
    value = raw[key]
    if value is None or (isinstance(value, str) and not value.strip()) or value == []:
        raise KeyError(key)
    return value


# --- prompts and scores ------------------------------------------------------------------------------
def option_lines(options: Mapping[str, Any], sep: str = "\n") -> str:
    return sep.join(f"{k}. {v}" for k, v in options.items())


def lettered(choices: Iterable[Any]) -> dict[str, Any]:
    return {LETTERS[i]: c for i, c in enumerate(choices)}


def mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else float("nan")


def per_category(docs: list[Doc], scores: Mapping[str, float], metric: str) -> dict[str, dict[str, float]]:
    """``{category: {metric: mean, "n": count}}`` over docs that have a score (None scores are skipped)."""
    by: dict[str, list[float]] = defaultdict(list)
    for d in docs:
        s = scores.get(d.id)
        if s is None or d.category is None:
            continue
        for cat in d.category if isinstance(d.category, (list, tuple)) else [d.category]:
            by[str(cat)].append(s)
    return {c: {metric: mean(v), "n": len(v)} for c, v in sorted(by.items())}


def family_table(task: str, protocol, table: Mapping[str, dict]) -> dict[str, Any]:
    try:
        return dict(table[protocol.family])
    except KeyError:
        raise LoupeError(f"task {task!r} has no settings for protocol family {protocol.family!r}") from None
