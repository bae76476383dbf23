"""lmms-eval plugin: a Loupe model on lmms-eval's own pipeline, without forking lmms-eval.

Registration (lmms-eval's plugin entry points, ``lmms_eval/models/__init__.py``; verified with lmms-eval 0.7.3):
``pyproject.toml`` declares the entry point
``[project.entry-points."lmms_eval.models"] loupe = "loupe.evaluation.lmms_eval_plugin:manifests"``;
lmms-eval's ``ModelRegistryV2.load_entrypoint_manifests`` calls :func:`manifests`, which returns
``ModelManifest(model_id="loupe", simple_class_path="loupe.evaluation.lmms_eval_plugin.LoupeLMM")``. Then::

    lmms-eval eval --model loupe --model_args pretrained=DIR --tasks T --include_path DIR --batch_size 4

:class:`LoupeLMM` subclasses ``lmms_eval.api.model.lmms`` (a "simple" model): ``generate_until`` reads
``ctx, gen_kwargs, doc_to_visual, doc_id, task, split = req.args``, takes the images from
``doc_to_visual(self.task_dict[task][split][doc_id])``, renders the prompt with the model's chat template
(image first, as LLaVA) and answers greedily in left-padded batches grouped by ``gen_kwargs`` -- the same
:func:`~loupe.evaluation.predict.generate_batch` ``loupe eval`` uses, so both give the same answers.
``until`` strings are ignored by default, as in lmms-eval's own ``llava`` model (its post-hoc cut is commented
out), so the answers equal ``loupe eval``'s; ``apply_until=true`` cuts them as most other lmms-eval models do.
``loglikelihood`` scores a continuation one
request at a time; ``generate_until_multi_round`` is not supported.

This module imports without lmms-eval installed (the base class falls back to ``object`` and
:func:`manifests` imports lmms-eval only when called). :func:`write_synth_task` writes the generated
benchmark as a local lmms-eval task folder (YAML + ``utils.py``) for ``--include_path``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

try:  # lmms-eval is an optional extra (``pip install loupe[lmms]``)
    from lmms_eval.api.model import lmms as _LMMSBase

    HAVE_LMMS_EVAL = True
except ImportError:  # pragma: no cover - exercised in the main environment
    _LMMSBase = object
    HAVE_LMMS_EVAL = False

def manifests():
    """Entry point payload for the ``lmms_eval.models`` group."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id="loupe", simple_class_path="loupe.evaluation.lmms_eval_plugin.LoupeLMM")]


class LoupeLMM(_LMMSBase):
    """``--model loupe --model_args pretrained=DIR[,protocol=lmms-eval][,device=cpu][,apply_until=false]``."""

    is_simple = True

    def __init__(self, pretrained: str, batch_size: int | str = 1, device: str = "cpu", protocol: str = "lmms-eval",
                 apply_until: bool | str = False, **kwargs: Any) -> None:
        if not HAVE_LMMS_EVAL:
            raise ImportError("LoupeLMM needs lmms-eval: pip install 'loupe[lmms]' (then pip uninstall torchvision "
                              "on a CPU-only torch)")
        super().__init__()
        from ..serving.chat import load
        from .protocols import get_protocol

        self.model, self.processor = load(str(pretrained), device=str(device or "cpu"))
        self.protocol = get_protocol(protocol)
        self.batch_size_per_gpu = max(1, int(batch_size or 1))
        self.apply_until = str(apply_until).lower() in ("1", "true", "yes")
        self.ignored_kwargs = dict(kwargs)

    # -- lmms API -------------------------------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        from .predict import generate_batch, render_prompt

        results: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups[json.dumps(req.args[1], sort_keys=True, default=str)].append(i)
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(requests), disable=self.rank != 0, desc="loupe")
        except ImportError:  # pragma: no cover
            bar = None
        for idxs in groups.values():
            gen = dict(requests[idxs[0]].args[1])
            until = gen.pop("until", None) or []
            until = ([until] if isinstance(until, str) else list(until)) if self.apply_until else []
            max_new = int(gen.pop("max_new_tokens", 1024))
            for start in range(0, len(idxs), self.batch_size_per_gpu):
                chunk = idxs[start:start + self.batch_size_per_gpu]
                prompts, images = [], []
                for i in chunk:
                    ctx, _, doc_to_visual, doc_id, task, split = requests[i].args
                    visuals = [v for v in (doc_to_visual(self.task_dict[task][split][doc_id]) or []) if v is not None]
                    prompts.append(render_prompt(self.processor, ctx, len(visuals), self.protocol.image_placement,
                                                 self.protocol.chat_template))
                    images.append(visuals)
                answers = generate_batch(self.model, self.processor, prompts, images, max_new, stop=until)
                for i, a in zip(chunk, answers):
                    results[i] = a
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        import torch

        from .predict import open_image, render_prompt

        out = []
        for req in requests:
            ctx, cont, doc_to_visual, doc_id, task, split = req.args
            doc = self.task_dict[task][split][doc_id]
            if callable(cont):
                cont = cont(doc)
            visuals = [open_image(v) for v in (doc_to_visual(doc) or []) if v is not None]
            prompt = render_prompt(self.processor, ctx, len(visuals), self.protocol.image_placement,
                                   self.protocol.chat_template)
            imgs = visuals or None
            n_ctx = self.processor(images=imgs, text=[prompt], add_special_tokens=False)["input_ids"].shape[1]
            inputs = self.processor(images=imgs, text=[prompt + str(cont)], add_special_tokens=False)
            inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
            with torch.no_grad():
                logits = self.model(**inputs).logits[0].float()
            target = inputs["input_ids"][0, n_ctx:]
            logp = torch.log_softmax(logits[n_ctx - 1:-1], dim=-1)
            total = logp.gather(1, target[:, None]).sum().item()
            greedy = bool((logp.argmax(-1) == target).all().item())
            out.append((total, greedy))
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("the Loupe lmms-eval plugin answers single-turn requests only "
                                  "(generate_until_multi_round is not supported)")

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu


