"""The predictions file: append-and-flush JSON lines that survive a kill, resume without duplicates, merge ranks.

Layout of an output folder:

* ``predictions.jsonl`` -- one ``{"id", "prediction", "prompt"}`` line per answered record (or ``{"id",
  "error"}`` for a record whose image could not be read), in data order once the run has finished;
* ``predictions.rank<R>.jsonl`` -- while ``R`` of several processes is running (``torchrun``); rank 0 merges
  them into ``predictions.jsonl`` and deletes them.

A SIGKILL can leave a half-written last line. :func:`repair` cuts it off before appending, and
:func:`read_rows` ignores it, so a killed run restarts exactly after its last complete line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

MAIN = "predictions.jsonl"


def part_name(rank: int) -> str:
    return f"predictions.rank{rank}.jsonl"


def read_rows(path: Path) -> list[dict]:
    """Complete, parsable lines of ``path`` (a missing file is empty)."""
    if not Path(path).exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # cut short by a kill
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                rows.append(row)
    return rows


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
    """Every finished row in the folder (main file and rank parts), first occurrence per id."""
    folder = Path(folder)
    out: dict[str, dict] = {}
    for f in [folder / MAIN, *sorted(folder.glob("predictions.rank*.jsonl"))]:
        for row in read_rows(f):
            out.setdefault(str(row["id"]), row)
    return out


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
    ordered = [rows[i] for i in order if i in rows]
    tmp = folder / (MAIN + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MAIN)
    for part in folder.glob("predictions.rank*.jsonl"):
        part.unlink()
    return ordered
