"""``loupe convert --from inf-llava | llava-uhd-v2 --preset P``: the released INF-LLaVA and LLaVA-UHD v2 folders (both
forks of the LLaVA repo: ``config.json`` with ``mm_*`` fields, ``LlavaLlamaForCausalLM`` / ``LlavaQwenForCausalLM``
weights) -> a complete Loupe folder, streamed.

Their ``config.json`` does not describe their parts in a way Loupe can read (the DEM connector and the Hiwin
transformer are fork-specific code), so the parts come from a Loupe preset (``--preset``: ``inf-llava-8b``,
``llava-uhd-v2-7b`` / ``-13b`` / ``-qwen2-7b``, or a tiny one) and the language model from the source's
``config.json`` (the ``mm_*`` and training fields removed; ``llava_llama`` -> ``llama``, ``llava_qwen`` -> ``qwen2``).
The key maps are those of :mod:`.inf_llava` (``KEY_MAP``, ``DROPPED``) and :mod:`.llava_uhd_v2` (``KEY_MAP``,
:func:`~.llava_uhd_v2.dropped_with_reasons`: FeatUp's CLIP copy, the v1 query path and the levels the preset does not
use); a preset whose shapes do not fit the checkpoint is refused with the full plan.

The vision tower: INF-LLaVA does not save its frozen CLIP (``--vision-tower DIR`` or a local ``mm_vision_tower``:
a Hugging Face CLIP folder, whose text side is dropped); LLaVA-UHD v2 saves its fine-tuned one
(``model.vision_tower.vision_tower.vision_model.*``), and a folder is read only when the checkpoint lacks it.
The tokenizer (``SRC`` or ``--language-model``) gets ``<image>``, the preset's chat template (the conversation
template the release was trained with) and left padding.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import LoupeError
from .common import ConversionReport, checkpoint_files, first_rule, plan_conversion, read_headers
from .llava import DROPPED as LLAVA_DROPPED
from .llava import KEY_MAP as LLAVA_KEY_MAP
from .llava import LM_TYPES, _tower_folder, text_config, write_import
from .llava_hf import _read_json

#: the rules that read a separate CLIP folder (``vision_model.*``), shared with :mod:`.llava`
CLIP_FOLDER_MAP = LLAVA_KEY_MAP[-2:]
#: format -> (the connector its presets use, an example preset)
FAMILIES = {"inf-llava": ("dem", "inf-llava-8b"), "llava-uhd-v2": ("hiwin", "llava-uhd-v2-7b")}
#: fork fields of their config.json (not the LLM's); ``mm_*`` and LLaVA's own are removed by :func:`text_config`
_TRAINING_FIELDS = ("tune_", "vision_tower_lr", "model_mode", "feature_scale_mask", "jbu_", "sft_vdim")


def _rules(fmt: str, levels):
    from . import inf_llava, llava_uhd_v2

    if fmt == "inf-llava":
        return inf_llava.KEY_MAP, list(inf_llava.DROPPED)
    return llava_uhd_v2.KEY_MAP, llava_uhd_v2.dropped_with_reasons(levels)


def plan_import(fmt: str, src, preset: str | None, vision_tower=None, image_token_id: int | None = None):
    """(LoupeConfig, plan, refs) of a released ``fmt`` folder with the parts of ``preset``, from headers only."""
    from ..builder import merged_config
    from ..configuration import LoupeConfig
    from ..modeling import LoupeForConditionalGeneration

    connector, example = FAMILIES[fmt]
    src = Path(src)
    if preset is None:
        raise LoupeError(f"--from {fmt} needs --preset P: the Loupe preset with the release's parts (e.g. {example})")
    cfg = _read_json(src / "config.json", f"{fmt} model")
    kind = cfg.get("model_type")
    if kind not in LM_TYPES or not any(k.startswith("mm_") for k in cfg):
        raise LoupeError(f"{src} holds a {kind!r} checkpoint ({', '.join(cfg.get('architectures') or [])}), not a "
                         f"{fmt} one (model_type llava_llama / llava_qwen with mm_* fields); pick the matching --from")
    kwargs = merged_config(preset, {})
    if kwargs["connector"]["name"] != connector:
        raise LoupeError(f"--preset {preset} has the connector {kwargs['connector']['name']!r}; --from {fmt} "
                         f"needs a preset with {connector!r} (e.g. {example})")
    if fmt == "llava-uhd-v2":
        if cfg.get("mm_projector_type", "adapt_spatial_resampler_v2") != "adapt_spatial_resampler_v2":
            raise LoupeError(f"{src}: mm_projector_type {cfg['mm_projector_type']!r} is not LLaVA-UHD v2's "
                             f"adapt_spatial_resampler_v2 (the Hiwin transformer); pick the matching --from")
        if cfg.get("feature_scale_mask") is not None:  # the levels the release was trained with win
            kwargs["connector"]["feature_scale_mask"] = int(cfg["feature_scale_mask"])
    kwargs.update(text_config=text_config(cfg, _TRAINING_FIELDS), image_token_id=image_token_id or 0,
                  tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)))
    config = LoupeConfig(**kwargs)
    refs = read_headers(checkpoint_files(src, f"{fmt} checkpoint"))
    if not any(r.name.startswith("model.vision_tower.vision_tower.") for r in refs):
        tower = _tower_folder(cfg, vision_tower)
        if tower is None:
            raise LoupeError(f"{src} does not hold the vision tower and mm_vision_tower {cfg.get('mm_vision_tower')!r}"
                             f" is not a local folder: pass --vision-tower DIR (a Hugging Face CLIP folder)")
        refs += read_headers(checkpoint_files(tower, "vision tower"))
    with torch.device("meta"):
        model = LoupeForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    key_map, dropped = _rules(fmt, getattr(model.connector, "levels", (1, 4)))
    report = plan_conversion(refs, lambda k: first_rule(list(key_map) + CLIP_FOLDER_MAP, k),
                             dropped + LLAVA_DROPPED[1:], expected)
    return config, report, refs


def import_folder(fmt: str, src, dst, preset=None, vision_tower=None, language_model=None, dtype=None,
                  dry_run: bool = False) -> ConversionReport:
    """A released ``fmt`` folder (``inf-llava`` / ``llava-uhd-v2``) -> a complete Loupe folder (module docstring)."""
    from ..presets import get_preset

    if fmt not in FAMILIES:
        raise LoupeError(f"unknown released layout {fmt!r}; choose from {', '.join(FAMILIES)}")
    template = None
    if preset is not None:
        template = (get_preset(preset).get("tokenizer") or {}).get("template")
    return write_import(src, dst, lambda tid=None: plan_import(fmt, src, preset, vision_tower, tid), language_model,
                        dtype, dry_run, template=template)
