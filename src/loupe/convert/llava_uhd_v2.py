"""Released LLaVA-UHD v2 checkpoints -> a Loupe ``llava-uhd-v2-*`` model (hub ``YipengZhang/LLaVA-UHD-v2*``, README of
the ``LLaVA-UHD-v2`` branch of thunlp/LLaVA-UHD).

The released layout (``YipengZhang/LLaVA-UHD-v2-Vicuna-7B`` / ``-13B`` / ``-Qwen2.0-7B``, ``llava_llama`` /
``llava_qwen``; ``mm_projector_type adapt_spatial_resampler_v2``)::

    model.mm_projector.{pos_embed, query_1..4, ln_q, ln_kv, ln_proj, ln_post, cat_proj, proj, attn.*}  -> connector.*
    model.mm_projector.feature_{l}x_embedding, features_{l}x_projector.*     (l in 1, 2, 4, 8)  -> connector.* (used l)
    model.mm_projector.upsampler.upsampler.{up1,up2}.{range_temp, sigma_spatial, range_proj.{0,3}, fixup_proj.{0,3}}
    model.mm_projector.upsampler.upsampler.fixup_proj.1.*                                    -> connector.upsampler.*
    model.vision_tower.vision_tower.vision_model.*   (the fine-tuned CLIP, HF layout)        -> vision_tower.*
    model.embed_tokens / model.layers.* / model.norm, lm_head                               -> language_model.*

Dropped on purpose (:data:`DROPPED`, reported in :class:`ConversionReport.ignored`): ``model.mm_projector.upsampler.
model.*`` (FeatUp's own copy of CLIP-L/336 + ``ChannelNorm``, built at construction, never used in the MLLM
forward), ``model.mm_projector.query`` and ``kv_proj`` (the v1 single-query path, unused by ``forward_with_featup``),
the projector and level embedding of every level the model does not use (with ``feature_scale_mask`` 5: 2x and 8x),
and old rotary ``inv_freq`` buffers. ``part="vdim"`` reads the stage-0 FeatUp checkpoint (``clip-large-vdim.ckpt``:
``upsampler.*`` kept, ``model.*``, ``scale_net*``, ``downsampler*`` dropped, as the official loader does);
``part="adapter"`` the stage-1 ``mm_projector.bin`` (connector only).

:data:`KEY_MAP` is the whole renaming, as data (first matching rule wins); :func:`load_official` reads a folder
(``*.safetensors``, ``pytorch_model*.bin``, ``mm_projector.bin``), a ``.ckpt``/file, or a state dict, and loads
strictly: a missing required key, an unexpected key or a shape mismatch is a :class:`~loupe.LoupeError` naming the
keys. A model built on the ``meta`` device gets the checkpoint tensors assigned.
"""

from __future__ import annotations

from ..errors import LoupeError
from .common import ConversionReport, first_rule, fit_and_load, rename_state_dict
from .common import read_checkpoint as _read_checkpoint

#: official name -> Loupe name, as (regex, replacement); the first rule that matches wins
KEY_MAP: list[tuple[str, str]] = [
    (r"^model\.mm_projector\.upsampler\.upsampler\.", "connector.upsampler."),
    (r"^model\.mm_projector\.", "connector."),
    (r"^model\.vision_tower\.vision_tower\.", "vision_tower."),
    (r"^model\.(embed_tokens|layers|norm)\.", r"language_model.model.\1."),
    (r"^lm_head\.", "language_model.lm_head."),
]
#: the stage-0 FeatUp checkpoint (``state_dict`` of ``JBUFeatUp``)
VDIM_KEY_MAP: list[tuple[str, str]] = [(r"^upsampler\.", "connector.upsampler.")]
#: official names always dropped (the level-dependent ones are added by :func:`dropped_patterns`)
DROPPED: list[str] = [
    r"^model\.mm_projector\.upsampler\.model\.",  # FeatUp's redundant CLIP copy + ChannelNorm
    r"^model\.mm_projector\.query$",  # the single query set of forward(), unused by forward_with_featup
    r"^model\.mm_projector\.kv_proj\.",  # Linear(1024, D, bias=False) of forward(), unused
    r"\.rotary_emb\.inv_freq$",
    r"^model\.vision_tower\.vision_tower\.vision_model\.embeddings\.position_ids$",  # an old HF buffer
    r"^(model\.|scale_net|downsampler)",  # in the stage-0 checkpoint only (VDIM_KEY_MAP): CLIP, training heads
]
#: Loupe prefixes allowed to be absent, per ``part``
OPTIONAL = {"full": ("vision_tower.",), "adapter": ("vision_tower.", "language_model."),
            "vdim": ("vision_tower.", "language_model.", "connector.")}


