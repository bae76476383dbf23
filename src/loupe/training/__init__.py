"""Training: recipes (stages as data), freezing by part and pattern, HF Trainer glue, the engine (DDP/FSDP/DS).

Modules, in the order a stage uses them: :mod:`.recipe` (typed, strict stages; :mod:`.strict` loads them),
:mod:`.freezing` (parts + regexes -> trainable names, per-part LR groups), :mod:`.lora` (PEFT on the LLM),
:mod:`.engine` (TrainingArguments from the stage and the launch: DDP/gloo, FSDP, DeepSpeed, precision),
:mod:`.sampler` (modality/length grouping per global batch), :mod:`.trainer` (the ``Trainer`` subclass: param
groups, bad-record counts, non-finite stop, atomic checkpoints), :mod:`.runner` (stages in order, markers).
What a stage optimises is its objective, a registered part of :mod:`loupe.objectives` (``lm``, ``vdim``).
Data comes from :mod:`loupe.data` (LLaVA JSON/JSONL, chat-template labels, collator).

Run::

    loupe train recipes/tiny-llava15.yaml data_root=/tmp/tiny-data --output runs/tiny     # 1 process
    loupe train RECIPE --stage 2 --resume                       # one stage; continue after a crash
    torchrun --standalone --nproc_per_node 2 -m loupe.cli.main train RECIPE ...          # DDP (gloo on CPU)
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        -m loupe.cli.main train RECIPE ...                      # NOT --cpu: that silently runs 1 process
    accelerate launch --config_file configs/accelerate/fsdp2-8gpu.yaml -m loupe.cli.main train RECIPE  # GPUs
    # DeepSpeed ZeRO-2/3 (GPUs, pip install deepspeed): `deepspeed: configs/deepspeed/zero3.json` in a stage

or from Python::

    from loupe.training import load_recipe, run_recipe
    run_recipe(load_recipe("recipes/tiny-llava15.yaml", ["data_root=/tmp/tiny"]), output="runs/tiny")

The same global batch gives the same loss curve on 1 or N processes (tested with torchrun, 2 gloo processes).
"""

from .recipe import DataSpec, LoraSpec, ModelSpec, PartSpec, Recipe, Stage, load_recipe, recipe_from_dict
from .runner import describe, run_recipe, run_stage, stage_dir

__all__ = ["Recipe", "Stage", "ModelSpec", "DataSpec", "PartSpec", "LoraSpec", "load_recipe", "recipe_from_dict",
           "run_recipe", "run_stage", "stage_dir", "describe"]
