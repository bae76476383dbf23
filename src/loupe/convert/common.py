"""What every converter of released checkpoints shares: reading the tensors of a local folder or file, renaming
them with a report, and checking them against the model before loading."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import LoupeError


def read_checkpoint(path, what: str = "checkpoint") -> dict:
    """Tensors of a folder (``*.safetensors``, else ``pytorch_model*.bin``, else ``mm_projector.bin``) or of one file
    (a Lightning ``.ckpt`` is unwrapped from its ``state_dict``). ``what`` names the checkpoint in errors."""
    p = Path(path)
    if not p.exists():
        raise LoupeError(f"{what} not found: {p}")
    files = ([p] if p.is_file() else sorted(p.glob("*.safetensors")) or sorted(p.glob("pytorch_model*.bin"))
             or sorted(p.glob("mm_projector.bin")))
    if not files:
        raise LoupeError(f"{p} holds no *.safetensors, pytorch_model*.bin or mm_projector.bin file")
    sd: dict = {}
    for f in files:
        try:
            if f.suffix == ".safetensors":
                from safetensors.torch import load_file

                part = load_file(str(f))
            else:
                part = torch.load(str(f), map_location="cpu", weights_only=True)
        except Exception as e:  # corrupt or foreign files
            raise LoupeError(f"cannot read checkpoint file {f}: {e}") from None
        sd.update(part["state_dict"] if isinstance(part.get("state_dict"), dict) else part)
    return sd


@dataclass
class ConversionReport:
    """What a converter did with each name: official names ``ignored`` (dropped on purpose) or ``unmatched`` (no
    rule), Loupe names ``loaded``, ``missing`` (required, absent), ``unexpected`` (mapped, not in the model) and
    ``left`` (optional, absent: kept as they were, e.g. a vision tower loaded from CLIP separately)."""

    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{len(self.loaded)} tensors loaded, {len(self.ignored)} dropped on purpose, {len(self.left)} left as "
                f"they were, {len(self.missing)} missing, {len(self.unexpected) + len(self.unmatched)} unexpected")


def first_rule(rules, name: str) -> str | None:
    """``name`` renamed by the first (regex, replacement) rule that matches it (once), or None."""
    return next((re.sub(p, r, name, count=1) for p, r in rules if re.search(p, name)), None)


def rename_state_dict(state_dict: dict, rename, ignored) -> tuple[dict, ConversionReport]:
    """Official state dict -> (Loupe state dict, report). ``rename(name)`` gives the Loupe name or None; names that
    match a regex in ``ignored`` are dropped on purpose. Two keys landing on one name is an error."""
    out, report = {}, ConversionReport()
    for name, tensor in state_dict.items():
        if any(re.search(p, name) for p in ignored):
            report.ignored.append(name)
            continue
        new = rename(name)
        if new is None:
            report.unmatched.append(name)
            continue
        if new in out:
            raise LoupeError(f"two checkpoint keys map to {new!r}")
        out[new] = tensor
        report.loaded.append(new)
    return out, report


def fit_and_load(model, new: dict, report: ConversionReport, is_required, whole_parts=()) -> ConversionReport:
    """Check renamed weights against ``model`` and load them: every name the model lacks, every ``is_required``
    name the checkpoint lacks, every unmatched official name and every shape mismatch is an error naming them; a
    prefix in ``whole_parts`` must be all there or all absent. On the meta device the tensors are assigned."""
    mine = model.state_dict()
    report.unexpected = sorted(k for k in new if k not in mine)
    absent = sorted(k for k in mine if k not in new)
    report.missing = [k for k in absent if is_required(k)]
    report.left = [k for k in absent if not is_required(k)]
    if report.unmatched or report.unexpected or report.missing:
        raise LoupeError(
            f"checkpoint does not fit the model: {len(report.missing)} missing {report.missing[:8]}, "
            f"{len(report.unexpected)} unexpected after renaming {report.unexpected[:8]}, {len(report.unmatched)} "
            f"with no rule in KEY_MAP {report.unmatched[:8]}")
    for prefix in whole_parts:
        absent_part = [k for k in report.left if k.startswith(prefix)]
        if absent_part and any(k.startswith(prefix) for k in new):
            raise LoupeError(f"checkpoint holds only part of {prefix[:-1]}: missing {absent_part[:8]}")
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(mine[k].shape)}" for k, v in new.items()
           if tuple(v.shape) != tuple(mine[k].shape)]
    if bad:
        raise LoupeError(f"checkpoint shapes do not match the model ({len(bad)}): {bad[:8]}")
    on_meta = any(t.is_meta for t in mine.values())
    if on_meta:  # assigned as they are, so cast first; otherwise load_state_dict's copy_ casts without a second copy
        new = {k: v.to(mine[k].dtype) for k, v in new.items()}
    model.load_state_dict(new, strict=False, assign=on_meta)  # completeness was checked above
    return report
