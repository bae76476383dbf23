"""Run a recipe: stages in order, each starting from the previous stage's saved model.

Output folder (``--output``, else the recipe's ``output_dir``, else ``runs/<recipe name>``)::

    OUT/recipe.yaml                       the resolved recipe (after overrides)
    OUT/stage-1-pretrain/checkpoint-N/    Trainer checkpoints, written atomically (see trainer.py)
    OUT/stage-1-pretrain/final/           save_pretrained model + processor (+ lora_adapter/), loupe_stage.json
    OUT/stage-1-pretrain/log_history.json loss, grad norm, LR per part, tokens/s per logging step
    OUT/stage-1-pretrain/bad_records.json every skipped record id with its reason
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
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from ..data import LlavaCollator, LlavaDataset
    from .engine import training_arguments
    from .freezing import apply_plan, plan_trainable
    from .lora import add_lora
    from .trainer import LoupeTrainer

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

    set_seed(recipe.seed)
    model, processor = _init_model(recipe, k, out)
    # [LLaVA-UHD v2] ``objective: vdim``: the image-only VDIM pre-training (MLR loss) runs its own small loop
    # (loupe.training.vdim), then writes final/ and DONE.json like any stage.
    if stage.objective == "vdim":
        from .vdim import run_vdim_stage

        plan = plan_trainable(model, stage.parts)
        apply_plan(model, plan)
        return run_vdim_stage(recipe, k, out, model, processor, plan)
    # [LLaVA-UHD v2] ``slicer:`` stage-only slicer options (stage 1's overview-only ``{never_split: true}``);
    # undone before the model is saved, so later stages slice with the preset's own settings.
    restore_slicer = _override_slicer(model, processor, stage.slicer) if stage.slicer else None
    if stage.data.template:
        from ..templates import get_template

        processor.tokenizer.chat_template = processor.chat_template = get_template(stage.data.template)
    if stage.lora is not None:
        add_lora(model, stage.lora)
    plan = plan_trainable(model, stage.parts, lora=stage.lora is not None)
    apply_plan(model, plan)

    root = Path(recipe.data_root)
    data_path = root / stage.data.path
    dataset = LlavaDataset(
        data_path, processor, template=stage.data.template,
        image_root=(root / stage.data.image_root) if stage.data.image_root else None,
        max_length=stage.max_length,
        on_bad_record=stage.data.on_bad_record, check_files=stage.data.check_files,
    )
    upfront = dataset.upfront
    if upfront.fraction() > stage.data.max_bad_fraction:
        raise LoupeError(f"{label}: {upfront.summary()} — over max_bad_fraction {stage.data.max_bad_fraction:g}")
    if not len(dataset):
        raise LoupeError(f"{label}: no usable record in {data_path}")

    args = training_arguments(stage, sdir, recipe.seed)
    trainer = LoupeTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=processor,
        data_collator=LlavaCollator(processor.tokenizer.pad_token_id), callbacks=callbacks,
        plan=plan, stage_label=label, group_by_length=stage.group_by_length,
        fail_on_bad=stage.data.on_bad_record == "fail", max_bad_fraction=stage.data.max_bad_fraction,
        optimizer_name=stage.optimizer,
    )
    main = args.should_save
    if main:
        log.info(
            "%s: %d records (%s) | global batch %d = %d per device x %d processes x %d accumulation | %s\n%s",
            label, len(dataset), data_path, stage.global_batch_size, args.per_device_train_batch_size,
            args.world_size, args.gradient_accumulation_steps,
            f"{stage.max_steps} steps" if stage.max_steps else f"{stage.epochs:g} epoch(s)", plan.summary(model),
        )
    if ckpt and resume:
        log.info("%s: resuming from %s", label, ckpt)
        trainer.restore_bad_records(ckpt)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=ckpt if resume else None)

    bad = _gather_bad(trainer)
    bad.merge(upfront)
    if restore_slicer is not None:
        restore_slicer()
    bad.seen = upfront.seen  # records in the file; lazy ones are in 'bad.records' (by position)
    _write_final(trainer, model, sdir, {
        "recipe": recipe.name, "stage": k + 1, "name": stage.name,
        "trained_parts": {p: plan.lrs[p] for p, names in plan.trainable.items() if names},
        "lora": to_dict(stage.lora), "template": stage.data.template})
    if main:
        (sdir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
        (sdir / "bad_records.json").write_text(json.dumps(bad.to_json(), indent=1))
        log.info("%s: %s", label, bad.summary())
    trainer.accelerator.wait_for_everyone()
    if bad.fraction() > stage.data.max_bad_fraction:
        raise LoupeError(f"{label}: {bad.summary()} — over max_bad_fraction {stage.data.max_bad_fraction:g}; "
                         f"the model is in {final} but the stage is not marked done")
    if main:
        (sdir / "DONE.json").write_text(json.dumps({
            "stage": k + 1, "name": stage.name, "global_step": result.global_step,
            "resumed_from": ckpt if resume else None, "steps_run": trainer.steps_run,
            "train_loss": result.training_loss, "seconds": round(time.time() - t0, 1),
            "bad_records": bad.counts, "final": str(final)}, indent=2))
        log.info("%s: done in %.1f s, final model in %s", label, time.time() - t0, final)
    trainer.accelerator.wait_for_everyone()
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


def _override_slicer(model, processor, options: dict):
    """[LLaVA-UHD v2] Switch the model's and the processor's slicer to ``{**slicer, **options}`` for one stage;
    returns the callable that switches both back."""
    from ..geometry import ImageGeometry
    from ..registry import SLICERS

    old = dict(model.config.slicer)

    def use(spec: dict) -> None:
        model.config.slicer = spec
        model.geometry = ImageGeometry.from_config(model.config)
        processor.image_processor.slicer = spec
        processor.image_processor.__dict__.pop("geometry", None)  # a cached_property: rebuilt from ``slicer``

    use(SLICERS.normalise({**old, **options}))
    return lambda: use(old)


def _write_final(trainer, model, sdir: Path, manifest: dict) -> None:
    """``sdir/final``: merged LoRA (adapter kept in ``lora_adapter/``), ``save_pretrained`` model + processor and
    a ``loupe_stage.json`` manifest, written to ``final.tmp`` by every rank (FSDP/ZeRO-3 gather) and renamed."""
    from .lora import finish_lora

    main = trainer.args.should_save
    tmp, final = sdir / "final.tmp", sdir / "final"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    finish_lora(model, tmp / "lora_adapter", is_main=main)
    trainer.save_model(str(tmp))
    if main:
        (tmp / "loupe_stage.json").write_text(json.dumps(manifest, indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)


def _gather_bad(trainer):
    from accelerate.utils import gather_object

    from ..data.llava_format import BadRecords

    if trainer.args.world_size <= 1:
        return trainer.bad
    merged = BadRecords()
    for d in gather_object([trainer.bad.to_json()]):
        merged.merge(BadRecords.from_json(d))
    return merged


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
        )
    plans = check_parts(recipe)
    if plans is None:
        lines.append(f"(preset {recipe.model.preset!r} is not registered: parts and patterns not checked)")
    else:
        for i, plan in enumerate(plans, 1):
            parts = ", ".join(f"{p} {len(n)} tensors" for p, n in plan.trainable.items() if n)
            lines.append(f"  stage {i} trains (checked on {recipe.model.preset}, meta device): {parts}")
    return "\n".join(lines)
