"""Which parameters a stage trains, and at which learning rate: the stage's ``parts`` made concrete.

A *part* is a top-level child of the model (``vision_tower``, ``connector``, ``language_model``; the model
declares them; this module decides what trains). Per stage, each part gets an LR (0 or unlisted = frozen) and optionally sub-module
regexes: ``only`` (train just these) and ``exclude`` (freeze these), matched with ``re.match`` against the full
parameter name, e.g. the last 12 of 24 CLIP layers::

    vision_tower: {lr: 2.0e-6, only: ['vision_tower\\.vision_model\\.encoder\\.layers\\.(1[2-9]|2[0-3])\\.']}

or ConvLLaVA's ConvNeXt stages 3-5 (``--tune_vit_from_layer 2``)::

    vision_tower: {lr: 2.0e-5, only: ['vision_tower\\.convnext\\.encoder\\.stages\\.[2-4]\\.']}

Every pattern must match at least one parameter *of its part* (a typo is an error naming the part's first
parameters, not a silently frozen model). Frozen parameters get ``requires_grad=False`` (no gradients, no
optimizer state), trained ones go into one optimizer group per (part, decay / no-decay) with the part's LR —
LLaVA's ``mm_projector_lr`` / ``mm_vision_tower_lr`` groups, generalised. With LoRA on the language model,
its trainable parameters are the adapters (PEFT freezes the base weights).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from ..errors import LoupeError
from .recipe import PartSpec


@dataclass
class TrainPlan:
    """The outcome of a stage's ``parts``: names that train, per part, with their LR."""

    lrs: dict[str, float]  # part -> lr (0 for frozen parts)
    trainable: dict[str, list[str]] = field(default_factory=dict)  # part -> parameter names that train
    frozen: dict[str, int] = field(default_factory=dict)  # part -> number of frozen parameter tensors

    @property
    def names(self) -> set[str]:
        return {n for names in self.trainable.values() for n in names}

    def summary(self, model: nn.Module) -> str:
        sizes = {n: p.numel() for n, p in model.named_parameters()}
        lines = []
        for part in self.lrs:
            n_train = sum(sizes[n] for n in self.trainable.get(part, []))
            n_all = sum(v for k, v in sizes.items() if k.split(".", 1)[0] == part)
            state = f"lr {self.lrs[part]:g}" if n_train else "frozen"
            lines.append(f"  {part:16s} {state:12s} {n_train:>14,} / {n_all:,} parameters train")
        return "\n".join(lines)


def model_parts(model: nn.Module) -> list[str]:
    return list(dict.fromkeys(n.split(".", 1)[0] for n, _ in model.named_parameters()))


def plan_trainable(model: nn.Module, parts: dict[str, PartSpec], lora: bool = False) -> TrainPlan:
    """Resolve ``parts`` against ``model``'s parameter names (no side effects)."""
    available = model_parts(model)
    for k in parts:
        if k not in available:
            raise LoupeError(f"the model has no part {k!r}; its parts: {', '.join(available)}")
    by_part: dict[str, list[str]] = {p: [] for p in available}
    for n, _ in model.named_parameters():
        by_part[n.split(".", 1)[0]].append(n)
    plan = TrainPlan(lrs={p: (parts[p].lr if p in parts else 0.0) for p in available})
    for part, names in by_part.items():
        spec = parts.get(part)
        if spec is None or spec.lr == 0:
            chosen = []
        elif lora and part == "language_model":
            chosen = [n for n in names if ".lora_" in n]
        else:
            chosen = _select(part, names, spec)
        plan.trainable[part] = chosen
        plan.frozen[part] = len(names) - len(chosen)
    if not plan.names:
        raise LoupeError("this stage trains no parameter: every part is frozen or its patterns matched nothing")
    return plan


def _select(part: str, names: list[str], spec: PartSpec) -> list[str]:
    for kind, pats in (("only", spec.only), ("exclude", spec.exclude)):
        for pat in pats:
            if not any(re.match(pat, n) for n in names):
                raise LoupeError(
                    f"parts.{part}.{kind} pattern {pat!r} matches no parameter of {part!r} (patterns are matched "
                    f"with re.match on full names such as {names[0]!r}, ..., {names[-1]!r})"
                )
    chosen = [n for n in names if not spec.only or any(re.match(p, n) for p in spec.only)]
    chosen = [n for n in chosen if not any(re.match(p, n) for p in spec.exclude)]
    if not chosen:
        raise LoupeError(f"parts.{part}: lr {spec.lr:g} but its only/exclude patterns leave no parameter to train")
    return chosen


def apply_plan(model: nn.Module, plan: TrainPlan) -> None:
    """Set ``requires_grad`` from the plan: trained names True, everything else False."""
    names = plan.names
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)


_WRAPPERS = re.compile(r"(^|\.)(module|_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)\.")


def clean_name(name: str) -> str:
    """A parameter name without DDP/FSDP/checkpoint/compile wrapper components."""
    prev = None
    while prev != name:
        prev, name = name, _WRAPPERS.sub(r"\1", name)
    return name


def param_groups(model: nn.Module, plan: TrainPlan, weight_decay: float, no_decay: set[str]) -> list[dict]:
    """Optimizer groups: one per (part, decay/no-decay) with the part's LR; ``part`` recorded for logging."""
    groups = []
    named = {clean_name(n): p for n, p in model.named_parameters()}
    for part, names in plan.trainable.items():
        if not names:
            continue
        for decay in (True, False):
            ps = [named[n] for n in names if (n not in no_decay) == decay and named[n].requires_grad]
            if ps:
                groups.append({
                    "params": ps, "lr": plan.lrs[part], "weight_decay": weight_decay if decay else 0.0,
                    "part": part,
                })
    return groups
