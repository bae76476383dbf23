"""Released INF-LLaVA checkpoints -> a Loupe ``inf-llava-8b`` model (hub collection ``WeihuangLin/inf-llava``; keys as
saved by ``INF_llava/train/train.py`` of WeihuangLin/INF-LLaVA).

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

from ..errors import LoupeError
from .common import ConversionReport, first_rule, fit_and_load, rename_state_dict
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
#: :data:`IGNORED` with the reason (the plan of ``loupe convert --dry-run`` prints it)
DROPPED: list[tuple[str, str]] = [(r"\.rotary_emb\.inv_freq$", "rotary buffer, recomputed by the LLM")]
#: Loupe prefixes allowed to be absent from a checkpoint, per ``part``
OPTIONAL = {"full": ("vision_tower.",), "adapter": ("vision_tower.", "language_model.")}


def convert_key(name: str) -> str | None:
    """The Loupe name of one official key (None when no rule matches)."""
    return first_rule(KEY_MAP, name)


def convert_state_dict(state_dict: dict) -> tuple[dict, ConversionReport]:
    """Rename an official state dict by :data:`KEY_MAP` -> (Loupe state dict, report of ignored/unmatched names)."""
    return rename_state_dict(state_dict, convert_key, IGNORED)


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
    optional = OPTIONAL[part]
    return fit_and_load(model, new, report, lambda k: not k.startswith(optional), whole_parts=optional)
