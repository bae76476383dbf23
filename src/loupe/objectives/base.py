"""The objective contract: :class:`Objective`, what it is given (:class:`StageJob`) and what it returns
(:class:`StageResult`). See :mod:`loupe.objectives` for the whole picture."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar


def _no_barrier() -> None:
    return None


@dataclass
class StageJob:
    """Everything an objective needs to train one stage, prepared by the generic runner.

    ``model`` is built (or loaded from the previous stage), its trainable parameters set from the stage's
    ``parts`` (``plan``), LoRA added when the stage asks for it, the stage's ``model_overrides`` applied.
    ``processor`` prepares this stage's data (the overrides applied: e.g. an overview-only slicer);
    ``base_processor`` is the model's own processor, the one ``StageResult.save`` writes next to the weights.
    ``resume_from`` is the intact ``checkpoint-N`` folder to continue from (None: start the stage)."""

    recipe: Any  # loupe.training.recipe.Recipe
    index: int  # 0-based stage index
    stage: Any  # loupe.training.recipe.Stage
    label: str  # "stage 2 'pretrain'", for messages
    dir: Path  # OUT/stage-K-NAME: checkpoints and logs go here
    model: Any
    processor: Any
    base_processor: Any
    plan: Any  # loupe.training.freezing.TrainPlan
    resume_from: str | None = None
    callbacks: list | None = None

    @property
    def data_path(self) -> Path:
        return Path(self.recipe.data_root) / self.stage.data.path

    @property
    def image_root(self) -> Path | None:
        root = self.stage.data.image_root
        return Path(self.recipe.data_root) / root if root else None


@dataclass
class StageResult:
    """What an objective hands back; the runner then writes ``final/``, the logs and ``DONE.json``.

    ``save(folder)`` writes the trained model and ``job.base_processor`` into ``folder`` with
    ``save_pretrained`` (called on every process, so a sharded model can be gathered); ``barrier`` waits for
    every process (a no-op on one). ``bad`` (:class:`loupe.data.llava_format.BadRecords`, counted over all
    processes) is checked against the stage's ``max_bad_fraction`` before the stage is marked done."""

    global_step: int
    train_loss: float | None
    log_history: list[dict]
    save: Callable[[Path], None]
    steps_run: int | None = None  # optimizer steps this run (a resumed stage: only the remaining ones)
    bad: Any = None
    is_main: bool = True
    barrier: Callable[[], None] = _no_barrier
    manifest: dict = field(default_factory=dict)  # extra entries for final/loupe_stage.json


class Objective(ABC):
    """A training objective: its options are the dataclass ``Config`` (validated by :mod:`loupe.validation`
    from the stage's ``objective: {name: ..., **options}``), its work is :meth:`train`."""

    Config: ClassVar[type]

    def __init__(self, config: Any):
        self.config = config

    def check_stage(self, stage: Any) -> None:
        """Refuse stage settings this objective cannot honour (raise :class:`~loupe.errors.LoupeError`);
        called when the recipe is loaded, before anything runs."""

    @abstractmethod
    def train(self, job: StageJob) -> StageResult:
        """Train ``job.model`` for one stage and return how it went (see :class:`StageResult`)."""
