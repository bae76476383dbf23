"""The original LLaVA repo layout (``haotian-liu/LLaVA``: ``liuhaotian/llava-v1.5-7b``, ``llava-v1.6-*``;
``LlavaLlamaForCausalLM``, ``model_type`` ``llava`` / ``llava_llama`` / ``llava_mistral``) -> a Loupe folder, streamed.

Keys (``llava/model/llava_arch.py``: ``LlavaMetaModel`` holds ``mm_projector``, ``image_newline``, ``vision_tower``)::

    model.mm_projector.{0,2}.*                          -> connector.proj.{0,2}.*   (mlp2x_gelu)
    model.image_newline                                 -> connector.image_newline  (LLaVA-1.6)
    model.vision_tower.vision_tower.vision_model.*      -> vision_tower.vision_model.*  (when saved, e.g. 1.6)
    model.embed_tokens / model.layers.* / model.norm    -> language_model.model.*
    lm_head.*                                           -> language_model.lm_head.*

A checkpoint without the vision tower (LLaVA-1.5: the tower is frozen and not saved) takes it from
``--vision-tower DIR`` or from ``mm_vision_tower`` when that is a local folder: a Hugging Face CLIP (``CLIPModel``:
``vision_model.*``, whose ``text_model.*``, projections and ``logit_scale`` are dropped) or ``CLIPVisionModel``
folder. Dropped on purpose: rotary ``inv_freq`` and ``position_ids`` buffers.

Config: the ``mm_*`` fields give the parts: ``mm_vision_select_layer`` (``mm_vision_select_feature`` "patch"),
``mm_projector_type`` "mlp2x_gelu", ``image_aspect_ratio`` "pad" (``expand2square``: the ``pad`` slicer), "anyres"
(``image_grid_pinpoints`` as (W, H), the official order) or anything else (CLIP's shortest-edge resize + centre
crop), ``mm_patch_merge_type`` "flat" or "spatial_unpad" (unpadded with the official ``int(h * scale)`` rounding).
The rest of ``config.json`` is the language model's config (``llava_llama`` -> ``llama``, ``llava_mistral`` ->
``mistral``, ``llava_qwen`` -> ``qwen2``). The tokenizer gets ``<image>`` as an added token (the official code
uses a -200 sentinel instead) and the Vicuna v1 chat template unless it ships one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..encoders.clip import CLIP_L_336, CLIP_MEAN, CLIP_STD
from ..errors import LoupeError
from .common import (ConversionReport, atomic_folder, checkpoint_files, first_rule, parse_dtype, plan_conversion,
                     read_headers, refuse, write_weights)
from .llava_hf import _clean, _read_json, expected_state, left_padded

KEY_MAP: list[tuple[str, str]] = [
    (r"^model\.mm_projector\.(\d+)\.", r"connector.proj.\1."),
    (r"^model\.image_newline$", "connector.image_newline"),
    (r"^model\.vision_tower\.vision_tower\.vision_model\.", "vision_tower.vision_model."),
    (r"^model\.(embed_tokens|layers|norm)\.", r"language_model.model.\1."),
    (r"^lm_head\.", "language_model.lm_head."),
    # a separate CLIP folder (--vision-tower): CLIPModel / old CLIPVisionModel, or transformers 5's CLIPVisionModel
    (r"^vision_model\.", "vision_tower.vision_model."),
    (r"^(embeddings|pre_layrnorm|encoder|post_layernorm)\.", r"vision_tower.vision_model.\1."),
]
DROPPED: list[tuple[str, str]] = [
    (r"\.rotary_emb\.inv_freq$", "rotary buffer, recomputed by the LLM"),
    (r"embeddings\.position_ids$", "CLIP position_ids buffer, recomputed"),
    (r"^(text_model\.|text_projection\.|visual_projection\.|logit_scale$)", "CLIP's text side, unused by LLaVA"),
]
LM_TYPES = {"llava": "llama", "llava_llama": "llama", "llava_mistral": "mistral", "llava_qwen": "qwen2"}
_LLAVA_FIELDS = ("mm_", "image_aspect_ratio", "image_grid_pinpoints", "tune_mm", "freeze_mm", "use_mm_proj",
                 "tokenizer_model_max_length", "tokenizer_padding_side", "image_crop_resolution",
                 "image_split_resolution", "unfreeze_mm")


def _tower_folder(cfg: dict, vision_tower) -> Path | None:
    if vision_tower is not None:
        p = Path(vision_tower)
        if not (p / "config.json").exists():
            raise LoupeError(f"--vision-tower {p} is not a Hugging Face CLIP folder (no config.json)")
        return p
    name = cfg.get("mm_vision_tower") or cfg.get("vision_tower")
    if name and (Path(name) / "config.json").exists():
        return Path(name)
    return None


def _clip_settings(folder: Path | None, cfg: dict, src) -> tuple[dict, tuple, tuple, int]:
    """(CLIPVisionConfig kwargs, mean, std, crop size) from a CLIP folder, or CLIP-L/336 when named so."""
    from transformers import CLIPVisionConfig

    if folder is None:
        name = str(cfg.get("mm_vision_tower") or "")
        if name.rstrip("/").endswith("clip-vit-large-patch14-336"):
            return dict(CLIP_L_336), CLIP_MEAN, CLIP_STD, 336
        raise LoupeError(f"{src}: the vision tower {name!r} is not a local folder and the checkpoint does not hold "
                         f"it; pass --vision-tower DIR (a Hugging Face CLIP folder)")
    c = _read_json(folder / "config.json", "CLIP")
    vc = c.get("vision_config", c) if c.get("model_type") == "clip" else c
    if vc.get("model_type", "clip_vision_model") not in ("clip_vision_model",):
        raise LoupeError(f"{folder}: vision tower model_type {vc.get('model_type')!r} is not CLIP")
    known = set(CLIPVisionConfig().to_dict())
    hf = {k: v for k, v in vc.items() if k in known and k not in ("model_type", "transformers_version",
                                                                    "architectures", "dtype", "torch_dtype")}
    pre = json.loads((folder / "preprocessor_config.json").read_text()) \
        if (folder / "preprocessor_config.json").exists() else {}
    crop = pre.get("crop_size", hf.get("image_size", 224))
    crop = int(crop.get("height", 0)) if isinstance(crop, dict) else int(crop)
    return hf, tuple(pre.get("image_mean", CLIP_MEAN)), tuple(pre.get("image_std", CLIP_STD)), crop


def loupe_config(cfg: dict, tower: Path | None, src) -> dict:
    """An original LLaVA ``config.json`` (+ its CLIP folder) -> :class:`~loupe.LoupeConfig` kwargs."""
    kind = cfg.get("model_type")
    if kind not in LM_TYPES or "mm_projector_type" not in cfg and "mm_hidden_size" not in cfg:
        raise LoupeError(f"{src} holds a {kind!r} checkpoint ({', '.join(cfg.get('architectures') or [])}), not an "
                         f"original LLaVA one (model_type llava/llava_llama with mm_* fields); pick the matching "
                         f"--from")
    if cfg.get("mm_projector_type", "linear") != "mlp2x_gelu":
        raise LoupeError(f"{src}: mm_projector_type {cfg.get('mm_projector_type')!r} is not supported (mlp2x_gelu)")
    if cfg.get("mm_vision_select_feature", "patch") != "patch":
        raise LoupeError(f"{src}: mm_vision_select_feature {cfg.get('mm_vision_select_feature')!r} is not supported")
    if cfg.get("mm_use_im_start_end"):
        raise LoupeError(f"{src}: mm_use_im_start_end (image start/end tokens) is not supported")
    hf, mean, std, crop = _clip_settings(tower, cfg, src)
    if crop != int(hf.get("image_size", 224)):
        raise LoupeError(f"{src}: the CLIP crop size {crop} differs from its image_size {hf.get('image_size')}")
    vision = {"name": "clip", "hf_config": hf, "select_layer": int(cfg.get("mm_vision_select_layer", -2)),
              "image_mean": mean, "image_std": std}
    aspect, merge = cfg.get("image_aspect_ratio", "square"), cfg.get("mm_patch_merge_type", "flat")
    if aspect == "anyres":
        slicer = {"name": "anyres", "tile_size": crop, "pinpoints": [list(p) for p in cfg["image_grid_pinpoints"]],
                  "pinpoint_order": "wh"}
        if merge not in ("flat", "spatial", "spatial_unpad"):
            raise LoupeError(f"{src}: mm_patch_merge_type {merge!r} is not supported (flat, spatial, spatial_unpad)")
        connector = {"name": "llava_next", "depth": 2, "merge": merge, "unpad_rounding": "official"}
    else:
        slicer = {"name": "pad", "tile_size": crop, "mode": "pad" if aspect == "pad" else "crop",
                  "fill": mean}
        connector = {"name": "mlp", "depth": 2}
    return dict(slicer=slicer, vision=vision, connector=connector, text_config=text_config(cfg),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)))


def text_config(cfg: dict, extra_fields=()) -> dict:
    """The language model's config inside an original LLaVA ``config.json``: the ``mm_*`` / training fields (and
    ``extra_fields`` prefixes) removed, ``model_type`` the LLM's (``llava_llama`` -> ``llama``, ...)."""
    strip = _LLAVA_FIELDS + tuple(extra_fields)
    text = {k: v for k, v in _clean(cfg).items() if not k.startswith(strip) and k not in ("use_cache",)}
    text["model_type"] = LM_TYPES[cfg.get("model_type")]
    return text


