"""``build_model`` / ``build_processor``: presets + local weights -> a model and its processor.

Real parts come from local Hugging Face folders the user downloaded (nothing reaches a hub):
``vision_tower=PATH`` (a CLIP or CLIPVision folder), ``language_model=PATH`` (any causal-LM folder, or a
folder with a GGUF file: ``gguf_file=NAME``), ``tokenizer=PATH`` (defaults to the language model's).
A tokenizer without ``<image>`` gets it as an added special token; its id becomes ``image_token_id``.
The language model's vocabulary is *not* resized for it: image slots are looked up as id 0 and then
overwritten by visual tokens (the official code's -200 sentinel, without the sentinel).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from .configuration import LoupeConfig
from .errors import LoupeError
from .presets import get_preset
from .templates import get_template


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and "name" not in v:
            out[k] = _merge(out[k], v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and v.get("name") == out[k].get("name"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# what a preset's LoupeConfig takes as overrides (LoupeConfig's own fields); anything else is a typo
CONFIG_KEYS = ("slicer", "vision", "connector", "text_config", "image_token_id", "image_token", "preset",
               "tie_word_embeddings")


def merged_config(preset: str, overrides: dict, where: str = "") -> dict:
    """The preset's LoupeConfig kwargs with ``overrides`` merged in, validated before anything is built:
    unknown keys fail (``slicr=...`` is not silently ignored), part options are checked by type and bounds
    (:mod:`loupe.validation`), every message prefixed with ``where`` (``model.config`` in a recipe)."""
    from .registry import CONNECTORS, ENCODERS, SLICERS

    p = get_preset(preset)
    label = where or f"build({preset!r})"
    if not isinstance(overrides, dict):
        raise LoupeError(f"{label}: expected a mapping of config overrides, got {overrides!r}")
    unknown = sorted(k for k in overrides if k not in CONFIG_KEYS)
    if unknown:
        raise LoupeError(f"{label}: unknown config key(s) {unknown}; valid: {', '.join(CONFIG_KEYS)}")
    cfg = _merge(p["config"], overrides)
    prefix = f"{where}." if where else ""
    for key, reg in (("slicer", SLICERS), ("vision", ENCODERS), ("connector", CONNECTORS)):
        if key in overrides and cfg.get(key) is not None:
            reg.config(cfg[key], where=f"{prefix}{key}")
    for key, tp in (("image_token_id", int), ("image_token", str), ("tie_word_embeddings", bool)):
        v = overrides.get(key)
        if v is not None and (not isinstance(v, tp) or (tp is int and isinstance(v, bool))):
            raise LoupeError(f"{prefix}{key}: expected {tp.__name__}, got {type(v).__name__} {v!r}")
    return cfg


def _check_folder(path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise LoupeError(f"{what} folder not found: {p}")
    if not p.is_dir():
        raise LoupeError(f"{what} must be a folder in Hugging Face format, got a file: {p}")
    return p


def prepare_tokenizer(tokenizer, template: str | None = None):
    """Add ``<image>`` (and a chat template when missing or requested); returns the tokenizer."""
    if tokenizer.convert_tokens_to_ids("<image>") in (None, tokenizer.unk_token_id):
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]}, replace_extra_special_tokens=False)
    if template is not None:
        tokenizer.chat_template = get_template(template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # batched generation (llava-hf saves the same); training pads in its collator
    return tokenizer


def _gguf_in(p: Path, gguf_file: str | None, what: str) -> str | None:
    """The GGUF file to read in a folder with no config.json (the only ``*.gguf`` there), else None."""
    if gguf_file is not None or (p / "config.json").exists() or (p / "tokenizer.json").exists():
        return gguf_file
    ggufs = sorted(p.glob("*.gguf"))
    if len(ggufs) == 1:
        return ggufs[0].name
    raise LoupeError(f"{p} is not a Hugging Face {what} folder (no config.json, and {len(ggufs)} .gguf files)")


def load_tokenizer(path, template: str | None = None, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    p = _check_folder(path, "tokenizer")
    gguf_file = _gguf_in(p, gguf_file, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True, gguf_file=gguf_file)
    except Exception as e:
        raise LoupeError(f"cannot load a tokenizer from {p}: {e}") from None
    return prepare_tokenizer(tok, template)


def tokenizer_for(preset: dict, tokenizer=None, language_model=None, gguf_file=None, chat_template=None):
    """The tokenizer of a preset: given, loaded from a folder, or built (tiny presets).

    ``chat_template`` names a Loupe template (:mod:`loupe.templates`) to install; by default a loaded
    tokenizer gets the preset's template for real-size presets and keeps its own otherwise.
    """
    spec = preset.get("tokenizer") or {}
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        return prepare_tokenizer(tokenizer, chat_template)
    path = tokenizer or language_model
    if path is not None:
        tmpl = chat_template or (spec.get("template") if spec.get("kind") == "path" else None)
        return load_tokenizer(path, template=tmpl, gguf_file=gguf_file)
    if spec.get("kind") == "tiny":
        from .tokenizer import build_tiny_tokenizer

        return build_tiny_tokenizer(spec["vocab_size"], chat_template or spec["template"])
    raise LoupeError(
        f"preset {preset['config'].get('preset')!r} has no built-in tokenizer: pass tokenizer=PATH or "
        f"language_model=PATH (a local Hugging Face folder)"
    )


def load_language_model(path, gguf_file: str | None = None, dtype=None):
    """A causal LM from a local folder (safetensors/bin, or a GGUF file inside it)."""
    from transformers import AutoModelForCausalLM

    p = _check_folder(path, "language model")
    gguf_file = _gguf_in(p, gguf_file, "model")
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(p), local_files_only=True, gguf_file=gguf_file, dtype=dtype)
    except Exception as e:
        raise LoupeError(f"cannot load a causal language model from {p}: {e}") from None
    if gguf_file is not None:  # a GGUF-loaded model refuses save_pretrained: rebuild as a plain model
        cfg = copy.deepcopy(lm.config)
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        plain = AutoModelForCausalLM.from_config(cfg)
        plain.load_state_dict(lm.state_dict(), strict=True)
        lm = plain
    return lm


def build_config(preset: str, **overrides: Any) -> LoupeConfig:
    return LoupeConfig(**merged_config(preset, overrides))


def build_model(
    preset: str,
    vision_tower: str | None = None,
    language_model: str | None = None,
    tokenizer: Any = None,
    gguf_file: str | None = None,
    **overrides: Any,
):
    """A :class:`~loupe.LoupeForConditionalGeneration` from a preset (works under ``torch.device("meta")``).

    ``overrides`` are merged into the preset's config (``connector={"pool": 2}`` keeps the connector name).
    """
    from .modeling import LoupeForConditionalGeneration

    p = get_preset(preset)
    cfg_kwargs = merged_config(preset, overrides)
    lm = None
    if language_model is not None:
        lm = load_language_model(language_model, gguf_file=gguf_file)
        cfg_kwargs["text_config"] = lm.config.to_dict()
    if language_model is not None or tokenizer is not None:
        tok = tokenizer_for(p, tokenizer=tokenizer, language_model=language_model, gguf_file=gguf_file)
        cfg_kwargs["image_token_id"] = tok.convert_tokens_to_ids("<image>")
    config = LoupeConfig(**cfg_kwargs)
    model = LoupeForConditionalGeneration(config)
    if lm is not None:
        model.language_model = lm
    if vision_tower is not None:
        model.vision_tower.load_pretrained(vision_tower)
    return model


def build_processor(preset_or_dir: str, tokenizer: Any = None, language_model: str | None = None,
                    gguf_file: str | None = None, chat_template: str | None = None, **overrides: Any):
    """A :class:`~loupe.LoupeProcessor` for a preset name or a saved Loupe folder."""
    from .processing import LoupeImageProcessor, LoupeProcessor

    p = Path(str(preset_or_dir))
    if p.is_dir():
        if not ((p / "processor_config.json").exists() or (p / "preprocessor_config.json").exists()):
            raise LoupeError(f"{p} holds no saved Loupe processor (processor_config.json)")
        return LoupeProcessor.from_pretrained(str(p), local_files_only=True)
    preset = get_preset(str(preset_or_dir))
    cfg = merged_config(str(preset_or_dir), overrides)
    image_processor = LoupeImageProcessor(slicer=cfg.get("slicer"), vision=cfg.get("vision"), connector=cfg.get("connector"))
    tok = tokenizer_for(preset, tokenizer=tokenizer, language_model=language_model, gguf_file=gguf_file,
                        chat_template=chat_template)
    return LoupeProcessor(image_processor=image_processor, tokenizer=tok)


def build(preset: str, **kwargs):
    """(model, processor) built together, so ``image_token_id`` agrees."""
    tok_keys = {"tokenizer", "language_model", "gguf_file", "chat_template"}
    merged_config(preset, {k: v for k, v in kwargs.items() if k not in tok_keys | {"vision_tower"}})
    geometry_keys = {"slicer", "vision", "connector"}  # overrides the processor must share with the model
    proc = build_processor(preset, **{k: v for k, v in kwargs.items() if k in tok_keys | geometry_keys})
    rest = {k: v for k, v in kwargs.items() if k not in ("tokenizer", "chat_template")}
    model = build_model(preset, tokenizer=proc.tokenizer, **rest)
    return model, proc
