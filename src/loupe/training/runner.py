"""Run a recipe: stages in order, each starting from the previous stage's saved model.

The runner is generic: a stage is trained by its objective (:mod:`loupe.objectives`, looked up by name in
:data:`loupe.registry.OBJECTIVES`); everything else (skip / resume, model and processor, template, LoRA,
trainable parts, ``model_overrides``, the atomic ``final/``, logs and the marker) is done here for every stage.

Output folder (``--output``, else the recipe's ``output_dir``, else ``runs/<recipe name>``)::

    OUT/recipe.yaml                       the resolved recipe (after overrides)
    OUT/stage-1-pretrain/checkpoint-N/    Trainer checkpoints, written atomically (see trainer.py)
    OUT/stage-1-pretrain/final/           save_pretrained model + processor (+ lora_adapter/), loupe_stage.json
    OUT/stage-1-pretrain/log_history.json loss, grad norm, LR per part, tokens/s per logging step
    OUT/stage-1-pretrain/bad_records.json every skipped record id with its reason (objectives that read records)
    OUT/stage-1-pretrain/DONE.json        the stage-done marker (steps, resumed_from, steps_run): a rerun skips it

A stage with checkpoints but no marker was interrupted: rerun with ``resume=True`` (``--resume``) to continue
from its last checkpoint exactly (weights, optimizer, scheduler, RNG, data position, bad-record counts);
without it the run stops rather than silently starting over. A damaged newest checkpoint (a truncated
``optimizer.pt``: a full disk, a copy cut short) is skipped with a warning naming it, and the stage resumes from
the newest intact one. ``final/`` is written to ``final.tmp`` and renamed, then the marker.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from ..errors import LoupeError
from .recipe import Recipe
from .strict import to_dict

log = logging.getLogger("loupe.train")


def stage_dir(out: Path, recipe: Recipe, k: int) -> Path:
    return out / f"stage-{k + 1}-{recipe.stages[k].name}"


def output_root(recipe: Recipe, output: str | Path | None = None) -> Path:
    return Path(output or recipe.output_dir or Path("runs") / recipe.name)


def run_recipe(recipe: Recipe, output: str | Path | None = None, stages: list[int] | None = None,
               resume: bool = False, callbacks: list | None = None) -> list[Path]:
    """Run ``stages`` (0-based indices; default all, in order); returns each stage's ``final/`` folder."""
    from .engine import rank

    out = output_root(recipe, output)
    if rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.yaml").write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False))
    finals = []
    for k in stages if stages is not None else range(len(recipe.stages)):
        finals.append(run_stage(recipe, k, out, resume=resume, callbacks=callbacks))
    return finals


