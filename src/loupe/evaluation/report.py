"""Reports: ``metrics.json`` and a Markdown table with the per-category breakdown and the protocol.

:func:`markdown` renders one result; :func:`compare` renders several side by side and says, loudly, which
ones were measured under different protocols (``protocols.differences``), since such numbers must not be
compared as if they were the same measurement.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import LoupeError
from .protocols import differences


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def markdown(result: dict[str, Any]) -> str:
    proto = result["protocol"]
    lines = [f"# {result['task']} -- {result['model']}", "",
             f"Protocol **{proto['id']}** ({proto['source']}); task settings: "
             + ", ".join(f"{k}={v}" for k, v in proto.get("task_settings", {}).items()), ""]
    for note in result.get("notes") or []:
        lines += [f"> Note: {note}", ""]
    metrics = result["metrics"]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {k}{' (primary)' if k == result['primary'] else ''} | {_fmt(v)} |" for k, v in metrics.items()]
    cats = result.get("categories") or {}
    if cats:
        cols = sorted({k for c in cats.values() for k in c if k != "n"}) + ["n"]
        lines += ["", "| category | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, vals in cats.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(vals.get(c, "")) for c in cols) + " |")
    bad = result.get("malformed", {})
    if bad.get("count"):
        lines += ["", f"**{bad['count']} malformed record(s)** (not scored):", ""]
        lines += [f"- `{p['id']}`: {p['reason']}" for p in bad["records"][:50]]
        if bad["count"] > 50:
            lines.append(f"- ... and {bad['count'] - 50} more (see metrics.json)")
    return "\n".join(lines) + "\n"


def load_result(path: str | Path) -> dict[str, Any]:
    """A finished result: ``metrics.json`` of an output folder (or that file itself), checked to hold what
    :func:`compare` reads; a missing, unfinished or corrupt one is a :class:`LoupeError` naming it."""
    p = Path(path)
    if not p.exists():
        raise LoupeError(f"no result at {p}: the folder does not exist")
    f = p / "metrics.json" if p.is_dir() else p
    if not f.is_file():
        raise LoupeError(f"{p} holds no metrics.json: the run has not finished (rerun the same loupe eval command "
                         f"to resume it)")
    try:
        result = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise LoupeError(f"{f} is not valid JSON ({e})") from None
    if not isinstance(result, dict):
        raise LoupeError(f"{f} is not a loupe eval result (not a JSON object)")
    missing = [k for k in ("task", "protocol", "primary", "metrics") if k not in result]
    if missing or not isinstance(result.get("protocol"), dict) or not isinstance(result.get("metrics"), dict) \
            or "id" not in result["protocol"]:
        raise LoupeError(f"{f} is not a loupe eval result (missing or malformed: "
                         f"{', '.join(missing) or 'protocol/metrics'})")
    return result


def compare(paths: list[str | Path]) -> str:
    """A Markdown table of several results' primary scores, with a warning for each pair of results whose
    protocols differ (same task) and a list of the differing settings."""
    results = [load_result(p) for p in paths]
    lines = ["| result | task | protocol | primary | value |", "|---|---|---|---|---|"]
    for p, r in zip(paths, results):
        lines.append(f"| {p} | {r['task']} | {r['protocol']['id']} | {r['primary']} | "
                     f"{_fmt(r['metrics'].get(r['primary']))} |")
    notes = []
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            a, b = results[i], results[j]
            if a["task"] != b["task"]:
                continue
            diff = differences(a["protocol"], b["protocol"])
            if diff:
                notes.append(f"**Not comparable**: {paths[i]} and {paths[j]} use different protocols "
                             f"({a['protocol']['id']} vs {b['protocol']['id']}): " + "; ".join(diff))
    if notes:
        lines += [""] + notes
    else:
        lines += ["", "All results of the same task share one protocol."]
    return "\n".join(lines) + "\n"
