"""Training recipes: a model plus a list of stages, each stage pure data (nothing in a stage is code).

A recipe reproduces one paper table (``recipes/<method>.yaml``, the table cited in its first lines). A stage
names its data, which parts train and at what learning rate (0 = frozen, as in nanoVLM), the schedule, the
batch, the length budget, LoRA, and what it starts from. Example::

    name: llava15-7b
    model: {preset: llava15-7b, vision_tower: models/clip-l-336, language_model: models/vicuna-7b-v1.5}
    data_root: data                       # relative data paths are joined to this (itself relative to cwd)
    stages:
      - name: pretrain
        data: {path: blip_laion_cc_sbu_558k.json, image_root: images, template: plain}
        parts: {connector: 1.0e-3}        # unlisted parts are frozen; `part: LR` or `part: {lr, only, exclude}`
        global_batch_size: 256            # per_device_batch_size is a ceiling: accumulation fills the rest
        per_device_batch_size: 32
      - name: finetune
        init_from: previous               # previous stage's output (default) | model | a saved Loupe folder
        data: {path: llava_v1_5_mix665k.json, template: vicuna_v1}
        parts:
          connector: 2.0e-5
          language_model: {lr: 2.0e-5, only: ['language_model\\.model\\.layers\\.(2[4-9]|3[01])\\.']}

A stage trains with an objective (:mod:`loupe.objectives`, default ``lm``) given by name or as
``objective: {name: vdim, n_jitters: 2, ...}``, its options checked by the objective's own ``Config``;
``model_overrides: {slicer: {never_split: true}}`` changes the model's settings for that stage only (the
saved model keeps its own). The spelling of earlier versions (``slicer: {...}`` on the stage, and an
objective's options under a key named after it: ``objective: vdim`` + ``vdim: {...}``) still loads.

Sub-module patterns (``only`` / ``exclude``) are regular expressions matched with ``re.match`` against full
parameter names (``vision_tower.vision_model.encoder.layers.12.mlp.fc1.weight``); each must match at least
one parameter of its part, so a typo fails loudly instead of silently freezing (see :mod:`.freezing`).

Loading is strict (:mod:`.strict`): unknown keys fail with the list of valid keys. ``key=value`` overrides
(the CLI's) address the same tree: ``seed=1``, ``stages.2.max_steps=10`` (stages numbered from 1, as
``--stage``), ``stages.finetune.parts.connector=1e-4`` (by name), ``stages.*.precision=fp32`` (every stage).
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import LoupeError
from ..validation import bounded
from .strict import field_names, from_dict

log = logging.getLogger("loupe.train")

PART_NAMES = ("vision_tower", "connector", "language_model")
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelSpec:
    """What stage 1 starts from: a preset, optionally with local weights and config overrides."""

    preset: str
    vision_tower: str | None = None  # a local HF CLIP folder
    language_model: str | None = None  # a local causal-LM folder
    tokenizer: str | None = None
    gguf_file: str | None = None
    config: dict = field(default_factory=dict)  # merged into the preset's LoupeConfig kwargs

    @classmethod
    def _coerce(cls, value):
        return {"preset": value} if isinstance(value, str) else value


@dataclass
class DataSpec:
    path: str  # LLaVA JSON (a list) or JSONL (one record per line)
    image_root: str | None = None  # image paths in records are relative to this (default: the data file's folder)
    template: str | None = None  # a loupe.templates name; None = the tokenizer's own chat template
    on_bad_record: Literal["skip", "fail"] = "skip"
    max_bad_fraction: float = bounded(0.05, min=0.0, max=1.0)  # more skipped records than this share fails the stage
    check_files: bool = True  # upfront pass: image files exist (a stat, no decoding)
    num_workers: int = bounded(0, min=0)

    def __post_init__(self):
        if not 0 <= self.max_bad_fraction <= 1:
            raise LoupeError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        if self.template is not None:
            from ..templates import TEMPLATES

            if self.template not in TEMPLATES:
                raise LoupeError(f"unknown template {self.template!r}; known: {', '.join(sorted(TEMPLATES))}")


@dataclass
class PartSpec:
    """One part's learning rate (0 = frozen) and, optionally, which of its sub-modules train."""

    lr: float = bounded(min=0.0)
    only: list[str] = field(default_factory=list)  # regexes (re.match on full names); empty = the whole part
    exclude: list[str] = field(default_factory=list)

    @classmethod
    def _coerce(cls, value):
        return {"lr": value} if isinstance(value, (int, float, str)) and not isinstance(value, bool) else value

    def __post_init__(self):
        if self.lr < 0:
            raise LoupeError(f"lr must be >= 0 (0 = frozen), got {self.lr}")
        for p in self.only + self.exclude:
            try:
                re.compile(p)
            except re.error as e:
                raise LoupeError(f"bad pattern {p!r}: {e}") from None


