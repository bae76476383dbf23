"""The engine: a stage + the launch environment -> ``transformers.TrainingArguments`` (DDP, FSDP, DeepSpeed).

Models declare, strategies decide: nothing in the model imports ``torch.distributed``; the way
a stage runs is chosen here from how the process was launched and from the stage's fields.

* **Processes.** Launch with ``torchrun --standalone --nproc_per_node N -m loupe.cli.main train ...`` or
  ``accelerate launch --multi_gpu --num_processes N --num_machines 1 --mixed_precision no -m loupe.cli.main
  train ...`` (``configs/accelerate/``). [TRAP] ``accelerate launch --cpu --num_processes 2`` silently runs
  ONE process; on CPU use ``--multi_gpu`` as above (it runs gloo processes). The world size is read from
  ``WORLD_SIZE``; on CPU the DDP backend is gloo.
* **DDP** always uses ``find_unused_parameters=True``: CLIP's last layer is not run (layer -2 features), and a
  text-only batch leaves the vision tower and connector unused.
* **Batch.** ``global_batch_size`` is fixed by the recipe; ``per_device_batch_size`` is a ceiling: the largest
  divisor of ``global / world`` not above it is used, and gradient accumulation fills the rest, so the same
  command gives the same optimisation on 1 CPU or 8 GPUs.
* **Precision.** ``auto`` = bf16 on a GPU that supports it, else fp32. bf16 on a CPU is refused (about 14x
  slower than fp32, measured on a 2-core AVX2 CPU without native bf16, torch 2.13).
* **Gradient checkpointing** uses the non-reentrant implementation (works with frozen inputs and DDP).
* **FSDP / DeepSpeed** (GPUs): ``fsdp: true`` (+ ``fsdp_config``, FSDP2 by default; wrapping follows the
  model's declared ``_no_split_modules``), ``accelerate launch --config_file configs/accelerate/fsdp2-8gpu.yaml``,
  or ``deepspeed: configs/deepspeed/zero3.json``. [TRAP, measured] on CPU accelerate drops the FSDP plugin
  without a word (``MULTI_CPU`` is not among the types it enables FSDP for) and trains with DDP; Loupe refuses
  ``fsdp: true`` without a GPU instead. The shipped
  DeepSpeed files have no ``optimizer`` block on purpose: the Trainer's optimizer (with the per-part LR
  groups) is handed to DeepSpeed; a config with its own optimizer would train every part at one LR.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from transformers import TrainingArguments

from ..errors import LoupeError
from .recipe import Stage


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def batch_split(global_batch: int, per_device_max: int, world: int) -> tuple[int, int]:
    """``(per_device, accumulation)`` with ``per_device * world * accumulation == global_batch``."""
    if global_batch % world:
        raise LoupeError(f"global_batch_size {global_batch} is not divisible by the {world} processes")
    per_rank = global_batch // world
    per_device = max(d for d in range(1, min(per_device_max, per_rank) + 1) if per_rank % d == 0)
    return per_device, per_rank // per_device


def resolve_precision(precision: str) -> str:
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not cuda:
        raise LoupeError(
            f"precision {precision} needs a GPU; on CPU train in fp32 (override: stages.*.precision=fp32 or auto)"
        )
    return precision


def training_arguments(stage: Stage, output_dir: Path, seed: int, **extra) -> TrainingArguments:
    world = world_size()
    per_device, accum = batch_split(stage.global_batch_size, stage.per_device_batch_size, world)
    precision = resolve_precision(stage.precision)
    cuda = torch.cuda.is_available()
    kwargs = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accum,
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps if stage.max_steps is not None else -1,
        learning_rate=stage.max_lr,  # each part's group carries its own LR; this one is only the default
        lr_scheduler_type=stage.schedule,
        warmup_steps=stage.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=stage.weight_decay,
        max_grad_norm=stage.max_grad_norm,
        optim="adamw_torch" if stage.optimizer == "nadam" else stage.optimizer,  # nadam: LoupeTrainer
        seed=seed,
        data_seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        activation_checkpointing=stage.gradient_checkpointing,  # transformers 5's name for it
        activation_checkpointing_kwargs={"use_reentrant": False} if stage.gradient_checkpointing else None,
        ddp_find_unused_parameters=True,
        ddp_backend="gloo" if world > 1 and not cuda else None,
        save_strategy="steps",
        save_steps=stage.save_steps,
        save_total_limit=stage.save_total_limit,
        logging_strategy="steps",
        logging_steps=stage.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # the trainer stops on a non-finite loss instead
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,  # the collator's bookkeeping keys are popped by the trainer
        dataloader_num_workers=stage.data.num_workers,
        report_to="none",
        disable_tqdm=False,
    )
    if stage.deepspeed:
        if importlib.util.find_spec("deepspeed") is None:
            raise LoupeError(
                f"stage {stage.name!r} asks for DeepSpeed ({stage.deepspeed}) but it is not installed "
                "(pip install deepspeed), or drop it: stages.*.deepspeed=null"
            )
        if not Path(stage.deepspeed).is_file():
            raise LoupeError(f"DeepSpeed config not found: {stage.deepspeed}")
        kwargs["deepspeed"] = stage.deepspeed
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not cuda:
        raise LoupeError("accelerate was launched with FSDP, which it only applies on GPUs (on CPU it silently "
                         "trains with DDP); use configs/accelerate/cpu-2proc.yaml on CPU")
    if stage.fsdp:
        if not cuda:
            raise LoupeError(
                f"stage {stage.name!r} asks for FSDP, which accelerate only applies on GPUs: on CPU it silently "
                "falls back to DDP (its MULTI_CPU path ignores the FSDP plugin). Drop it for CPU runs: "
                "stages.*.fsdp=false"
            )
        kwargs["fsdp"] = True
        kwargs["fsdp_config"] = {"version": 2, **stage.fsdp_config}
    kwargs.update(extra)
    return TrainingArguments(**kwargs)
