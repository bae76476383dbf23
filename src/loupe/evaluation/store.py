"""The predictions file: append-and-flush JSON lines that survive a kill, resume without duplicates, merge ranks.

Layout of an output folder:

* ``predictions.jsonl`` -- one ``{"id", "prediction", "prompt"}`` line per answered record (or ``{"id",
  "error"}`` for a record whose image could not be read), in data order once the run has finished;
* ``predictions.rank<R>.jsonl`` -- while ``R`` of several processes is running (``torchrun``); rank 0 merges
  them into ``predictions.jsonl`` and deletes them.

A SIGKILL can leave a half-written last line. :func:`repair` cuts it off before appending, and
:func:`read_rows` ignores it, so a killed run restarts exactly after its last complete line.

On resume a row is trusted only if :func:`row_kind` accepts it: an answer (``id`` a string or integer,
``prediction`` a string) or an error row (``id`` and an ``error`` string). Anything else -- ``{"id": X}``,
``"prediction": null`` or ``7``, a line that is not JSON -- is counted as malformed by :func:`scan` and its
record is answered again; error rows are retried. :func:`merge` keeps an answer over an error row of the same
id, so the final ``predictions.jsonl`` holds only valid rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

MAIN = "predictions.jsonl"


def part_name(rank: int) -> str:
    return f"predictions.rank{rank}.jsonl"


def row_kind(row) -> str | None:
    """``"answer"``, ``"error"`` or ``None`` (malformed: not to be trusted on resume)."""
    if not isinstance(row, dict):
        return None
    rid = row.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or (isinstance(rid, str) and not rid):
        return None
    if "error" in row:
        return "error" if isinstance(row["error"], str) and "prediction" not in row else None
    return "answer" if isinstance(row.get("prediction"), str) else None


def _lines(path: Path) -> Iterable[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # cut short by a kill
            if line.strip():
                yield line


def _parse(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None


def read_rows(path: Path) -> list[dict]:
    """Complete lines of ``path`` that are valid answer or error rows (a missing file is empty)."""
    if not Path(path).exists():
        return []
    return [row for row in map(_parse, _lines(path)) if row_kind(row)]


@dataclass
class Scan:
    """What the predictions files of a folder hold, by id (first valid row of each kind)."""

    answers: dict[str, dict] = field(default_factory=dict)
    errors: dict[str, dict] = field(default_factory=dict)
    malformed: int = 0
    examples: list[str] = field(default_factory=list)  # the first few malformed rows, shortened


def _files(folder: Path) -> list[Path]:
    return [folder / MAIN, *sorted(folder.glob("predictions.rank*.jsonl"))]


def scan(folder: Path) -> Scan:
    """Sort every complete line of the folder's predictions files into answers, errors and malformed."""
    out = Scan()
    for f in _files(Path(folder)):
        if not f.exists():
            continue
        for line in _lines(f):
            row = _parse(line)
            kind = row_kind(row)
            if kind is None:
                out.malformed += 1
                if len(out.examples) < 3:
                    text = line.strip()
                    out.examples.append(f"{f.name}: {text[:80]}{'...' if len(text) > 80 else ''}")
            else:
                (out.answers if kind == "answer" else out.errors).setdefault(str(row["id"]), row)
    return out


def repair(path: Path) -> None:
    """Truncate ``path`` after its last complete line (a kill may have left half a line)."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut != len(data):
        with open(path, "r+b") as f:
            f.truncate(cut)


def all_rows(folder: Path) -> dict[str, dict]:
    """One valid row per id in the folder (main file and rank parts): the first answer, else the first
    error row."""
    found = scan(folder)
    return {**found.errors, **found.answers}


class Appender:
    """Appends rows to one JSONL file and flushes after every batch (the rows are on disk for a rerun)."""

    def __init__(self, path: Path):
        repair(path)
        self.f = open(path, "a", encoding="utf-8")

    def write(self, rows: Iterable[dict]) -> None:
        self.f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def merge(folder: Path, order: list[str]) -> list[dict]:
    """Write ``predictions.jsonl`` with one row per id of ``order`` that has one, in that order (atomic
    replace), delete the rank parts, and return the rows."""
    folder = Path(folder)
    rows = all_rows(folder)
    ordered = [rows[str(i)] for i in order if str(i) in rows]
    tmp = folder / (MAIN + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MAIN)
    for part in folder.glob("predictions.rank*.jsonl"):
        part.unlink()
    return ordered