# -- the generated benchmark as a local lmms-eval task --------------------------------------------------------
def synth_doc_to_visual(doc: dict) -> list:
    from ..images import load_image

    return [load_image(doc["image"])]


def synth_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return doc["question"]


def synth_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    from .tasks.loupe_synth import correct

    score = correct(results[0], doc["answer"])
    return {"exact_match": score, f"exact_match_{doc['category']}": score}


_UTILS = '''"""lmms-eval hooks for the Loupe generated benchmark (written by loupe.evaluation.lmms_eval_plugin)."""
from loupe.evaluation.lmms_eval_plugin import synth_doc_to_text as doc_to_text  # noqa: F401
from loupe.evaluation.lmms_eval_plugin import synth_doc_to_visual as doc_to_visual  # noqa: F401
from loupe.evaluation.lmms_eval_plugin import synth_process_results as process_results  # noqa: F401
'''


def write_synth_task(data: str | Path, out_dir: str | Path, task_name: str = "loupe_synth",
                     limit: int | None = None, max_new_tokens: int | None = None) -> Path:
    """Write ``<out_dir>/<task_name>.yaml``, ``utils.py`` and ``<task_name>.jsonl`` (absolute image paths) for
    the generated benchmark in ``data`` (the first ``limit`` records, as ``loupe eval --limit``). The prompt,
    the token limit and the scoring are those of the ``loupe_synth`` task, so ``lmms-eval --tasks
    <task_name> --include_path <out_dir>`` and ``loupe eval --task loupe_synth`` score the same items alike.
    Returns ``out_dir``."""
    from .runner import load_docs
    from .tasks import get_task

    task = get_task("loupe_synth")
    docs, _ = load_docs(task, Path(data), limit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / f"{task_name}.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "image": str(Path(d.images[0]).resolve()), "question": d.data["question"],
                                "answer": d.data["answer"], "category": d.category}) + "\n")
    cats = sorted({str(d.category) for d in docs})
    metrics = "".join(f"  - metric: {m}\n    aggregation: mean\n    higher_is_better: true\n"
                      for m in ["exact_match"] + [f"exact_match_{c}" for c in cats])
    new_tokens = max_new_tokens or task.settings(None)["max_new_tokens"]
    yaml = (f"task: {task_name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
            f"    test: {json.dumps(str(jsonl))}\n"
            "test_split: test\noutput_type: generate_until\n"
            "doc_to_visual: !function utils.doc_to_visual\ndoc_to_text: !function utils.doc_to_text\n"
            "doc_to_target: answer\nprocess_results: !function utils.process_results\n"
            f"generation_kwargs:\n  max_new_tokens: {new_tokens}\n  until: []\n  do_sample: false\n"
            f"  temperature: 0\nmetric_list:\n{metrics}metadata:\n  version: 1.0\n")
    (out / f"{task_name}.yaml").write_text(yaml)
    (out / "utils.py").write_text(_UTILS)
    return out
