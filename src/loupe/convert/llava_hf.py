"""llava-hf checkpoints (transformers ``LlavaForConditionalGeneration`` / ``LlavaNextForConditionalGeneration``)
<-> Loupe folders, both ways, streamed.

Key layouts read (:func:`to_hub` brings each to the canonical hub layout, first matching rule wins):

* the hub layout (``llava-hf/llava-1.5-7b-hf``, ``llava-hf/llava-v1.6-vicuna-7b-hf``)::

      vision_tower.vision_model.*                 -> vision_tower.vision_model.*  (CLIPVisionModel names)
      multi_modal_projector.linear_{1,2}.*        -> connector.proj.{0,2}.*
      image_newline  (LLaVA-NeXT)                 -> connector.image_newline
      language_model.model.*                      -> language_model.model.*
      language_model.lm_head.*                    -> language_model.lm_head.*

* transformers 5's in-memory names (``model.vision_tower.*``, ``model.multi_modal_projector.*``,
  ``model.language_model.*``, ``model.image_newline``, ``lm_head.*``; transformers' ``conversion_mapping.py``
  renames the hub layout to these at load);
* what transformers 5.23's ``save_pretrained`` writes: ``vision_tower.embeddings.*`` (no ``vision_model``) next to
  ``language_model.model.*``.

Dropped on purpose: old rotary ``inv_freq`` buffers and CLIP ``position_ids`` buffers (recomputed). Export
(:func:`export`) writes the hub layout, which transformers 5 loads (and which vLLM / SGLang read).

Preprocessing (``preprocessor_config.json``): a ``CLIPImageProcessor`` (llava-hf LLaVA-1.5) is a shortest-edge
resize + centre crop (the ``pad`` slicer's ``mode="crop"``), ``LlavaImageProcessor(do_pad=True)`` is the original
``expand2square`` (``mode="pad"``); ``LlavaNextImageProcessor`` is ``anyres`` with the config's
``image_grid_pinpoints`` read as (height, width) (``pinpoint_order="hw"``, transformers' order and tie-breaking).
The model side: ``vision_feature_select_strategy="default"`` (CLS dropped), ``vision_feature_layer`` an int,
``projector_hidden_act="gelu"``; LLaVA-NeXT unpads with transformers' rounding. Anything else is refused, named.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

from ..errors import LoupeError
from .common import (ConversionReport, atomic_folder, checkpoint_files, first_rule, parse_dtype, plan_conversion,
                     read_headers, refuse, write_weights)

#: any of the three llava-hf layouts -> the hub layout (data; the first rule that matches wins)
TO_HUB: list[tuple[str, str]] = [
    (r"^model\.vision_tower\.", "vision_tower.vision_model."),  # transformers 5 in memory
    (r"^model\.multi_modal_projector\.", "multi_modal_projector."),
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.", "language_model.lm_head."),
    (r"^model\.image_newline$", "image_newline"),
    (r"^vision_tower\.vision_model\.", "vision_tower.vision_model."),  # the hub layout
    (r"^vision_tower\.", "vision_tower.vision_model."),  # transformers 5.23 save_pretrained
    (r"^(language_model\.(model|lm_head)\.|multi_modal_projector\.linear_[12]\.|image_newline$)", r"\1"),
]
#: the hub layout -> Loupe's names (data; first match wins)
HUB_TO_LOUPE: list[tuple[str, str]] = [
    (r"^vision_tower\.vision_model\.", "vision_tower.vision_model."),
    (r"^multi_modal_projector\.linear_1\.", "connector.proj.0."),
    (r"^multi_modal_projector\.linear_2\.", "connector.proj.2."),
    (r"^image_newline$", "connector.image_newline"),
    (r"^language_model\.model\.", "language_model.model."),
    (r"^language_model\.lm_head\.", "language_model.lm_head."),
]
#: Loupe's names -> the hub layout (the inverse of HUB_TO_LOUPE)
LOUPE_TO_HUB: list[tuple[str, str]] = [
    (r"^vision_tower\.vision_model\.", "vision_tower.vision_model."),
    (r"^connector\.proj\.0\.", "multi_modal_projector.linear_1."),
    (r"^connector\.proj\.2\.", "multi_modal_projector.linear_2."),
    (r"^connector\.image_newline$", "image_newline"),
    (r"^language_model\.model\.", "language_model.model."),
    (r"^language_model\.lm_head\.", "language_model.lm_head."),
]
#: source names dropped on purpose, with the reason
DROPPED: list[tuple[str, str]] = [
    (r"\.rotary_emb\.inv_freq$", "rotary buffer, recomputed by the LLM"),
    (r"embeddings\.position_ids$", "CLIP position_ids buffer, recomputed"),
]
ARCHITECTURES = {"llava": "LlavaForConditionalGeneration", "llava_next": "LlavaNextForConditionalGeneration"}
_CONFIG_JUNK = ("transformers_version", "architectures", "dtype", "torch_dtype", "_name_or_path")


def to_hub(name: str) -> str | None:
    """The hub-layout name of a key in any of the three llava-hf layouts (None: not a llava-hf key)."""
    return first_rule(TO_HUB, name)


def to_loupe(name: str) -> str | None:
    """The Loupe name of a key in any llava-hf layout."""
    hub = to_hub(name)
    return None if hub is None else first_rule(HUB_TO_LOUPE, hub)


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LoupeError(f"{path.parent} is not a {what} folder: no {path.name}") from None
    except (OSError, ValueError) as e:
        raise LoupeError(f"cannot read {path}: {e}") from None


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _CONFIG_JUNK}


def check_architecture(cfg: dict, src="SRC") -> None:
    """Refuse, named, a ``config.json`` that is not a llava-hf one. The original LLaVA repo (and its ConvLLaVA
    fork) also says ``model_type: llava``, but with ``mm_*`` fields and no ``text_config``."""
    kind = cfg.get("model_type")
    if kind not in ARCHITECTURES:
        raise LoupeError(f"{src} holds a {kind!r} checkpoint ({', '.join(cfg.get('architectures') or [])}), not a "
                         f"llava-hf LLaVA-1.5 / LLaVA-NeXT one (model_type 'llava' or 'llava_next'); pick the "
                         f"matching --from")
    if "text_config" not in cfg or any(k.startswith("mm_") for k in cfg):
        tower = str(cfg.get("mm_vision_tower") or "")
        fmt = "conv-llava" if "convnext" in tower.lower() else "llava"
        raise LoupeError(f"{src} is in the original LLaVA repo layout ({', '.join(cfg.get('architectures') or [])}, "
                         f"mm_* fields, no text_config), not llava-hf's; use --from {fmt}")


def loupe_config(cfg: dict, pre: dict, src="SRC") -> dict:
    """``config.json`` + ``preprocessor_config.json`` of a llava-hf folder -> :class:`~loupe.LoupeConfig` kwargs."""
    from transformers import CLIPVisionConfig

    check_architecture(cfg, src)
    kind = cfg.get("model_type")
    vc = dict(cfg.get("vision_config") or {})
    if vc.get("model_type", "clip_vision_model") != "clip_vision_model":
        raise LoupeError(f"{src}: vision tower {vc.get('model_type')!r} is not CLIP; Loupe's llava-hf import takes CLIP")
    layer = cfg.get("vision_feature_layer", -2)
    if not isinstance(layer, int):
        raise LoupeError(f"{src}: vision_feature_layer {layer!r} (several layers) is not supported; one int is")
    if cfg.get("vision_feature_select_strategy", "default") != "default":
        raise LoupeError(f"{src}: vision_feature_select_strategy "
                         f"{cfg.get('vision_feature_select_strategy')!r} is not supported (only 'default')")
    if cfg.get("projector_hidden_act", "gelu") != "gelu" or not cfg.get("multimodal_projector_bias", True):
        raise LoupeError(f"{src}: projector {cfg.get('projector_hidden_act')!r} without/with bias is not Loupe's "
                         f"mlp2x_gelu")
    known = set(CLIPVisionConfig().to_dict())
    hf_config = {k: v for k, v in vc.items() if k in known and k not in _CONFIG_JUNK + ("model_type",)}
    tile_v = int(vc.get("image_size", 224))
    vision = {"name": "clip", "hf_config": hf_config, "select_layer": layer}
    if pre.get("image_mean") is not None:
        vision.update(image_mean=tuple(pre["image_mean"]), image_std=tuple(pre["image_std"]))
    if int(pre.get("resample", 3)) != 3 or not pre.get("do_rescale", True) or not pre.get("do_normalize", True):
        raise LoupeError(f"{src}: preprocessor_config.json asks for resample {pre.get('resample')}, do_rescale "
                         f"{pre.get('do_rescale')}, do_normalize {pre.get('do_normalize')}; Loupe reproduces bicubic "
                         f"+ rescale + normalize only")
    crop = pre.get("crop_size") or {}
    tile = int(crop.get("height", tile_v)) if isinstance(crop, dict) else int(crop)
    if tile != tile_v:
        raise LoupeError(f"{src}: the processor's crop size {tile} differs from the vision tower's image_size {tile_v}")
    text = _clean(dict(cfg["text_config"]))
    if kind == "llava":
        size = pre.get("size") or {}
        if pre.get("do_pad"):
            mode = "pad"
        elif pre.get("do_center_crop", True) and "shortest_edge" in size:
            mode = "crop"
        else:
            mode = "resize"
        slicer = {"name": "pad", "tile_size": tile, "mode": mode}
        connector = {"name": "mlp", "depth": 2}
    else:
        pinpoints = cfg.get("image_grid_pinpoints") or pre.get("image_grid_pinpoints")
        slicer = {"name": "anyres", "tile_size": tile, "pinpoints": [list(p) for p in pinpoints],
                  "pinpoint_order": "hw"}
        connector = {"name": "llava_next", "depth": 2, "merge": "spatial_unpad", "unpad_rounding": "transformers"}
    token = cfg.get("image_token_index", cfg.get("image_token_id"))
    return dict(slicer=slicer, vision=vision, connector=connector, text_config=text, image_token_id=token,
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))))


def expected_state(config) -> dict:
    """{name: shape} of a Loupe model of ``config``, built on the meta device (no memory)."""
    from ..modeling import LoupeForConditionalGeneration

    with torch.device("meta"):
        model = LoupeForConditionalGeneration(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _required(config):
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return lambda k: not (tied and k == "language_model.lm_head.weight")


def chat_template_of(src: Path, tokenizer) -> str | None:
    """The chat template a folder ships: the tokenizer's, else the processor's ``chat_template.jinja/json``."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    if (src / "chat_template.jinja").exists():
        return (src / "chat_template.jinja").read_text()
    if (src / "chat_template.json").exists():
        return _read_json(src / "chat_template.json", "processor").get("chat_template")
    return None


