"""LoRA on the language model through PEFT (LLaVA's ``--lora_enable``), saved so it loads without tricks.

``add_lora`` wraps ``model.language_model`` with ``peft.get_peft_model`` (the other parts are untouched; their
training is decided by the stage's ``parts``). At the end of the stage ``finish_lora`` saves the adapter
(``lora_adapter/``, PEFT's own format) and merges it into the language model, so the stage's output folder is a
plain Loupe model that ``from_pretrained`` and the next stage load directly (LLaVA's LoRA
checkpoints needed "lora" in the folder name and a separate ``non_lora_trainables.bin``).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .recipe import LoraSpec


def add_lora(model: nn.Module, spec: LoraSpec) -> None:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                     target_modules=list(spec.target_modules), bias="none")
    model.language_model = get_peft_model(model.language_model, cfg)


def has_lora(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(getattr(model, "language_model", None), PeftModel)


def finish_lora(model: nn.Module, adapter_dir: str | Path | None, is_main: bool = True) -> None:
    """Save the adapter (main process) and merge it into the language model (every process)."""
    if not has_lora(model):
        return
    if adapter_dir is not None and is_main:
        model.language_model.save_pretrained(str(adapter_dir))
    model.language_model = model.language_model.merge_and_unload()