@dataclass
class LoraSpec:
    """PEFT LoRA on the language model; its ``lr`` is ``parts.language_model``."""

    r: int = bounded(8, min=1)
    alpha: int = bounded(16, min=1)
    dropout: float = bounded(0.05, min=0.0, lt=1.0)
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))


@dataclass
class ModelOverrides:
    """A stage's own model settings (only those that leave the weights' shapes alone)."""

    slicer: dict = field(default_factory=dict)  # merged into the model's slicer: {**model.slicer, **this}


@dataclass
class Stage:
    name: str
    data: DataSpec
    parts: dict[str, PartSpec]
    init_from: str = "previous"  # previous | model | PATH of a saved Loupe folder
    # a registered objective (loupe.objectives): its name, or {name: NAME, **options} checked by its Config;
    # after loading, always the full mapping with every option (defaults filled in)
    objective: str | dict = "lm"
    # this stage's model settings that change no weight, e.g. {slicer: {never_split: true}} (overview only);
    # the stage's data is prepared with them, the saved model keeps its own
    model_overrides: ModelOverrides = field(default_factory=ModelOverrides)
    lora: LoraSpec | None = None
    global_batch_size: int = bounded(8, min=1)
    per_device_batch_size: int = bounded(8, min=1)  # a ceiling; the engine picks the largest divisor that fits
    epochs: float = bounded(1.0, gt=0.0)
    max_steps: int | None = bounded(None, min=1)  # overrides epochs
    max_length: int = bounded(2048, min=1)  # after image expansion; never cut inside an image
    schedule: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = bounded(0.03, min=0.0, lt=1.0)
    weight_decay: float = bounded(0.0, min=0.0)
    max_grad_norm: float = bounded(1.0, min=0.0)  # 0: no clipping
    optimizer: Literal["adamw_torch", "adamw_torch_fused", "nadam", "sgd", "adafactor"] = "adamw_torch"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto = bf16 on a bf16 GPU, else fp32
    gradient_checkpointing: bool = False
    group_by_length: bool = True  # LLaVA's group_by_modality_length
    save_steps: int = bounded(500, min=1)
    save_total_limit: int | None = bounded(2, min=1)
    logging_steps: int = bounded(1, min=1)
    deepspeed: str | None = None  # a DeepSpeed JSON (configs/deepspeed/zero{2,3}.json)
    fsdp: bool = False  # FSDP through the Trainer/accelerate (GPUs only); wrapping from _no_split_modules
    fsdp_config: dict = field(default_factory=dict)  # TrainingArguments.fsdp_config; version 2 by default

    @classmethod
    def _coerce(cls, value):
        """The spelling before objectives were parts: ``slicer: {...}`` (now ``model_overrides.slicer``) and
        the options of an objective under a key named after it (``objective: vdim`` + ``vdim: {...}``, now
        ``objective: {name: vdim, ...}``); translated, with a warning that shows the new spelling."""
        if not isinstance(value, dict):
            return value
        from ..registry import OBJECTIVES

        value = dict(value)
        if "slicer" in value:
            legacy = value.pop("slicer")
            if legacy:
                over = dict(value.get("model_overrides") or {})
                newer = over.get("slicer") or {}
                both = isinstance(legacy, dict) and isinstance(newer, dict)
                over["slicer"] = {**legacy, **newer} if both else legacy
                value["model_overrides"] = over
                log.warning("stage %r: `slicer: ...` is now `model_overrides: {slicer: ...}`", value.get("name"))
        obj = value.get("objective", cls.__dataclass_fields__["objective"].default)
        name = obj if isinstance(obj, str) else obj.get("name") if isinstance(obj, dict) else None
        for key in [k for k in value if k in OBJECTIVES and k not in field_names(cls)]:
            options = value.pop(key)
            if key != name:
                if options:
                    raise LoupeError(f"options for objective {key!r} given, but the stage's objective is "
                                     f"{name!r}")
                continue
            if options:
                if not isinstance(options, dict):
                    raise LoupeError(f"{key}: expected a mapping of objective options, got {options!r}")
                value["objective"] = {**options, **(obj if isinstance(obj, dict) else {"name": name})}
                log.warning("stage %r: `objective: %s` + `%s: {...}` is now `objective: {name: %s, ...}`",
                            value.get("name"), key, key, key)
        return value

    def __post_init__(self):
        from ..objectives import build_objective, objective_spec

        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise LoupeError(f"stage name {self.name!r} must be letters, digits, '_', '-', '.'")
        self.objective = objective_spec(self.objective)
        build_objective(self.objective).check_stage(self)
        for k in self.parts:
            if k not in PART_NAMES:
                raise LoupeError(f"unknown part {k!r} in parts; parts: {', '.join(PART_NAMES)}")
        if not any(p.lr > 0 for p in self.parts.values()):
            raise LoupeError("no part has lr > 0: nothing would train")
        if self.lora is not None and (self.parts.get("language_model") is None or self.parts["language_model"].lr <= 0):
            raise LoupeError("lora needs parts.language_model with lr > 0 (the adapters' learning rate)")
        if self.lora is not None and (self.parts["language_model"].only or self.parts["language_model"].exclude):
            raise LoupeError("with lora, parts.language_model takes an lr only (LoRA picks its modules)")
        for name in ("global_batch_size", "per_device_batch_size", "max_length", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise LoupeError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise LoupeError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.epochs <= 0:
            raise LoupeError(f"epochs must be > 0, got {self.epochs}")
        if not 0 <= self.warmup_ratio < 1:
            raise LoupeError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise LoupeError(f"weight_decay and max_grad_norm must be >= 0, got {self.weight_decay} and "
                             f"{self.max_grad_norm}")
        if self.deepspeed and self.fsdp:
            raise LoupeError("choose deepspeed or fsdp, not both")

    @property
    def max_lr(self) -> float:
        return max(p.lr for p in self.parts.values())


@dataclass
class Recipe:
    name: str
    model: ModelSpec
    stages: list[Stage]
    seed: int = bounded(42, min=0)
    data_root: str = "."
    output_dir: str | None = None  # default: runs/<name>

    def __post_init__(self):
        if not self.stages:
            raise LoupeError("a recipe needs at least one stage")
        names = [s.name for s in self.stages]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise LoupeError(f"stage names must be unique; repeated: {', '.join(sorted(dup))}")

    def stage_index(self, key: str | int) -> int:
        """0-based index of a stage given as 1-based number or name."""
        if isinstance(key, int) or str(key).isdigit():
            k = int(key)
            if not 1 <= k <= len(self.stages):
                raise LoupeError(f"stage {k} does not exist; this recipe has stages 1..{len(self.stages)}")
            return k - 1
        for i, s in enumerate(self.stages):
            if s.name == key:
                return i
        raise LoupeError(f"no stage named {key!r}; stages: {', '.join(s.name for s in self.stages)}")


# --- loading -----------------------------------------------------------------------------------------------
def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override (``key=value``) and validate a recipe YAML file."""
    p = Path(path)
    if not p.is_file():
        raise LoupeError(f"recipe file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise LoupeError(f"recipe {p} is not valid YAML: {e}") from None
    return recipe_from_dict(raw, overrides, where=str(p))


def recipe_from_dict(raw: Any, overrides: list[str] | tuple[str, ...] = (), where: str = "recipe") -> Recipe:
    if not isinstance(raw, dict):
        raise LoupeError(f"{where}: a recipe is a mapping with keys name, model, stages, ...")
    raw = apply_overrides(raw, overrides)
    recipe = from_dict(Recipe, raw, where)
    check_model_config(recipe)
    return recipe


def check_model_config(recipe: Recipe) -> None:
    """``model.config`` (and each stage's ``model_overrides.slicer``) against the preset, typed and strict, when
    the preset is registered: ``model.config.slicr`` or ``model.config.slicer.tile_size: "336"`` fail at load
    time."""
    from ..builder import merged_config
    from ..presets import list_presets
    from ..registry import SLICERS

    if recipe.model.preset not in list_presets():
        return
    cfg = merged_config(recipe.model.preset, recipe.model.config, where="model.config")
    for i, stage in enumerate(recipe.stages, 1):
        if stage.model_overrides.slicer:
            SLICERS.config({**cfg["slicer"], **stage.model_overrides.slicer},
                           where=f"stages.{i}.model_overrides.slicer")


def apply_overrides(raw: dict, overrides) -> dict:
    """``a.b.c=value`` edits of the raw recipe tree; values are parsed as YAML scalars/lists."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise LoupeError(f"override {item!r} is not key=value")
        key, _, text = item.partition("=")
        try:
            value = yaml.safe_load(text) if text != "" else None
        except yaml.YAMLError:
            value = text
        keys = key.strip().split(".")
        if not all(keys):
            raise LoupeError(f"override {item!r} has an empty key")
        for target, rest in _targets(raw, keys, item):
            _set(target, rest, value, item)
    return raw


def _targets(raw: dict, keys: list[str], item: str):
    if keys[0] != "stages":
        return [(raw, keys)]
    stages = raw.get("stages")
    if not isinstance(stages, list) or len(keys) < 3:
        raise LoupeError(f"override {item!r}: use stages.<number|name|*>.<key>=value")
    sel = keys[1]
    if sel == "*":
        picked = stages
    elif sel.isdigit():
        k = int(sel)
        if not 1 <= k <= len(stages):
            raise LoupeError(f"override {item!r}: stage {k} does not exist (stages are numbered 1..{len(stages)})")
        picked = [stages[k - 1]]
    else:
        picked = [s for s in stages if isinstance(s, dict) and s.get("name") == sel]
        if not picked:
            names = [s.get("name") for s in stages if isinstance(s, dict)]
            raise LoupeError(f"override {item!r}: no stage named {sel!r}; stages: {names}")
    return [(s, keys[2:]) for s in picked]


def _set(node: dict, keys: list[str], value, item: str) -> None:
    keys_root = node
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None or isinstance(nxt, (int, float, str)) and not isinstance(nxt, bool):
            # a shorthand grows into its mapping: `model: PRESET` -> {preset}, `parts.connector: LR` -> {lr}, ...
            if k == "objective":  # `objective: NAME` (or the default) -> {name: NAME}
                nxt = {"name": Stage.__dataclass_fields__["objective"].default if nxt is None else nxt}
            else:
                nxt = {} if nxt is None else {"preset": nxt} if node is keys_root and k == "model" else {"lr": nxt}
            node[k] = nxt
        if not isinstance(nxt, dict):
            raise LoupeError(f"override {item!r}: {k!r} is not a mapping")
        node = nxt
    node[keys[-1]] = value  # validation (unknown keys, types) happens when the tree is loaded
