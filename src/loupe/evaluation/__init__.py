"""Evaluation: benchmark tasks, recorded protocols, the runner and adapters for outside harnesses.

* :mod:`.metrics` -- the metrics as pure functions matching the reference code (LLaVA, lmms-eval,
  VLMEvalKit, ConvLLaVA, LLaVA-UHD v2) exactly, quirks included;
* :mod:`.tasks` -- one small file per benchmark: published files -> prompts -> scores;
* :mod:`.protocols` -- named, versioned protocol records (``llava15``, ``lmms-eval``, ``vlmevalkit``,
  ``uhd-v2``) written next to every score;
* :mod:`.runner` -- ``loupe eval``: batched greedy generation, resumable JSONL predictions, torchrun splits;
* :mod:`.lmms_eval_plugin` -- a Loupe model inside lmms-eval through its ``lmms_eval.models`` entry point;
* :mod:`.fixtures` -- tiny copies of each benchmark's published files, for tests and smoke runs.
"""

from . import metrics
from .protocols import PROTOCOLS, Protocol, get_protocol
from .runner import run_eval
from .tasks import TASKS, get_task

__all__ = ["metrics", "PROTOCOLS", "Protocol", "get_protocol", "run_eval", "TASKS", "get_task"]
