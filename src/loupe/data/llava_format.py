"""LLaVA-format training data: records -> (input_ids, labels, pixel_values, image_sizes), bad records counted.

The format (LLaVA ``LazySupervisedDataset``; a JSON list or JSONL, one record per line)::

    {"id": "000123", "image": "coco/train2017/000123.jpg",          # or a list of paths, or absent (text-only)
     "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"}, {"from": "gpt", "value": "A cat."}]}

Tokenisation (fixes pain point 9, LLaVA's silent "tokenization mismatch"): roles map human->user, gpt->assistant,
system->system; the conversation is rendered and tokenised by the chat template's own
``apply_chat_template(..., return_assistant_tokens_mask=True)`` (``{% generation %}`` markers,
:mod:`loupe.templates`), so exactly the assistant answers and their end-of-turn token carry labels; all else is
-100. Each ``<image>`` token is then expanded to the processor's exact visual-token count for that image (the
same :class:`~loupe.geometry.ImageGeometry` arithmetic the processor and the model use), which is token-for-token
what ``processor(images, text=rendered, add_special_tokens=False)`` gives (tested), so label positions line up.
A record with images but no ``<image>`` gets ``<image>\\n`` per image at the start of its first user turn
(LLaVA's ``preprocess_multimodal`` puts the image first too).

Length: sequences longer than ``max_length`` are cut at the end (as LLaVA cuts to ``tokenizer_model_max_length`` after
image expansion, ``prepare_inputs_labels_for_multimodal`` in ``llava/model/llava_arch.py``), but never inside or
before an image span: such a sample is dropped as ``too_long``; one left without any label is dropped as
``no_labels``.

Bad records — design choice: **a fast upfront pass plus lazy checks, both counted**, one per record
*position* (file line or list index; LLaVA's data mixes repeat ids, so ids alone would undercount), each
reported with its id.

* Upfront (at construction, pure Python plus one ``stat`` per image; ~1 s per 100k records): unparsable JSONL
  lines, records that are not mappings, missing/ill-typed ``conversations``, unknown roles, no assistant turn,
  ``<image>`` count != image count, image files that do not exist. These are removed from the index.
* Lazy (in ``__getitem__``): images that fail to decode (:func:`loupe.images.load_image` raises
  :class:`~loupe.errors.LoupeError`), an image the slicer or processor refuses (any ``LoupeError`` while
  slicing or tokenising: an over-large canvas, an extreme aspect ratio), the template dropping an ``<image>``, ``too_long``, ``no_labels``. The item
  becomes a small marker ``{"loupe_bad": (position, id, kind, message)}`` that the collator drops and forwards in the
  batch, so the counts travel with the batch to the training process — correct with DataLoader workers > 0 and
  under DDP (the trainer gathers them across ranks at the end of a stage).

:class:`BadRecords` keeps the ids and reasons; the first 20 (then every 100th) get a ``logging`` warning with a
running count, and the stage ends with a summary naming every bad id (``bad_records.json``). ``on_bad_record:
fail`` raises at the first bad record instead; ``max_bad_fraction`` fails a run whose share of bad records is
higher (checked upfront, during training after 200 records, and at the end).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import LoupeError
from ..tokens import fill_spans, num_positions
from ..images import load_image
from ..templates import get_template

log = logging.getLogger("loupe.data")

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
IMAGE = "<image>"
IGNORE_INDEX = -100


# --- bad-record accounting -----------------------------------------------------------------------------------
@dataclass
class BadRecords:
    """Skipped records, one entry per record *position* (``train.jsonl:17`` for a JSONL line,
    ``train.json#16`` for the 17th element of a JSON list): LLaVA's data mixes repeat ids, so eight broken
    lines sharing one id count as eight. ``records`` maps each position to ``(id, kind, message)``;
    ``seen`` counts records looked at."""

    seen: int = 0
    records: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    warn_first: int = 20

    def add(self, pos: str, rid: str, kind: str, message: str, fail: bool = False) -> None:
        if fail:
            raise LoupeError(f"bad training record {rid!r} at {pos} ({kind}): {message} "
                             "(data.on_bad_record is 'fail')")
        new = pos not in self.records
        self.records.setdefault(pos, (rid, kind, message))
        n = len(self.records)
        if new and (n <= self.warn_first or n % 100 == 0):
            log.warning("skipped record %r at %s (%s): %s [%d skipped so far]", rid, pos, kind, message, n)

    def merge(self, other: "BadRecords") -> None:
        self.seen += other.seen
        for k, v in other.records.items():
            self.records.setdefault(k, tuple(v))

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        """The distinct ids of the bad records (several positions may share one)."""
        return sorted({rid for rid, _, _ in self.records.values()})

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(kind for _, kind, _ in self.records.values()))

    def fraction(self, total: int | None = None) -> float:
        total = self.seen if total is None else total
        return len(self.records) / total if total else 0.0

    def summary(self, total: int | None = None) -> str:
        if not self.records:
            return f"no bad records among {total if total is not None else self.seen} read"
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
        items = sorted(self.records.items(), key=lambda kv: _position_key(kv[0]))
        shown = ", ".join(f"{rid} ({pos})" for pos, (rid, _, _) in items[:50]) + (" ..." if len(items) > 50 else "")
        return (f"skipped {len(self.records)} bad record(s) of {total if total is not None else self.seen} "
                f"({kinds}; {len(self.ids)} distinct id(s)): {shown}")

    def to_json(self) -> dict:
        items = sorted(self.records.items(), key=lambda kv: _position_key(kv[0]))
        return {"seen": self.seen, "bad": len(self.records), "counts": self.counts, "ids": self.ids,
                "records": {pos: {"id": rid, "kind": kind, "message": msg} for pos, (rid, kind, msg) in items}}

    @classmethod
    def from_json(cls, d: dict) -> "BadRecords":
        return cls(seen=int(d.get("seen", 0)),
                   records={pos: (v["id"], v["kind"], v["message"]) for pos, v in d.get("records", {}).items()})


def _position_key(pos: str):
    """``file:12`` / ``file#3`` sorted by file, then by number."""
    for sep in (":", "#"):
        head, _, tail = pos.rpartition(sep)
        if head and tail.isdigit():
            return (head, int(tail))
    return (pos, -1)


# --- reading and checking records ------------------------------------------------------------------------------
def _read_text(p: Path) -> str:
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise LoupeError(f"{p}: not UTF-8 text (byte {raw[e.start]:#04x} at line {line}, offset {e.start}); "
                         f"LLaVA JSON/JSONL data must be UTF-8 (re-encode it, e.g. iconv -t UTF-8)") from None
    return text[1:] if text.startswith("\ufeff") else text  # a UTF-8 byte-order mark (Windows editors)


def read_records(path: str | Path) -> tuple[list[tuple[str, str, Any]], list[tuple[str, str, str, str]]]:
    """``([(position, id, record)], [(position, id, kind, message)])`` from a JSON list or a JSONL file.

    A position is ``NAME:LINE`` (JSONL, 1-based) or ``NAME#INDEX`` (JSON list, 0-based). The file must be
    UTF-8 (a byte-order mark is skipped); otherwise a :class:`LoupeError` names the file and the line.
    """
    p = Path(path)
    if not p.is_file():
        raise LoupeError(f"training data file not found: {p}")
    text = _read_text(p)
    good, bad = [], []
    if p.suffix == ".jsonl" or not text.lstrip().startswith("["):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            pos = f"{p.name}:{i}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                bad.append((pos, pos, "malformed", f"line {i} is not valid JSON: {e.msg}"))
                continue
            good.append((pos, _rid(rec, pos), rec))
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LoupeError(f"{p} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                             "use JSONL to let single bad lines be skipped") from None
        if not isinstance(data, list):
            raise LoupeError(f"{p}: a LLaVA JSON file holds a list of records, got {type(data).__name__}")
        good = [(f"{p.name}#{i}", _rid(rec, f"{p.name}#{i}"), rec) for i, rec in enumerate(data)]
    return good, bad


def _rid(rec, fallback: str) -> str:
    if isinstance(rec, dict) and isinstance(rec.get("id"), (str, int)):
        return str(rec["id"])
    return fallback


def parse_record(rec: Any, image_root: Path | None) -> tuple[list[dict], list[Path]]:
    """``(messages, image_paths)`` of a record, or :class:`LoupeError` saying what is malformed."""
    if not isinstance(rec, dict):
        raise LoupeError(f"a record must be a mapping, got {type(rec).__name__}")
    convs = rec.get("conversations")
    if not isinstance(convs, list) or not convs:
        raise LoupeError("'conversations' must be a non-empty list of {from, value} turns")
    messages = []
    for i, turn in enumerate(convs):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or turn.get("from") not in ROLES:
            raise LoupeError(f"turn {i} must be {{'from': human|gpt|system, 'value': str}}, got {str(turn)[:80]}")
        messages.append({"role": ROLES[turn["from"]], "content": turn["value"]})
    if not any(m["role"] == "assistant" for m in messages):
        raise LoupeError("no gpt/assistant turn: nothing to learn from")
    if any(IMAGE in m["content"] for m in messages if m["role"] != "user"):
        raise LoupeError(f"{IMAGE} appears outside a human turn")
    img = rec.get("image")
    if img is None:
        paths = []
    elif isinstance(img, str):
        paths = [img]
    elif isinstance(img, list) and all(isinstance(x, str) for x in img):
        paths = list(img)
    else:
        raise LoupeError(f"'image' must be a path or a list of paths, got {str(img)[:80]}")
    n_ph = sum(m["content"].count(IMAGE) for m in messages)
    if paths and n_ph == 0:
        first = next(i for i, m in enumerate(messages) if m["role"] == "user") if any(
            m["role"] == "user" for m in messages) else None
        if first is None:
            raise LoupeError("images given but no human turn to put them in")
        messages[first] = {"role": "user", "content": (IMAGE + "\n") * len(paths) + messages[first]["content"]}
    elif n_ph != len(paths):
        raise LoupeError(f"{n_ph} {IMAGE} placeholder(s) for {len(paths)} image(s)")
    root = image_root or Path(".")
    return messages, [Path(x) if os.path.isabs(x) else root / x for x in paths]


# --- tokenising one sample -------------------------------------------------------------------------------------
def encode_sample(processor, messages: list[dict], images: list, template: str | None, max_length: int) -> dict:
    """Tokenise one conversation with its images; raise :class:`LoupeError` (with a ``kind``) if unusable.

    Returns ``input_ids`` and ``labels`` (1-D long tensors, -100 outside assistant answers and on image
    tokens) and, when there are images, ``pixel_values`` (tiles, 3, h, w) and ``image_sizes`` (n, 2).
    """
    tok = processor.tokenizer
    chat_template = get_template(template) if template else None
    enc = tok.apply_chat_template(
        messages, chat_template=chat_template, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    image_id = processor.image_token_id
    out: dict[str, Any] = {}
    counts: list[int] = []
    plans: list = []
    if images:
        feats, layouts = processor.image_processor.process(images)
        plans = [processor.image_processor.geometry.token_plan(lay) for lay in layouts]
        counts = [num_positions(p) for p in plans]
        out["pixel_values"], out["image_sizes"] = feats["pixel_values"], feats["image_sizes"]
    n_slots = ids.count(image_id)
    if n_slots != len(counts):
        raise SampleError("template", f"the chat template rendered {n_slots} {IMAGE} for {len(counts)} image(s)")
    full_ids, labels, k = [], [], 0
    for t, m in zip(ids, mask):
        if t == image_id:
            full_ids += [image_id] * counts[k]
            labels += [IGNORE_INDEX] * counts[k]
            k += 1
        else:
            full_ids.append(t)
            labels.append(t if m else IGNORE_INDEX)
    if len(full_ids) > max_length:
        last_image = max((i for i, t in enumerate(full_ids) if t == image_id), default=-1)
        if last_image >= max_length:
            raise SampleError("too_long", f"{len(full_ids)} tokens with an image ending at {last_image + 1}, over "
                              f"max_length {max_length}; not cut inside an image")
        full_ids, labels = full_ids[:max_length], labels[:max_length]
    full_ids = fill_spans(full_ids, plans, image_id, tok)  # the plans' text positions (labels stay -100)
    if all(x == IGNORE_INDEX for x in labels[1:]):
        raise SampleError("no_labels", f"no assistant token left within max_length {max_length}")
    out["input_ids"] = torch.tensor(full_ids, dtype=torch.long)
    out["labels"] = torch.tensor(labels, dtype=torch.long)
    return out


class SampleError(LoupeError):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# --- the dataset -----------------------------------------------------------------------------------------------
class LlavaDataset(Dataset):
    """A LLaVA JSON/JSONL file as a map-style dataset for :class:`~loupe.data.collator.LlavaCollator`.

    ``lengths[i]`` (an estimate: words x 1.3 + visual tokens of a tile-sized image) and ``is_multimodal[i]``
    drive :class:`~loupe.training.sampler.ModalityLengthGroupedSampler`.
    """

    def __init__(self, path, processor, template: str | None = None, image_root=None, max_length: int = 2048,
                 on_bad_record: str = "skip", check_files: bool = True, bad: BadRecords | None = None):
        self.path = Path(path)
        self.processor = processor
        self.template = template
        self.max_length = max_length
        self.fail = on_bad_record == "fail"
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        tmpl = get_template(template) if template else (getattr(processor.tokenizer, "chat_template", None) or "")
        if "generation" not in tmpl:  # without {% generation %} every sample would silently have no labels
            raise LoupeError(
                "the chat template has no {% generation %} markers, so assistant answers cannot be found for the "
                "labels; set data.template to one of loupe.templates (vicuna_v1, llama3, chatml, plain, tiny)"
            )
        self.upfront = bad if bad is not None else BadRecords()
        records, broken = read_records(self.path)
        self.upfront.seen = len(records) + len(broken)
        for pos, rid, kind, msg in broken:
            self.upfront.add(pos, rid, kind, msg, fail=self.fail)
        self.items: list[tuple[str, str, list[dict], list[Path]]] = []  # (position, id, messages, image paths)
        for pos, rid, rec in records:
            try:
                messages, paths = parse_record(rec, self.image_root)
            except LoupeError as e:
                self.upfront.add(pos, rid, "malformed", str(e), fail=self.fail)
                continue
            missing = [p for p in paths if check_files and not p.is_file()]
            if missing:
                self.upfront.add(pos, rid, "missing_image", f"image file not found: {missing[0]}", fail=self.fail)
                continue
            self.items.append((pos, rid, messages, paths))
        per_image = _nominal_image_tokens(processor)
        self.lengths = [int(1.3 * sum(len(m["content"].split()) for m in msgs)) + per_image * len(paths) + 8
                        for _, _, msgs, paths in self.items]
        self.is_multimodal = [bool(paths) for _, _, _, paths in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        pos, rid, messages, paths = self.items[i]
        try:
            images = [load_image(p, max_pixels=self.processor.image_processor.max_image_pixels) for p in paths]
        except LoupeError as e:
            return self._bad(pos, rid, "bad_image", str(e))
        except (OSError, Image.DecompressionBombError) as e:  # PIL/OS failures load_image did not translate
            return self._bad(pos, rid, "bad_image", f"cannot read image: {type(e).__name__}: {e}")
        try:
            item = encode_sample(self.processor, messages, images, self.template, self.max_length)
        except SampleError as e:
            return self._bad(pos, rid, e.kind, str(e))
        except LoupeError as e:  # the slicer/processor refused an image (size, aspect, canvas), or the tokenizer
            return self._bad(pos, rid, "bad_image" if images else "bad_sample", str(e))
        item["id"] = rid
        return item

    def _bad(self, pos: str, rid: str, kind: str, message: str) -> dict:
        if self.fail:
            raise LoupeError(f"bad training record {rid!r} at {pos} ({kind}): {message} "
                             "(data.on_bad_record is 'fail')")
        return {"loupe_bad": (pos, rid, kind, message)}


def _nominal_image_tokens(processor) -> int:
    tile = processor.image_processor.slicer.get("tile_size", 336)
    side = tile if isinstance(tile, int) else int(tile[0])
    try:
        return int(processor.image_processor.geometry.num_tokens((side, side)))
    except Exception:  # an estimate only (sorting), never worth a crash
        return 576


# --- a tiny generated dataset (tests, recipes/tiny-llava15.yaml) --------------------------------------------------
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


def write_tiny_dataset(root, n: int = 32, seed: int = 0, size: tuple[int, int] = (40, 32), text_every: int = 4,
                       multi_every: int = 5, name: str = "train.jsonl") -> Path:
    """``n`` LLaVA records about one-colour images (``root/images``): single-image, two-image and text-only."""
    import random

    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = list(COLOURS)
    lines = []
    for i in range(n):
        rid = f"s{i:04d}"
        if text_every and i % text_every == text_every - 1:
            a, b = rng.randrange(10), rng.randrange(10)
            conv = [{"from": "human", "value": f"What is {a} and {b}?"}, {"from": "gpt", "value": f"{a} {b}"}]
            lines.append({"id": rid, "conversations": conv})
            continue
        k = 2 if multi_every and i % multi_every == multi_every - 1 else 1
        files, cols = [], []
        for j in range(k):
            c = rng.choice(names)
            f = f"images/{rid}_{j}.png"
            Image.new("RGB", size, COLOURS[c]).save(root / f)
            files.append(f)
            cols.append(c)
        q = "<image>\n" * k + ("What colour is the image?" if k == 1 else "What colours are the images?")
        conv = [{"from": "human", "value": q}, {"from": "gpt", "value": " and ".join(cols)}]
        if rng.random() < 0.3:
            conv += [{"from": "human", "value": "Is it red?"},
                     {"from": "gpt", "value": "yes" if cols[0] == "red" else "no"}]
        lines.append({"id": rid, "image": files[0] if k == 1 else files, "conversations": conv})
    out = root / name
    out.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return out

