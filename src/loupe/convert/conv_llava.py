"""ConvLLaVA releases (``alibaba/conv-llava``: ``ConvLLaVA/ConvLLaVA-sft-{768,1024,1536}``, ``-pretrain-*``;
``LlavaLlamaForCausalLM``, ``model_type`` ``llava``) -> a Loupe folder with the ``convnext`` encoder, streamed.

Where the keys come from. ``llava/train/train.py`` (``safe_save_model_for_hf_trainer``) writes two things:

* the LLM folder (``trainer.save_model`` after ``del model.model.vision_tower``): ``config.json`` with the
  ``mm_*`` fields, the tokenizer, and the weights of ``LlavaLlamaForCausalLM`` without the tower::

      model.mm_projector.{0,2}.*                        -> connector.proj.{0,2}.*   (mlp2x_gelu, 3072 -> D -> D)
      model.embed_tokens / model.layers.* / model.norm  -> language_model.model.*
      lm_head.*                                         -> language_model.lm_head.*

* ``vision_tower/`` next to it: the tower's ``ConvNextConfig`` (five stages after ``add_stage``), its
  ``CLIPImageProcessor`` and ``pytorch_model.bin`` with the plain ``ConvNextModel`` parameter names, the final
  ``layernorm.*`` deleted (the hub ``ConvLLaVA/ConvLLaVA-ConvNeXt-{768,1024,1536}`` repos hold the same)::

      embeddings.{patch_embeddings,layernorm}.*                       -> vision_tower.convnext.embeddings.*
      encoder.stages.{s}.downsampling_layer.{0,1}.*  (s >= 1)         -> vision_tower.convnext.encoder.*
      encoder.stages.{s}.layers.{l}.{dwconv,layernorm,pwconv1,pwconv2}.*, .layer_scale_parameter

The tower folder is, in this order: ``--vision-tower DIR``, ``SRC/vision_tower``, or ``mm_vision_tower`` when it
is a local folder (the sft repos name the hub tower ``ConvLLaVA/ConvLLaVA-ConvNeXt-1536``: download it and pass
it). A tower saved inside the LLM checkpoint (``model.vision_tower.vision_tower.*``) is read as well.

Dropped on purpose: ``layernorm.*`` of ``ConvNextModel`` (the final pooled LayerNorm: the official
``ConvNeXtCLIPVisionTower.forward`` reads ``encoder(...).hidden_states[-1]`` and never applies it), rotary
``inv_freq`` buffers (recomputed).

Config (``convnext_encoder.py`` ``ConvNeXtCLIPVisionTower.load_model``): ``depths`` / ``hidden_sizes`` /
``patch_size`` / ``layer_scale_init_value`` from the tower's ``config.json``; ``mm_vision_select_layer`` -1 (the
last stage output) or -2 (the official ``layers.pop(-1)``: the last block of the last stage is not run);
``image_aspect_ratio`` "pad" (``expand2square`` with the processor's mean colour, then ``CLIPImageProcessor``:
the ``pad`` slicer at the processor's crop size, or at ``mm_vision_resolution`` when the config holds one over 256,
as ``set_crop_size`` does). A tower whose config asks ``vision_add_five_stage`` (a fresh random stage added at
load) is refused: its weights are not in any checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..encoders.clip import CLIP_MEAN, CLIP_STD
from ..errors import LoupeError
from .common import ConversionReport, checkpoint_files, first_rule, plan_conversion, read_headers
from .llava import LM_TYPES, text_config, write_import
from .llava_hf import _read_json, expected_state

KEY_MAP: list[tuple[str, str]] = [
    (r"^model\.mm_projector\.(\d+)\.", r"connector.proj.\1."),
    (r"^model\.vision_tower\.vision_tower\.(embeddings|encoder)\.", r"vision_tower.convnext.\1."),
    (r"^model\.(embed_tokens|layers|norm)\.", r"language_model.model.\1."),
    (r"^lm_head\.", "language_model.lm_head."),
    # the tower folder (vision_tower/pytorch_model.bin, ConvLLaVA-ConvNeXt-*): plain ConvNextModel names
    (r"^(embeddings|encoder)\.", r"vision_tower.convnext.\1."),
]
DROPPED: list[tuple[str, str]] = [
    (r"\.rotary_emb\.inv_freq$", "rotary buffer, recomputed by the LLM"),
    (r"^(model\.vision_tower\.vision_tower\.)?layernorm\.",
     "ConvNextModel's final pooled LayerNorm, which ConvLLaVA never applies (it reads hidden_states[-1])"),
]
#: training-only fields of a ConvLLaVA config.json (not the LLM's)
_CONV_FIELDS = ("tune_", "vision_tower_lr", "vision_add_five_stage", "vision_five_stage_width", "image_size")
_TOWER = re.compile(r"^(embeddings|encoder|layernorm)\.")


def _tower_folder(src: Path, cfg: dict, vision_tower) -> Path:
    if vision_tower is not None:
        p = Path(vision_tower)
        if not (p / "config.json").exists():
            raise LoupeError(f"--vision-tower {p} is not a ConvNeXt tower folder (no config.json)")
        return p
    if (src / "vision_tower" / "config.json").exists():
        return src / "vision_tower"
    name = cfg.get("mm_vision_tower") or cfg.get("vision_tower")
    if name and (Path(name) / "config.json").exists():
        return Path(name)
    raise LoupeError(f"{src} has no vision_tower/ folder and mm_vision_tower {name!r} is not a local folder: pass "
                     f"--vision-tower DIR (the ConvNeXt folder, e.g. ConvLLaVA/ConvLLaVA-ConvNeXt-1536)")


def check_config(cfg: dict, src) -> None:
    """Refuse, named, a ``config.json`` that is not a ConvLLaVA one or asks for what Loupe does not reproduce."""
    kind = cfg.get("model_type")
    if kind not in LM_TYPES or "mm_projector_type" not in cfg and "mm_hidden_size" not in cfg:
        raise LoupeError(f"{src} holds a {kind!r} checkpoint ({', '.join(cfg.get('architectures') or [])}), not a "
                         f"ConvLLaVA one (model_type llava with mm_* fields); pick the matching --from")
    if cfg.get("mm_projector_type", "linear") != "mlp2x_gelu":
        raise LoupeError(f"{src}: mm_projector_type {cfg.get('mm_projector_type')!r} is not supported (mlp2x_gelu)")
    if cfg.get("mm_use_im_start_end"):
        raise LoupeError(f"{src}: mm_use_im_start_end (image start/end tokens) is not supported")
    if cfg.get("image_aspect_ratio", "pad") != "pad":
        raise LoupeError(f"{src}: image_aspect_ratio {cfg.get('image_aspect_ratio')!r} is not ConvLLaVA's 'pad'")
    if cfg.get("vision_add_five_stage"):
        raise LoupeError(f"{src}: vision_add_five_stage {cfg['vision_add_five_stage']} makes the official loader "
                         f"add a fresh, random ConvNeXt stage that no checkpoint holds; remove it from config.json "
                         f"when the tower folder already has its five stages")
    if int(cfg.get("mm_vision_select_layer", -1)) not in (-1, -2):
        raise LoupeError(f"{src}: mm_vision_select_layer {cfg['mm_vision_select_layer']} is not supported (-1, or "
                         f"-2 as the official pop)")


def loupe_config(cfg: dict, tower: Path, src) -> dict:
    """A ConvLLaVA ``config.json`` + its tower folder -> :class:`~loupe.LoupeConfig` kwargs."""
    check_config(cfg, src)
    layer = int(cfg.get("mm_vision_select_layer", -1))
    tc = _read_json(tower / "config.json", "ConvNeXt tower")
    if tc.get("model_type") != "convnext":
        raise LoupeError(f"{tower}: vision tower model_type {tc.get('model_type')!r} is not convnext; --from "
                         f"conv-llava takes ConvLLaVA's ConvNeXt tower (--from llava for a CLIP one)")
    depths, hidden = list(tc.get("depths") or []), list(tc.get("hidden_sizes") or [])
    if not depths or len(depths) != len(hidden) or int(tc.get("num_stages", len(depths))) != len(depths):
        raise LoupeError(f"{tower}: depths {depths} / hidden_sizes {hidden} / num_stages {tc.get('num_stages')} "
                         f"do not describe one ConvNeXt")
    if int(cfg.get("mm_hidden_size", hidden[-1])) != hidden[-1]:
        raise LoupeError(f"{src}: mm_hidden_size {cfg.get('mm_hidden_size')} differs from the tower's last width "
                         f"{hidden[-1]} ({tower})")
    if (tower / "preprocessor_config.json").exists():
        pre = _read_json(tower / "preprocessor_config.json", "ConvNeXt tower")
    else:
        raise LoupeError(f"{tower} has no preprocessor_config.json (the official code loads a CLIPImageProcessor "
                         f"from the tower folder): its preprocessing cannot be reproduced")
    if int(pre.get("resample", 3)) != 3 or not pre.get("do_rescale", True) or not pre.get("do_normalize", True):
        raise LoupeError(f"{tower}: preprocessor_config.json asks for resample {pre.get('resample')}, do_rescale "
                         f"{pre.get('do_rescale')}, do_normalize {pre.get('do_normalize')}; Loupe reproduces "
                         f"bicubic + rescale + normalize only")
    crop, size = pre.get("crop_size", 224), pre.get("size") or {}
    crop = int(crop.get("height", 0)) if isinstance(crop, dict) else int(crop)
    edge = int(size.get("shortest_edge", crop)) if isinstance(size, dict) else int(size)
    if int(cfg.get("mm_vision_resolution") or 0) > 256:  # set_crop_size: both become the resolution
        crop = edge = int(cfg["mm_vision_resolution"])
    if edge != crop:
        raise LoupeError(f"{tower}: the processor resizes to {edge} and crops {crop}; ConvLLaVA's padded square "
                         f"takes one size")
    mean, std = tuple(pre.get("image_mean", CLIP_MEAN)), tuple(pre.get("image_std", CLIP_STD))
    vision = {"name": "convnext", "depths": depths, "hidden_sizes": hidden,
              "patch_size": int(tc.get("patch_size", 4)),
              "layer_scale_init_value": float(tc.get("layer_scale_init_value", 1e-6)), "select_layer": layer,
              "image_mean": mean, "image_std": std}
    return dict(slicer={"name": "pad", "tile_size": crop, "mode": "pad", "fill": mean}, vision=vision,
                connector={"name": "mlp", "depth": 2}, text_config=text_config(cfg, _CONV_FIELDS),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)))


def plan_import(src, vision_tower=None, image_token_id: int | None = None):
    """(LoupeConfig, plan, refs) of a ConvLLaVA folder (+ its tower folder), from headers only."""
    from ..configuration import LoupeConfig

    src = Path(src)
    cfg = _read_json(src / "config.json", "ConvLLaVA model")
    check_config(cfg, src)
    refs = read_headers(checkpoint_files(src, "ConvLLaVA checkpoint"))
    tower = _tower_folder(src, cfg, vision_tower)
    if not any(r.name.startswith("model.vision_tower.vision_tower.") for r in refs):  # the official save
        tower_refs = read_headers(checkpoint_files(tower, "ConvNeXt tower"))
        foreign = [r.name for r in tower_refs if not _TOWER.match(r.name)]
        if foreign:
            raise LoupeError(f"{tower} does not hold plain ConvNextModel weights (embeddings.*, encoder.*): "
                             f"{foreign[:4]}")
        refs += tower_refs
    config = LoupeConfig(**loupe_config(cfg, tower, src),
                         image_token_id=image_token_id if image_token_id is not None else 0)
    report = plan_conversion(refs, lambda k: first_rule(KEY_MAP, k), DROPPED, expected_state(config))
    return config, report, refs


def import_folder(src, dst, vision_tower=None, language_model=None, dtype=None,
                  dry_run: bool = False) -> ConversionReport:
    """A ConvLLaVA folder -> a complete Loupe folder (see the module docstring). ``language_model``: the folder to
    take the tokenizer from when ``src`` has none."""
    return write_import(src, dst, lambda tid=None: plan_import(src, vision_tower, tid), language_model, dtype,
                        dry_run)
