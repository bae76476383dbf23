"""Released INF-LLaVA checkpoints -> a Loupe ``inf-llava-8b`` model (spec §1.4).

The released layout (``WeihuangLin/INF-LLaVA-sft``, ``INF_star-LLaVA-sft``; ``model_type`` ``llava_llama``)::

    model.spatial_embed.attention.linears.{0,1,2,3}.{weight,bias}   (C, C), (C)      -> connector.spatial_embed.*
    model.spatial_embed.attention.ln.{weight,bias}                                     (same tail)
    model.spatial_embed.ffn_crop.{0,2}.{weight,bias}                 (C/16, C), (C/2, C/16)
    model.spatial_embed.ffn_stride.{0,2}.{weight,bias}
    model.spatial_embed.ln_fuse.{weight,bias}
    model.mm_projector.{0,2}.{weight,bias}                           (D, C), (D, D)   -> connector.proj.{0,2}.*
    model.embed_tokens.weight, model.layers.*, model.norm.weight                      -> language_model.model.*
    lm_head.weight                                                                    -> language_model.lm_head.weight

The CLIP tower is frozen and not saved: its keys are absent and it is loaded separately from
``openai/clip-vit-large-patch14-336`` (``build_model("inf-llava-8b", vision_tower=PATH)``). Should a checkpoint
hold it anyway (LLaVA's ``model.vision_tower.vision_tower.vision_model.*``), it maps to ``vision_tower.*``.
The stage-1 ``mm_projector.bin`` holds only the ``mm_projector`` and ``spatial_embed`` keys: load it with
``part="adapter"``. Old-style rotary buffers (``...rotary_emb.inv_freq``) are dropped (recomputed by the LLM).

:data:`KEY_MAP` is the whole mapping, as data; :func:`convert_state_dict` applies it (first matching rule wins);
:func:`load_official` reads a local folder (``*.safetensors`` shards, ``pytorch_model*.bin`` or
``mm_projector.bin``) or a state dict and loads strictly: any unexpected key, missing key (other than the vision
tower's) or shape mismatch is a :class:`~loupe.LoupeError` naming the keys. Tensors are copied into the model's
dtype (the release is bf16); a model built on the ``meta`` device gets the checkpoint tensors assigned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import LoupeError
from .common import read_checkpoint as _read_checkpoint

#: official name -> Loupe name, as (regex, replacement); the first rule that matches wins
KEY_MAP: list[tuple[str, str]] = [
    (r"^model\.spatial_embed\.", "connector.spatial_embed."),
    (r"^model\.mm_projector\.(\d+)\.", r"connector.proj.\1."),
    (r"^model\.vision_tower\.vision_tower\.", "vision_tower."),
    (r"^model\.(embed_tokens|layers|norm)\.", r"language_model.model.\1."),
    (r"^lm_head\.", "language_model.lm_head."),
]
#: official names dropped on purpose
IGNORED: list[str] = [r"\.rotary_emb\.inv_freq$"]
#: Loupe prefixes allowed to be absent from a checkpoint, per ``part``
OPTIONAL = {"full": ("vision_tower.",), "adapter": ("vision_tower.", "language_model.")}


@dataclass
class ConversionReport:
    loaded: list[str] = field(default_factory=list)  # Loupe names taken from the checkpoint
    ignored: list[str] = field(default_factory=list)  # official names dropped on purpose
    unmatched: list[str] = field(default_factory=list)  # official names no rule maps
    missing: list[str] = field(default_factory=list)  # required Loupe names the checkpoint lacks
    unexpected: list[str] = field(default_factory=list)  # mapped names the model does not have
    left: list[str] = field(default_factory=list)  # optional Loupe names left as they were (the vision tower)

    def __str__(self) -> str:
        return (f"{len(self.loaded)} tensors loaded, {len(self.ignored)} ignored, {len(self.left)} left as they were "
                f"(vision tower: load CLIP separately), {len(self.missing)} missing, "
                f"{len(self.unexpected) + len(self.unmatched)} unexpected")


def convert_key(name: str) -> str | None:
    """The Loupe name of one official key (None when no rule matches)."""
    for pattern, repl in KEY_MAP:
        if re.search(pattern, name):
            return re.sub(pattern, repl, name, count=1)
    return None


def convert_state_dict(state_dict: dict) -> tuple[dict, ConversionReport]:
    """Rename an official state dict by :data:`KEY_MAP` -> (Loupe state dict, report of ignored/unmatched names)."""
    out, report = {}, ConversionReport()
    for name, tensor in state_dict.items():
        if any(re.search(p, name) for p in IGNORED):
            report.ignored.append(name)
            continue
        new = convert_key(name)
        if new is None:
            report.unmatched.append(name)
            continue
        if new in out:
            raise LoupeError(f"two checkpoint keys map to {new!r}")
        out[new] = tensor
        report.loaded.append(new)
    return out, report


def read_checkpoint(path) -> dict:
    """All tensors of a local folder or checkpoint file (:func:`loupe.convert.common.read_checkpoint`)."""
    return _read_checkpoint(path, "INF-LLaVA checkpoint")


def load_official(model, folder_or_state_dict, part: str = "full") -> ConversionReport:
    """Load released INF-LLaVA weights into a Loupe model built from ``inf-llava-8b`` (or any dem model).

    ``part="full"``: connector + LLM required (vision tower optional); ``"adapter"``: the stage-1
    ``mm_projector.bin`` (connector required, LLM and vision tower optional). Strict otherwise.
    """
    if part not in OPTIONAL:
        raise LoupeError(f"part must be one of {sorted(OPTIONAL)}, got {part!r}")
    sd = folder_or_state_dict if isinstance(folder_or_state_dict, dict) else read_checkpoint(folder_or_state_dict)
    new, report = convert_state_dict(sd)
    mine = model.state_dict()
    report.unexpected = sorted(k for k in new if k not in mine)
    absent = sorted(k for k in mine if k not in new)
    report.missing = [k for k in absent if not k.startswith(OPTIONAL[part])]
    report.left = [k for k in absent if k.startswith(OPTIONAL[part])]
    if report.unmatched or report.unexpected or report.missing:
        raise LoupeError(
            f"checkpoint does not fit the model: {len(report.missing)} missing {report.missing[:8]}, "
            f"{len(report.unexpected)} unexpected after renaming {report.unexpected[:8]}, {len(report.unmatched)} "
            f"with no rule in KEY_MAP {report.unmatched[:8]}"
        )
    for prefix in OPTIONAL[part]:  # an optional part is all there or all absent
        absent_part = [k for k in report.left if k.startswith(prefix)]
        if absent_part and any(k.startswith(prefix) for k in new):
            raise LoupeError(f"checkpoint holds only part of {prefix[:-1]}: missing {absent_part[:8]}")
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(mine[k].shape)}" for k, v in new.items()
           if tuple(v.shape) != tuple(mine[k].shape)]
    if bad:
        raise LoupeError(f"checkpoint shapes do not match the model ({len(bad)}): {bad[:8]}")
    on_meta = any(t.is_meta for t in mine.values())
    if on_meta:
        new = {k: v.to(mine[k].dtype) for k, v in new.items()}
    model.load_state_dict(new, strict=False, assign=on_meta)  # completeness was checked above
    return report