def plan_import(src, vision_tower=None, image_token_id: int | None = None):
    """(LoupeConfig, plan, refs) of an original LLaVA folder (+ CLIP folder), from headers only."""
    from ..configuration import LoupeConfig

    src = Path(src)
    cfg = _read_json(src / "config.json", "LLaVA model")
    if "convnext" in str(cfg.get("mm_vision_tower") or "").lower():  # the official build_vision_tower's own test
        raise LoupeError(f"{src} is a ConvLLaVA checkpoint (mm_vision_tower {cfg['mm_vision_tower']!r}, a ConvNeXt "
                         f"tower); use --from conv-llava")
    refs = read_headers(checkpoint_files(src, "LLaVA checkpoint"))
    has_tower = any(r.name.startswith("model.vision_tower.vision_tower.") for r in refs)
    tower = _tower_folder(cfg, vision_tower)
    kwargs = loupe_config(cfg, tower, src)
    if not has_tower:
        if tower is None:
            raise LoupeError(f"{src} does not hold the vision tower and mm_vision_tower "
                             f"{cfg.get('mm_vision_tower')!r} is not a local folder: pass --vision-tower DIR")
        refs += read_headers(checkpoint_files(tower, "vision tower"))
    config = LoupeConfig(**kwargs, image_token_id=image_token_id if image_token_id is not None else 0)
    report = plan_conversion(refs, lambda k: first_rule(KEY_MAP, k), DROPPED, expected_state(config))
    return config, report, refs


