"""``LoupeTrainer``: Hugging Face ``Trainer`` with the few things a multi-stage LLaVA recipe needs.

The training loop, DDP/FSDP/DeepSpeed, gradient accumulation, schedules, resumption (optimizer, scheduler, RNG,
data position) and progress bars are the Trainer's (no hand-written loop). Overridden, each for one reason:

* ``create_optimizer`` — one param group per part with the part's LR (:func:`.freezing.param_groups`; LLaVA's
  ``mm_projector_lr`` generalised), decay / no-decay split as the Trainer's; ``nadam`` added (torch's NAdam).
* ``_get_train_sampler`` — :class:`.sampler.ModalityLengthGroupedSampler`, cut by the global batch.
* ``_get_num_items_in_batch`` — image-token positions are set to -100 in ``labels`` before the Trainer
  counts the tokens that normalise the loss, so a user's own collator cannot inflate the count.
* ``training_step`` — pops the collator's bad-record bookkeeping (counted in :attr:`bad`), runs an all-bad
  batch as a zero loss, and **stops on a non-finite loss** (all ranks agree through one all-reduce) with
  :class:`NonFiniteLossError` naming the step, before the optimizer update, so the checkpoints on disk stay
  the last good ones.
* ``_save_checkpoint`` — **atomic**: transformers 5.23 writes ``checkpoint-N`` in place, so a kill during a
  save leaves a half-written folder that ``get_last_checkpoint`` would pick. Here every rank writes into
  ``OUTPUT/.staging/checkpoint-N``; after a barrier the main process renames it to ``OUTPUT/checkpoint-N``
  (``os.replace``, atomic on one filesystem) and rotates old checkpoints. Per-rank bad-record counts are saved
  with it (``loupe_bad_records_rank{R}.json``) so ``--resume`` keeps them.
* ``train`` — while training, a forward hook keeps the loss attached to every trainable parameter (``+ 0 x
  p[0]``) when the batch does not reach them (a text-only batch while only the connector trains): the step is
  then a zero-gradient step instead of a "does not require grad" crash, and DDP ranks stay in step. LLaVA does
  the same with a zero image for text-only samples; exact (adds 0.0).
* ``log`` — adds the LR of each part (``lr/connector``, ...) and the throughput since the last log
  (``tokens_per_second``, non-padding tokens over all ranks) to the loss, grad norm and LR the Trainer logs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint, rotate_checkpoints

from ..data.llava_format import BadRecords
from ..errors import LoupeError
from .freezing import TrainPlan, clean_name, param_groups
from .sampler import ModalityLengthGroupedSampler

STAGING = ".staging"


class NonFiniteLossError(LoupeError):
    """The loss became NaN or infinite; the stage stopped before applying that step."""


class LoupeTrainer(Trainer):
    def __init__(self, *args, plan: TrainPlan, stage_label: str = "stage", group_by_length: bool = True,
                 fail_on_bad: bool = False, max_bad_fraction: float = 1.0, optimizer_name: str | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.optimizer_name = optimizer_name
        self.plan = plan
        self.stage_label = stage_label
        self.group_by_length = group_by_length
        self.fail_on_bad = fail_on_bad
        self.max_bad_fraction = max_bad_fraction
        self.bad = BadRecords()
        self._dummy = False
        self._staging_root: str | None = None
        self._last_log = (time.time(), 0)
        self._step_lrs: dict[str, float] = {}
        self.steps_run = 0  # optimizer steps this process ran (a resumed run: only the remaining ones)
        self.add_callback(_StepCounter(self))

    def train(self, *args, **kwargs):
        handle = self.model.register_forward_hook(_attach_trainables)
        try:
            return super().train(*args, **kwargs)
        finally:
            handle.remove()

    # --- data ---------------------------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        a = self.args
        return ModalityLengthGroupedSampler(
            ds.lengths, ds.is_multimodal,
            global_batch=a.per_device_train_batch_size * a.world_size * a.gradient_accumulation_steps,
            seed=a.data_seed if a.data_seed is not None else a.seed, by_length=self.group_by_length,
        )

    def _get_num_items_in_batch(self, batch_samples, device):
        """The Trainer's token count for the loss normalisation, with image slots masked first: whatever the
        collator did, an image-token position is never a target (the model masks it too)."""
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        image_id = getattr(config, "image_token_id", None)
        for b in batch_samples:
            if image_id is not None and torch.is_tensor(b.get("labels")) and torch.is_tensor(b.get("input_ids")):
                b["labels"] = b["labels"].masked_fill(b["input_ids"] == image_id, -100)
        return super()._get_num_items_in_batch(batch_samples, device)

    # --- optimizer ------------------------------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        decay = {clean_name(n) for n in self.get_decay_parameter_names(opt_model)}
        names = {clean_name(n) for n, _ in opt_model.named_parameters()}
        groups = param_groups(opt_model, self.plan, self.args.weight_decay, no_decay=names - decay)
        grouped = {id(p) for g in groups for p in g["params"]}
        stray = [n for n, p in opt_model.named_parameters() if p.requires_grad and id(p) not in grouped]
        if stray:  # a wrapper renamed parameters in a way clean_name does not know
            raise LoupeError(f"trainable parameters outside every optimizer group: {stray[:5]}")
        if self.optimizer_name == "nadam":  # not among transformers' optimizer names (UHD v2's VDIM stage)
            a = self.args
            cls, kwargs = torch.optim.NAdam, {"lr": a.learning_rate, "betas": (a.adam_beta1, a.adam_beta2),
                                              "eps": a.adam_epsilon}
        else:
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = cls(groups, **kwargs)
        return self.optimizer

    # --- one step -------------------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        for pos, rid, kind, message in inputs.pop("loupe_bad", []):
            self.bad.add(pos, rid, kind, message, fail=self.fail_on_bad)
        self.bad.seen += int(inputs.pop("loupe_seen", 0))
        self._dummy = bool(inputs.pop("loupe_dummy", False))
        if self.optimizer is not None:  # the LRs this step uses (the scheduler moves them after the update)
            self._step_lrs = {g["part"]: g["lr"] for g in self.optimizer.param_groups if "part" in g}
        if self.bad.seen >= 200 and self.bad.fraction() > self.max_bad_fraction:
            raise LoupeError(f"{self.stage_label}: {self.bad.summary()} — over max_bad_fraction "
                             f"{self.max_bad_fraction:g}; fix the data or raise data.max_bad_fraction")
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._check_finite(loss)
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._dummy:  # every sample of this micro-batch was bad: join the step with a zero loss
            self._dummy = False
            out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            loss = out.loss * 0.0  # set by _attach_trainables: zero, attached to every trainable parameter
            return (loss, out) if return_outputs else loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def _check_finite(self, loss: torch.Tensor) -> None:
        bad = torch.tensor([0.0 if bool(torch.isfinite(loss).all()) else 1.0], device=loss.device)
        if self.args.world_size > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        if bad.item() == 0:
            return
        step = self.state.global_step + 1
        last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        raise NonFiniteLossError(
            f"{self.stage_label}: non-finite loss ({loss.item()}) at step {step} of {self.state.max_steps} "
            f"(epoch {self.state.epoch or 0:.2f}); the stage stopped before applying this step. Last good "
            f"checkpoint: {last or 'none yet'}. Lower the learning rate or check the data, then rerun with --resume."
        )

    # --- logging --------------------------------------------------------------------------------------------------
    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs:
            for part, lr in self._step_lrs.items():
                logs[f"lr/{part}"] = lr
            now, tokens = time.time(), self.state.num_input_tokens_seen
            t0, n0 = self._last_log
            if now > t0 and tokens >= n0:
                logs["tokens_per_second"] = round((tokens - n0) / (now - t0), 1)
            self._last_log = (now, tokens)
        super().log(logs, start_time)

    # --- atomic checkpoints ---------------------------------------------------------------------------------------
    def _get_output_dir(self, trial) -> str:
        return self._staging_root or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        root = super()._get_output_dir(trial)
        staging = os.path.join(root, STAGING)
        name = f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(os.path.join(staging, name), ignore_errors=True)
            os.makedirs(staging, exist_ok=True)
        self.accelerator.wait_for_everyone()
        self._staging_root = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        tmp = os.path.join(staging, name)
        os.makedirs(tmp, exist_ok=True)
        with open(os.path.join(tmp, f"loupe_bad_records_rank{self.args.process_index}.json"), "w") as f:
            json.dump(self.bad.to_json(), f)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = os.path.join(root, name)
            if os.path.exists(final):  # the same step saved twice: move the old one aside first
                old = os.path.join(staging, name + ".old")
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
            _fsync_dir(root)
            try:
                os.rmdir(staging)
            except OSError:
                pass
            rotate_checkpoints(output_dir=root, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)
        self.accelerator.wait_for_everyone()

    def restore_bad_records(self, checkpoint: str) -> None:
        p = Path(checkpoint) / f"loupe_bad_records_rank{self.args.process_index}.json"
        if p.is_file():
            self.bad = BadRecords.from_json(json.loads(p.read_text()))


class _StepCounter(TrainerCallback):
    def __init__(self, trainer: "LoupeTrainer"):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.steps_run += 1


def _attach_trainables(module, args, output):
    """Forward hook (training only): a loss that reaches no trainable parameter gets ``0 x p[0]`` of each."""
    if not (module.training and torch.is_grad_enabled()) or getattr(output, "logits", None) is None:
        return output
    loss = output.loss if output.loss is not None else output.logits.sum() * 0.0
    if not loss.requires_grad:
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            loss = loss + sum(p.reshape(-1)[:1].sum() for p in params) * 0.0
    output.loss = loss
    return output


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
