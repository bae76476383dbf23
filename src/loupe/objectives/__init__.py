"""Training objectives: what a recipe stage optimises, as registered parts (:data:`loupe.registry.OBJECTIVES`).

A stage names its objective and gives its options as data, validated by the objective's own ``Config``
dataclass (:mod:`loupe.validation`: unknown keys, wrong types and out-of-range values fail, naming the path)::

    objective: lm                                          # the default; same as {name: lm}
    objective: {name: vdim, n_jitters: 2, crf_weight: 0.001}

The generic stage runner (:func:`loupe.training.runner.run_stage`) never names a method. It

1. skips a finished stage (``DONE.json``), finds the intact checkpoint to resume from, seeds, builds or loads
   the model and its processor;
2. applies what every stage may ask for: the chat template, LoRA, the trainable parts and their learning rates
   (:class:`~loupe.training.freezing.TrainPlan`), and ``model_overrides`` (``{slicer: {never_split: true}}``:
   the stage slices with other settings; the saved model keeps its own);
3. calls ``OBJECTIVES.get(name)(config).train(job)`` with a :class:`~.base.StageJob` (recipe, stage, model,
   the stage's processor, the model's own processor, plan, output folder, checkpoint to resume from,
   callbacks), which returns a :class:`~.base.StageResult` (steps, loss, log history, bad-record counts and a
   ``save(folder)`` that writes the model and processor);
4. writes ``final/`` atomically (``final.tmp`` then a rename; LoRA merged, its adapter kept), the logs,
   ``bad_records.json``, checks ``max_bad_fraction``, and writes ``DONE.json``.

An objective defines ``Config`` (a dataclass; no fields when it takes no option), :meth:`~.base.Objective.train`
and optionally :meth:`~.base.Objective.check_stage` (stage settings it refuses, checked at load time).
Registered here:

* ``lm`` (:mod:`.lm`): the language-model loss on the answer tokens through the Hugging Face ``Trainer``
  (resume, bad records, DDP / FSDP / DeepSpeed);
* ``vdim`` (:mod:`.vdim`): LLaVA-UHD v2's VDIM up-sampler pre-training with the MLR loss (its own loop).

A new objective is a new module with ``@OBJECTIVES.register("name")`` on an :class:`~.base.Objective`
subclass, imported below.
"""

from __future__ import annotations

from typing import Any

from ..errors import LoupeError
from ..registry import OBJECTIVES
from .base import Objective, StageJob, StageResult
from . import lm as _lm  # noqa: F401  (registers lm)
from . import vdim as _vdim  # noqa: F401  (registers vdim)

__all__ = ["OBJECTIVES", "Objective", "StageJob", "StageResult", "objective_spec", "build_objective"]


def objective_spec(value: Any, where: str = "objective") -> dict:
    """``name`` or ``{name, **options}`` -> the full, validated ``{"name": ..., **options}`` (defaults filled).
    Options are checked by the objective's ``Config`` (recipe flavour: ``1e-3`` read as a float)."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise LoupeError(f"{where}: give an objective name ({', '.join(OBJECTIVES.names())}) or a mapping with "
                         f"a 'name' key and its options, got {value!r}")
    return OBJECTIVES.to_dict(OBJECTIVES.config(value, where, yaml_floats=True))


def build_objective(spec: dict) -> Objective:
    """The objective instance for a validated ``{"name": ..., **options}``."""
    cls = OBJECTIVES.get(spec["name"])
    return cls(OBJECTIVES.config(spec, where="objective"))