def _load_tokenizer(src: Path, template_fallback: str | None = "vicuna_v1"):
    from transformers import AutoTokenizer

    from ..builder import prepare_tokenizer
    from ..templates import get_template

    if not any((src / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise LoupeError(f"{src} holds no tokenizer (tokenizer.json / tokenizer_config.json)")
    try:
        tok = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    except Exception as e:
        raise LoupeError(f"cannot load the tokenizer of {src}: {e}") from None
    template = chat_template_of(src, tok)
    tok = prepare_tokenizer(tok)
    tok.chat_template = template or (get_template(template_fallback) if template_fallback else None)
    left_padded(tok)
    return tok


def left_padded(tok):
    """``padding_side="left"``, also in what ``save_pretrained`` writes (transformers 5 saves the init kwargs)."""
    tok.padding_side = "left"
    tok.init_kwargs["padding_side"] = "left"
    return tok


def image_processor_config(src: Path) -> dict:
    """The image processor's settings: ``preprocessor_config.json``, or the ``image_processor`` entry of
    ``processor_config.json`` (where transformers 5 writes it)."""
    if (src / "preprocessor_config.json").exists():
        return _read_json(src / "preprocessor_config.json", "llava-hf processor")
    if (src / "processor_config.json").exists():
        pre = _read_json(src / "processor_config.json", "llava-hf processor").get("image_processor")
        if isinstance(pre, dict):
            return pre
    raise LoupeError(f"{src} has no image processor settings (preprocessor_config.json, or an image_processor entry "
                     f"in processor_config.json): its preprocessing cannot be reproduced")


def plan_import(src, dst=None) -> tuple[object, ConversionReport, list]:
    """(LoupeConfig, plan, source tensor refs) of a llava-hf folder, from its headers only."""
    from ..configuration import LoupeConfig

    src = Path(src)
    if not src.is_dir():
        raise LoupeError(f"llava-hf source must be a folder: {src}")
    cfg = _read_json(src / "config.json", "llava-hf model")
    check_architecture(cfg, src)
    pre = image_processor_config(src)
    kwargs = loupe_config(cfg, pre, src)
    files = checkpoint_files(src, "llava-hf checkpoint")
    config = LoupeConfig(**kwargs)
    refs = read_headers(files)
    report = plan_conversion(refs, to_loupe, DROPPED, expected_state(config), _required(config))
    return config, report, refs


def import_folder(src, dst, dtype=None, dry_run: bool = False) -> ConversionReport:
    """A llava-hf folder -> a complete Loupe folder ``dst`` (model, processor, tokenizer with left padding and the
    chat template). Written to a temporary sibling and renamed at the end; refused with the full plan on any
    missing / unexpected / mis-shaped tensor. ``dry_run``: the plan only."""
    from ..processing import LoupeImageProcessor, LoupeProcessor

    src = Path(src)
    dtype = parse_dtype(dtype)
    config, report, refs = plan_import(src)
    if dry_run:
        return report
    refuse(report, src)
    tok = _load_tokenizer(src)
    tid = tok.convert_tokens_to_ids("<image>")
    if tid != config.image_token_id:
        raise LoupeError(f"{src}: the tokenizer's <image> is id {tid}, the config's image_token_index "
                         f"{config.image_token_id}")
    if dtype is not None:
        config.dtype = str(dtype).removeprefix("torch.")
    with atomic_folder(dst) as tmp:
        write_weights(tmp, refs, report, dtype)
        config.save_pretrained(tmp)
        if (src / "generation_config.json").exists():
            shutil.copy(src / "generation_config.json", tmp / "generation_config.json")
        image_processor = LoupeImageProcessor.from_config(config)
        LoupeProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(tmp)
    return report


# --- export: a Loupe folder -> a transformers-native llava-hf folder ---------------------------------------------

def export_config(config, src="SRC"):
    """A Loupe config -> (transformers ``LlavaConfig`` / ``LlavaNextConfig``, image processor); a part with no
    transformers equivalent is refused, named."""
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaNextConfig
    from transformers.models.clip import CLIPImageProcessorPil
    from transformers.models.llava import LlavaImageProcessorPil
    from transformers.models.llava_next import LlavaNextImageProcessorPil

    v, c, s = config.vision, config.connector, config.slicer
    pairs = {"mlp": "pad", "llava_next": "anyres"}
    if c["name"] not in pairs:
        raise LoupeError(f"{src}: the connector {c['name']!r} has no transformers equivalent (llava-hf takes 'mlp' "
                         f"(LLaVA-1.5) or 'llava_next' (LLaVA-NeXT))")
    if c.get("depth") != 2 or c.get("act") != "gelu" or c.get("pool", 1) != 1:
        raise LoupeError(f"{src}: the connector {c['name']!r} with depth {c.get('depth')}, act {c.get('act')!r}, "
                         f"pool {c.get('pool', 1)} is not transformers' 2-layer gelu projector")
    if c["name"] == "llava_next" and (c.get("merge") != "spatial_unpad" or c.get("unpad_rounding") != "transformers"):
        raise LoupeError(f"{src}: the connector llava_next with merge {c.get('merge')!r} / unpad_rounding "
                         f"{c.get('unpad_rounding')!r} has no transformers equivalent (spatial_unpad, transformers)")
    if v["name"] != "clip" or v.get("native_aspect") or not v.get("drop_cls", True):
        raise LoupeError(f"{src}: the vision encoder {v['name']!r}{' (native_aspect)' if v.get('native_aspect') else ''}"
                         f" has no transformers LLaVA equivalent (llava-hf takes a plain CLIP tower)")
    if s["name"] != pairs[c["name"]]:
        raise LoupeError(f"{src}: the slicer {s['name']!r} with the connector {c['name']!r} has no transformers "
                         f"equivalent (expected {pairs[c['name']]!r})")
    hf = dict(v["hf_config"])
    tile, patch = int(s["tile_size"]), int(hf.get("patch_size", 14))
    if tile != int(hf.get("image_size", 224)):
        raise LoupeError(f"{src}: the slicer's tile_size {tile} differs from CLIP's image_size {hf.get('image_size')}")
    text = config.text_config.to_dict()
    common = dict(vision_config=CLIPVisionConfig(**hf).to_dict(), text_config=_clean(text),
                  image_token_index=config.image_token_id, vision_feature_layer=int(v["select_layer"]),
                  vision_feature_select_strategy="default", projector_hidden_act="gelu",
                  image_seq_length=(tile // patch) ** 2, tie_word_embeddings=bool(config.tie_word_embeddings))
    norm = dict(image_mean=list(v["image_mean"]), image_std=list(v["image_std"]))
    if c["name"] == "mlp":
        out = LlavaConfig(**common)
        out.architectures = [ARCHITECTURES["llava"]]
        size, crop = {"shortest_edge": tile}, {"height": tile, "width": tile}
        if s["mode"] == "pad":
            ip = LlavaImageProcessorPil(do_pad=True, size=size, crop_size=crop, **norm)
        elif s["mode"] == "crop":
            ip = CLIPImageProcessorPil(size=size, crop_size=crop, **norm)
        else:
            ip = CLIPImageProcessorPil(size={"height": tile, "width": tile}, do_center_crop=False, **norm)
    else:
        order = s.get("pinpoint_order", "wh")
        hw = [[int(a), int(b)] if order == "hw" else [int(b), int(a)] for a, b in s["pinpoints"]]
        out = LlavaNextConfig(image_grid_pinpoints=hw, **common)
        out.architectures = [ARCHITECTURES["llava_next"]]
        ip = LlavaNextImageProcessorPil(image_grid_pinpoints=hw, size={"shortest_edge": tile},
                                        crop_size={"height": tile, "width": tile}, **norm)
    return out, ip


def export_folder(src, dst, dtype=None, dry_run: bool = False) -> ConversionReport:
    """A Loupe folder whose parts are LLaVA-1.5 or LLaVA-NeXT compatible -> a transformers-native folder (config,
    safetensors in the hub layout, processor, tokenizer) that ``LlavaForConditionalGeneration`` /
    ``LlavaNextForConditionalGeneration`` + ``AutoProcessor`` load without Loupe."""
    from transformers import AutoTokenizer
    from transformers.models.llava import LlavaProcessor
    from transformers.models.llava_next import LlavaNextProcessor

    from ..configuration import LoupeConfig

    src = Path(src)
    dtype = parse_dtype(dtype)
    cfg = _read_json(src / "config.json", "Loupe model")
    if cfg.get("model_type") != "loupe":
        raise LoupeError(f"{src} is not a Loupe model folder (model_type {cfg.get('model_type')!r}); --to llava-hf "
                         f"exports Loupe folders")
    config = LoupeConfig.from_pretrained(str(src))
    hf_config, image_processor = export_config(config, src)
    files = checkpoint_files(src, "Loupe checkpoint")
    refs = read_headers(files)
    expected = {first_rule(LOUPE_TO_HUB, k): shape for k, shape in expected_state(config).items()}
    report = plan_conversion(refs, lambda k: first_rule(LOUPE_TO_HUB, k), DROPPED, expected,
                             _required_hub(config))
    if dry_run:
        return report
    refuse(report, src)
    try:
        tok = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    except Exception as e:
        raise LoupeError(f"cannot load the tokenizer of {src}: {e}") from None
    left_padded(tok)
    if dtype is not None:
        hf_config.dtype = str(dtype).removeprefix("torch.")
    cls = LlavaProcessor if hf_config.model_type == "llava" else LlavaNextProcessor
    proc = cls(image_processor=image_processor, tokenizer=tok, patch_size=hf_config.vision_config.patch_size,
               vision_feature_select_strategy="default", num_additional_image_tokens=1,
               chat_template=getattr(tok, "chat_template", None), image_token="<image>")
    with atomic_folder(dst) as tmp:
        write_weights(tmp, refs, report, dtype)
        hf_config.save_pretrained(tmp)
        if (src / "generation_config.json").exists():
            shutil.copy(src / "generation_config.json", tmp / "generation_config.json")
        proc.save_pretrained(tmp)
    return report


def _required_hub(config):
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return lambda k: not (tied and k == "language_model.lm_head.weight")


def canonical(state_dict: dict) -> dict:
    """A llava-hf state dict in any of the three layouts, under hub-layout names (for comparisons)."""
    out = {}
    for k, v in state_dict.items():
        if any(re.search(p, k) for p, _ in DROPPED):
            continue
        hub = to_hub(k)
        if hub is None:
            raise LoupeError(f"{k!r} is not a llava-hf key")
        out[hub] = v
    return out
