"""``lm``: the next-token loss on the answer tokens of LLaVA-format conversations (the default objective).

LLaVA's visual instruction tuning objective (Liu et al., "Visual Instruction Tuning", NeurIPS 2023, Sec. 4.1,
eq. 3; official ``haotian-liu/LLaVA`` ``llava/train/train.py``): the language model's cross-entropy on the
assistant turns only, the image and prompt tokens masked out. The records come from the stage's data file
(:class:`loupe.data.LlavaDataset`: chat-template labels, bad records counted); the loop is the Hugging Face
``Trainer`` (:class:`loupe.training.trainer.LoupeTrainer`: per-part learning rates, atomic checkpoints,
resume, non-finite stop), with the batch and engine from :func:`loupe.training.engine.training_arguments`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import LoupeError
from ..registry import OBJECTIVES
from .base import Objective, StageJob, StageResult

log = logging.getLogger("loupe.train")


@OBJECTIVES.register("lm")
class LMObjective(Objective):
    @dataclass
    class Config:
        """No options: the loss is the language model's own (``labels`` from the chat template)."""

    def train(self, job: StageJob) -> StageResult:
        from ..data import LlavaCollator, LlavaDataset
        from ..training.engine import training_arguments
        from ..training.trainer import LoupeTrainer

        stage, label = job.stage, job.label
        dataset = LlavaDataset(
            job.data_path, job.processor, template=stage.data.template, image_root=job.image_root,
            max_length=stage.max_length, on_bad_record=stage.data.on_bad_record,
            check_files=stage.data.check_files,
        )
        upfront = dataset.upfront
        if upfront.fraction() > stage.data.max_bad_fraction:
            raise LoupeError(f"{label}: {upfront.summary()} — over max_bad_fraction {stage.data.max_bad_fraction:g}")
        if not len(dataset):
            raise LoupeError(f"{label}: no usable record in {job.data_path}")

        args = training_arguments(stage, job.dir, job.recipe.seed)
        trainer = LoupeTrainer(
            model=job.model, args=args, train_dataset=dataset, processing_class=job.base_processor,
            data_collator=LlavaCollator(job.processor.tokenizer.pad_token_id), callbacks=job.callbacks,
            plan=job.plan, stage_label=label, group_by_length=stage.group_by_length,
            fail_on_bad=stage.data.on_bad_record == "fail", max_bad_fraction=stage.data.max_bad_fraction,
            optimizer_name=stage.optimizer,
        )
        if args.should_save:
            log.info(
                "%s: %d records (%s) | global batch %d = %d per device x %d processes x %d accumulation | %s\n%s",
                label, len(dataset), job.data_path, stage.global_batch_size, args.per_device_train_batch_size,
                args.world_size, args.gradient_accumulation_steps,
                f"{stage.max_steps} steps" if stage.max_steps else f"{stage.epochs:g} epoch(s)",
                job.plan.summary(job.model),
            )
        if job.resume_from:
            log.info("%s: resuming from %s", label, job.resume_from)
            trainer.restore_bad_records(job.resume_from)
        result = trainer.train(resume_from_checkpoint=job.resume_from)

        bad = _gather_bad(trainer)
        bad.merge(upfront)
        bad.seen = upfront.seen  # records in the file; lazy ones are in 'bad.records' (by position)
        return StageResult(
            global_step=result.global_step, train_loss=result.training_loss,
            log_history=trainer.state.log_history, save=lambda folder: trainer.save_model(str(folder)),
            steps_run=trainer.steps_run, bad=bad, is_main=args.should_save,
            barrier=trainer.accelerator.wait_for_everyone,
        )


def _gather_bad(trainer):
    """The bad-record counts of every process, merged (the trainer's own on one process)."""
    from accelerate.utils import gather_object

    from ..data.llava_format import BadRecords

    if trainer.args.world_size <= 1:
        return trainer.bad
    merged = BadRecords()
    for d in gather_object([trainer.bad.to_json()]):
        merged.merge(BadRecords.from_json(d))
    return merged