def run_stage(recipe: Recipe, k: int, out: Path, resume: bool = False, callbacks: list | None = None) -> Path:
    """Run stage ``k`` with its objective (:mod:`loupe.objectives`: the stage is prepared here, trained by
    ``objective.train``, finished here); returns its ``final/`` folder."""
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from ..objectives import StageJob, build_objective
    from .freezing import apply_plan, plan_trainable
    from .lora import add_lora

    stage = recipe.stages[k]
    label = f"stage {k + 1} {stage.name!r}"
    sdir = stage_dir(out, recipe, k)
    final = sdir / "final"
    if (sdir / "DONE.json").is_file():
        log.info("%s: already done (%s); skipping (delete DONE.json to run it again)", label, sdir / "DONE.json")
        return final
    ckpt = get_last_checkpoint(str(sdir)) if sdir.is_dir() else None
    if ckpt and not resume:
        raise LoupeError(f"{label} was interrupted ({ckpt} exists, no DONE.json): pass --resume to continue it, "
                         f"or delete {sdir} to start it over")
    if ckpt and resume:
        ckpt = intact_checkpoint(sdir, label)
    objective = build_objective(stage.objective)

    set_seed(recipe.seed)
    model, processor = _init_model(recipe, k, out)
    if stage.data.template:
        from ..templates import get_template

        processor.tokenizer.chat_template = processor.chat_template = get_template(stage.data.template)
    if stage.lora is not None:
        add_lora(model, stage.lora)
    plan = plan_trainable(model, stage.parts, lora=stage.lora is not None)
    apply_plan(model, plan)

    t0 = time.time()
    with model_overrides(model, processor, stage.model_overrides) as stage_processor:
        result = objective.train(StageJob(
            recipe=recipe, index=k, stage=stage, label=label, dir=sdir, model=model, processor=stage_processor,
            base_processor=processor, plan=plan, resume_from=ckpt if resume else None, callbacks=callbacks))

    main, bad = result.is_main, result.bad
    _write_final(result, model, sdir, {
        "recipe": recipe.name, "stage": k + 1, "name": stage.name, "objective": stage.objective["name"],
        "trained_parts": {p: plan.lrs[p] for p, names in plan.trainable.items() if names},
        "lora": to_dict(stage.lora), "template": stage.data.template, **result.manifest})
    if main:
        (sdir / "log_history.json").write_text(json.dumps(result.log_history, indent=1))
        if bad is not None:
            (sdir / "bad_records.json").write_text(json.dumps(bad.to_json(), indent=1))
            log.info("%s: %s", label, bad.summary())
    result.barrier()
    if bad is not None and bad.fraction() > stage.data.max_bad_fraction:
        raise LoupeError(f"{label}: {bad.summary()} — over max_bad_fraction {stage.data.max_bad_fraction:g}; "
                         f"the model is in {final} but the stage is not marked done")
    if main:
        (sdir / "DONE.json").write_text(json.dumps({
            "stage": k + 1, "name": stage.name, "objective": stage.objective["name"],
            "global_step": result.global_step, "resumed_from": ckpt if resume else None,
            "steps_run": result.steps_run, "train_loss": result.train_loss, "seconds": round(time.time() - t0, 1),
            "bad_records": bad.counts if bad is not None else None, "final": str(final)}, indent=2))
        log.info("%s: done in %.1f s, final model in %s", label, time.time() - t0, final)
    result.barrier()
    return final


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why a ``checkpoint-N`` folder cannot be resumed from (a cheap structural check, no tensor is loaded):
    ``trainer_state.json`` must parse; the ``torch.save`` files (``optimizer.pt``, ``scheduler.pt``,
    ``rng_state*.pth``) must be complete zip archives; ``*.safetensors`` must be as long as their headers say.
    None when it looks intact."""
    import zipfile

    state = ckpt / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as e:
        return f"{state.name}: {type(e).__name__}: {e}"
    for f in sorted(ckpt.glob("*.pt")) + sorted(ckpt.glob("*.pth")):
        try:
            with zipfile.ZipFile(f) as z:
                z.infolist()
        except (OSError, zipfile.BadZipFile) as e:
            return f"{f.name} is truncated or corrupt ({e})"
    for f in sorted(ckpt.glob("*.safetensors")):
        try:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if f.stat().st_size < 8 + n + end:
                return f"{f.name} is truncated ({f.stat().st_size} bytes, its header needs {8 + n + end})"
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"{f.name} is unreadable ({type(e).__name__}: {e})"
    return None


def intact_checkpoint(sdir: Path, label: str = "stage") -> str:
    """The newest ``checkpoint-N`` of ``sdir`` that passes :func:`checkpoint_problem`; each newer, damaged one
    is named in a warning (and later overwritten when training reaches its step again)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    found = sorted((p for p in sdir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir()
                    and p.name.split("-")[-1].isdigit()), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    bad = []
    for ckpt in found:
        problem = checkpoint_problem(ckpt)
        if problem is None:
            if bad:
                log.warning("%s: resuming from %s instead of the newer damaged %s", label, ckpt.name,
                            "; ".join(bad))
            return str(ckpt)
        bad.append(f"{ckpt} ({problem})")
        log.warning("%s: checkpoint %s cannot be resumed from: %s", label, ckpt, problem)
    raise LoupeError(f"{label}: no intact checkpoint to resume from in {sdir}: {'; '.join(bad)}; delete {sdir} "
                     "to start the stage over")


@contextmanager
def model_overrides(model, processor, overrides):
    """A stage's ``model_overrides`` (:class:`~.recipe.ModelOverrides`) for the length of the stage: yields the
    processor built with them (the model's own when there is none) and gives the model the same geometry; on
    exit the model's configuration and geometry are its own again, so ``final/`` keeps the model's settings.
    [LLaVA-UHD v2] stage 1 slices overview-only (``{slicer: {never_split: true}}``, the official
    ``train.py --single True``)."""
    from ..geometry import ImageGeometry
    from ..processing import LoupeImageProcessor, LoupeProcessor
    from ..registry import SLICERS

    if not overrides.slicer:
        yield processor
        return
    spec = SLICERS.normalise({**model.config.slicer, **overrides.slicer}, where="model_overrides.slicer")
    ip = processor.image_processor
    stage_processor = LoupeProcessor(
        image_processor=LoupeImageProcessor(slicer=spec, vision=ip.vision, connector=ip.connector,
                                            max_image_pixels=ip.max_image_pixels),
        tokenizer=processor.tokenizer, chat_template=processor.chat_template)
    stage_processor.context_length = processor.context_length
    own_slicer, own_geometry = model.config.slicer, model.geometry
    model.config.slicer = spec
    model.geometry = ImageGeometry.from_config(model.config)
    try:
        yield stage_processor
    finally:
        model.config.slicer, model.geometry = own_slicer, own_geometry


def _write_final(result, model, sdir: Path, manifest: dict) -> None:
    """``sdir/final``: merged LoRA (adapter kept in ``lora_adapter/``), the model + processor written by the
    objective's ``save`` and a ``loupe_stage.json`` manifest, written to ``final.tmp`` by every rank (FSDP/ZeRO-3
    gather) and renamed."""
    from .lora import finish_lora

    main = result.is_main
    tmp, final = sdir / "final.tmp", sdir / "final"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    result.barrier()
    finish_lora(model, tmp / "lora_adapter", is_main=main)
    result.save(tmp)
    if main:
        (tmp / "loupe_stage.json").write_text(json.dumps(manifest, indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)


def _init_model(recipe: Recipe, k: int, out: Path):
    """(model, processor) for stage ``k``: the previous stage's output, the recipe's model, or a folder."""
    import loupe
    from ..builder import build_processor
    from ..modeling import LoupeForConditionalGeneration

    src = recipe.stages[k].init_from
    if src == "model" or (src == "previous" and k == 0):
        m = recipe.model
        kwargs = {key: getattr(m, key) for key in ("vision_tower", "language_model", "tokenizer", "gguf_file")
                  if getattr(m, key) is not None}
        return loupe.build(m.preset, **kwargs, **m.config)
    folder = stage_dir(out, recipe, k - 1) / "final" if src == "previous" else Path(src)
    if not (folder / "config.json").is_file():
        hint = (f"run stage {k} first (loupe train RECIPE --stage {k})" if src == "previous"
                else "give a folder written by save_pretrained")
        raise LoupeError(f"stage {k + 1} starts from {folder}, which holds no saved Loupe model; {hint}")
    model = LoupeForConditionalGeneration.from_pretrained(str(folder))
    return model, build_processor(str(folder))


def check_parts(recipe: Recipe) -> list | None:
    """Resolve every stage's ``parts`` against the recipe's preset built on the meta device (no weights, no
    memory): unknown parts and patterns that match nothing fail here, before any data is read. Returns one
    :class:`~.freezing.TrainPlan` per stage, or None when the preset is not registered (yet)."""
    import torch

    from ..builder import build_model
    from ..presets import list_presets
    from .freezing import plan_trainable

    if recipe.model.preset not in list_presets():
        return None
    with torch.device("meta"):
        model = build_model(recipe.model.preset, **recipe.model.config)
    plans = []
    for k, stage in enumerate(recipe.stages):
        try:
            plans.append(plan_trainable(model, stage.parts, lora=False))
        except LoupeError as e:
            raise LoupeError(f"stage {k + 1} {stage.name!r}: {e}") from None
    return plans


def describe(recipe: Recipe) -> str:
    """A one-screen plan of the recipe (``loupe train RECIPE --check``)."""
    lines = [f"recipe {recipe.name}: model {recipe.model.preset}, seed {recipe.seed}, data_root {recipe.data_root}"]
    for i, s in enumerate(recipe.stages, 1):
        parts = ", ".join(f"{p} {v.lr:g}" + (f" (only {len(v.only)} pattern(s))" if v.only else "")
                          for p, v in s.parts.items() if v.lr > 0)
        lines.append(
            f"  stage {i} {s.name}: data {s.data.path} [{s.data.template or 'tokenizer template'}], train {parts}"
            f"{', LoRA r=' + str(s.lora.r) if s.lora else ''}; batch {s.global_batch_size}, "
            f"{str(s.max_steps) + ' steps' if s.max_steps else f'{s.epochs:g} epoch(s)'}, {s.schedule} "
            f"warmup {s.warmup_ratio:g}, max_length {s.max_length}, {s.precision}, init from {s.init_from}"
            + ("" if s.objective["name"] == "lm" else f"; objective {s.objective['name']}")
            + (f"; slicer {s.model_overrides.slicer} for this stage" if s.model_overrides.slicer else "")
        )
    plans = check_parts(recipe)
    if plans is None:
        lines.append(f"(preset {recipe.model.preset!r} is not registered: parts and patterns not checked)")
    else:
        for i, plan in enumerate(plans, 1):
            parts = ", ".join(f"{p} {len(n)} tensors" for p, n in plan.trainable.items() if n)
            lines.append(f"  stage {i} trains (checked on {recipe.model.preset}, meta device): {parts}")
    return "\n".join(lines)