def import_folder(src, dst, vision_tower=None, language_model=None, dtype=None,
                  dry_run: bool = False) -> ConversionReport:
    """An original LLaVA folder -> a complete Loupe folder (see the module docstring). ``language_model``: the
    folder to take the tokenizer from when ``src`` has none."""
    return write_import(src, dst, lambda tid=None: plan_import(src, vision_tower, tid), language_model, dtype,
                        dry_run)


def write_import(src, dst, plan, language_model=None, dtype=None, dry_run: bool = False,
                 template: str | None = None) -> ConversionReport:
    """What every LLaVA-repo layout shares once planned: ``plan(image_token_id)`` gives (LoupeConfig, report,
    refs); the tokenizer (from ``src`` or ``language_model``) gets ``<image>``, the chat template ``template``
    (a Loupe template name; by default its own, else Vicuna v1) and left padding; weights are streamed into
    ``dst`` (atomic) next to the config and processor."""
    from ..builder import load_tokenizer
    from ..processing import LoupeImageProcessor, LoupeProcessor
    from ..templates import get_template

    src = Path(src)
    dtype = parse_dtype(dtype)
    if dry_run:
        return plan()[1]
    tok_dir = Path(language_model) if language_model is not None else src
    tok = load_tokenizer(tok_dir)
    tok.chat_template = get_template(template) if template else tok.chat_template or get_template("vicuna_v1")
    left_padded(tok)
    config, report, refs = plan(tok.convert_tokens_to_ids("<image>"))
    refuse(report, src)
    if dtype is not None:
        config.dtype = str(dtype).removeprefix("torch.")
    with atomic_folder(dst) as tmp:
        write_weights(tmp, refs, report, dtype)
        config.save_pretrained(tmp)
        if (src / "generation_config.json").exists():
            shutil.copy(src / "generation_config.json", tmp / "generation_config.json")
        LoupeProcessor(image_processor=LoupeImageProcessor.from_config(config), tokenizer=tok).save_pretrained(tmp)
    return report