#: why each of :data:`DROPPED` is dropped (the plan of ``loupe convert --dry-run`` prints it)
DROP_REASONS: list[str] = [
    "FeatUp's own CLIP copy + ChannelNorm, built at construction, never used in the MLLM forward",
    "the v1 single query set of forward(), unused by forward_with_featup",
    "kv_proj of forward(), unused by forward_with_featup",
    "rotary buffer, recomputed by the LLM",
    "an old CLIP position_ids buffer, recomputed",
    "stage-0 FeatUp checkpoint only: CLIP and training heads",
]


def dropped_with_reasons(levels) -> list[tuple[str, str]]:
    """(regex, reason) of everything a full checkpoint drops for a model using ``levels``."""
    unused = [lv for lv in (1, 2, 4, 8) if lv not in levels]
    level = [(rf"^model\.mm_projector\.(feature_{lv}x_embedding$|features_{lv}x_projector\.)",
              f"the {lv}x level's projector / embedding, unused with levels {tuple(levels)} (feature_scale_mask)")
             for lv in unused]
    return list(zip(DROPPED[:-1], DROP_REASONS[:-1])) + level


def dropped_patterns(levels, part: str = "full") -> list[str]:
    """:data:`DROPPED` plus the projectors/embeddings of the levels not in ``levels`` (e.g. (1, 4))."""
    unused = [lv for lv in (1, 2, 4, 8) if lv not in levels]
    level = [rf"^model\.mm_projector\.(feature_{lv}x_embedding$|features_{lv}x_projector\.)" for lv in unused]
    base = DROPPED if part == "vdim" else DROPPED[:-1]
    return base + level


def convert_state_dict(state_dict: dict, levels=(1, 4), part: str = "full") -> tuple[dict, ConversionReport]:
    """Rename an official state dict -> (Loupe state dict, report of dropped / unmatched names)."""
    rules, drops = (VDIM_KEY_MAP if part == "vdim" else KEY_MAP), dropped_patterns(levels, part)
    return rename_state_dict(state_dict, lambda name: first_rule(rules, name), drops)


def read_checkpoint(path) -> dict:
    """All tensors of a local folder or checkpoint file (:func:`loupe.convert.common.read_checkpoint`)."""
    return _read_checkpoint(path, "LLaVA-UHD v2 checkpoint")


def load_official(model, folder_or_state_dict, part: str = "full") -> ConversionReport:
    """Load released LLaVA-UHD v2 weights into a Loupe model with the ``hiwin`` connector.

    ``part``: ``"full"`` (connector + LLM required, vision tower optional), ``"adapter"`` (``mm_projector.bin``:
    the connector), ``"vdim"`` (the FeatUp stage-0 checkpoint: ``connector.upsampler`` only)."""
    if part not in OPTIONAL:
        raise LoupeError(f"part must be one of {sorted(OPTIONAL)}, got {part!r}")
    sd = folder_or_state_dict if isinstance(folder_or_state_dict, dict) else read_checkpoint(folder_or_state_dict)
    new, report = convert_state_dict(sd, getattr(model.connector, "levels", (1, 4)), part)
    optional = OPTIONAL[part]

    def required(k: str) -> bool:
        return k.startswith("connector.upsampler.") if part == "vdim" else not k.startswith(optional)

    return fit_and_load(model, new, report, required)
