"""``loupe eval``: run one benchmark task on a saved model under a named protocol, resumably and in parallel.

1. Load the task's records from the local data folder. Malformed ones (broken JSON line, missing field,
   missing image, duplicate id) are reported with their ids and counted; ``strict`` makes them fatal.
2. Under ``torchrun`` each process takes the records whose index ``i % WORLD_SIZE == RANK`` and writes
   ``predictions.rank<R>.jsonl``; alone, the process writes ``predictions.jsonl`` directly.
3. Records already answered in any predictions file of the folder are skipped (a killed run resumes
   where it stopped; a different number of processes may resume it). Only valid answer rows count
   (:func:`.store.row_kind`): malformed rows are dropped with a warning and their records answered again,
   and records with an ``error`` row are retried. The rest go through batched greedy generation with left
   padding, with a tqdm bar (ETA), each batch appended and flushed as it finishes. A record whose image
   cannot be decoded, or that the processor refuses (an image the slicer cannot take, a prompt over the
   LLM's context), gets an ``error`` row and the run goes on (``strict``: fatal).
4. Rank 0 waits for the others (a gloo barrier), merges the files into ``predictions.jsonl`` in data order
   (one line per record, whatever the number of processes or restarts), scores with the task's metrics and
   writes ``metrics.json`` and ``results.md``; the protocol record sits next to every score.

``run.json`` pins what a folder holds (task, protocol, data, model): resuming with other settings (or with
a corrupt ``run.json``) fails rather than mixing answers from two protocols. All arguments, the data path and
the model folder (:func:`loupe.serving.chat.check_model_folder`) are checked before anything is written.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from ..errors import LoupeError
from . import store
from .predict import generate_batch, open_image, render_prompt
from .protocols import get_protocol, record
from .report import markdown
from .tasks import get_task
from .tasks.base import Problem


def _world() -> tuple[int, int]:
    # the same environment variables as loupe.training.engine.rank/world_size (set by torchrun)
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _barrier(world: int) -> None:
    if world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(hours=12))
    dist.barrier()


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
    os.replace(tmp, path)


def _check_run(out: Path, ident: dict, rank: int) -> None:
    f = out / "run.json"
    if f.exists():
        try:
            old = json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            old = e
        if not isinstance(old, dict):
            why = f"not valid JSON ({old})" if isinstance(old, Exception) else "not a JSON object"
            raise LoupeError(f"{f} is {why}: the folder's run settings are unknown, so its predictions cannot be "
                             f"trusted; use another --output folder (or delete the folder to start over)")
        if old != json.loads(json.dumps(ident, default=str)):
            keys = sorted(k for k in set(old) | set(ident) if old.get(k) != json.loads(json.dumps(ident.get(k),
                                                                                            default=str)))
            raise LoupeError(f"{out} holds a run with other settings ({', '.join(keys)} differ); "
                             "use another --output folder")
    elif rank == 0:
        _write_json(f, ident)


def load_docs(task, data: Path, limit: int | None) -> tuple[list, list[Problem]]:
    docs, problems = task.load(Path(data))
    seen, unique = set(), []
    for d in docs:
        if d.id in seen:
            problems.append(Problem(d.id, "duplicate id (kept the first record)"))
            continue
        seen.add(d.id)
        unique.append(d)
    return (unique[:limit] if limit is not None else unique), problems


def run_eval(model: str | Path, task: str, data: str | Path, output: str | Path, protocol: str = "llava15",
             overrides: tuple[str, ...] | list[str] = (), limit: int | None = None, batch_size: int = 8,
             strict: bool = False, progress: bool = True, device: str = "cpu", loaded=None,
             log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict | None:
    """Evaluate; returns the result dict on rank 0 (``None`` on other ranks). ``loaded`` = (model, processor)
    skips loading ``model`` from disk (the folder path is still recorded).

    Every argument is checked before anything is written: ``batch_size`` and ``limit`` must be positive
    integers, ``output`` a folder (or a new path), ``data`` must exist, and ``model`` a complete model folder
    on an existing ``device`` (:func:`loupe.serving.chat.check_model_folder`)."""
    t0 = time.time()
    rank, world = _world()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise LoupeError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise LoupeError(f"limit must be a positive integer (or None for all records), got {limit!r}")
    the_task = get_task(task)
    proto = get_protocol(protocol, overrides)
    settings = the_task.settings(proto)
    settings["max_new_tokens"] = the_task.max_new_tokens(proto)
    if isinstance(settings["max_new_tokens"], bool) or not isinstance(settings["max_new_tokens"], int) \
            or settings["max_new_tokens"] < 1:
        raise LoupeError(f"max_new_tokens must be a positive integer, got {settings['max_new_tokens']!r}")
    prec = record(proto, settings)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise LoupeError(f"output {out} is an existing file, not a folder")
    if not Path(data).exists():
        raise LoupeError(f"data not found: {data} (a local folder or file with the benchmark's published files)")
    if loaded is None:
        from ..serving.chat import check_device, check_model_folder

        check_device(device)
        check_model_folder(model)

    docs, problems = load_docs(the_task, Path(data), limit)
    if problems:
        msg = f"{len(problems)} malformed record(s): " + "; ".join(f"{p.id}: {p.reason}" for p in problems[:20])
        if strict:
            raise LoupeError(msg + (" ..." if len(problems) > 20 else "") + " (--strict)")
        if rank == 0:
            log(f"[eval] warning: {msg}{' ...' if len(problems) > 20 else ''}")
    if not docs:
        raise LoupeError(f"no usable records for task {the_task.name!r} in {data}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LoupeError(f"cannot create the output folder {out}: {e}") from None
    _check_run(out, {"task": the_task.name, "protocol": prec, "data": str(Path(data).resolve()),
                     "model": str(Path(model).resolve())}, rank)

    if loaded is None:
        from ..serving.chat import load_model_folder

        loaded = load_model_folder(str(model), device=device)
    net, processor = loaded
    net.eval()
    chat_template = proto.chat_template
    max_new = settings["max_new_tokens"]

    mine = [d for i, d in enumerate(docs) if i % world == rank]
    found = store.scan(out)
    todo = [d for d in mine if str(d.id) not in found.answers]
    retry = sum(1 for d in todo if str(d.id) in found.errors)
    if rank == 0:
        log(f"[eval] {the_task.name} under {proto.id}: {len(docs)} records, {world} process(es), "
            f"{len(mine) - len(todo)} of this process's {len(mine)} already answered")
        if found.malformed:
            log(f"[eval] warning: {found.malformed} malformed row(s) in the predictions files (not an answer "
                f"or error row: {'; '.join(found.examples)}) were dropped; their records are answered again")
    if retry:
        log(f"[eval] retrying {retry} record(s) of this process that failed before")
    appender = store.Appender(out / (store.MAIN if world == 1 else store.part_name(rank)))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="q", desc=f"{the_task.name}",
               disable=not progress or rank != 0, dynamic_ncols=True)
    try:
        for start in range(0, len(todo), batch_size):
            batch, rows = todo[start:start + batch_size], []
            ready, images = [], []
            for d in batch:
                try:
                    images.append([open_image(x) for x in d.images])
                    ready.append(d)
                except LoupeError as e:
                    if strict:
                        raise LoupeError(f"record {d.id}: {e} (--strict)") from None
                    rows.append({"id": d.id, "error": f"image unreadable: {e}"})
            if ready:
                rows += _answer(the_task, proto, net, processor, ready, images, max_new, chat_template, strict)
            appender.write(rows)
            bar.update(len(batch))
    finally:
        bar.close()
        appender.close()

    _barrier(world)
    if rank != 0:
        return None
    rows = store.merge(out, [d.id for d in docs])
    result = score_rows(the_task, proto, prec, docs, rows, problems)
    setup, notes = model_setup(processor, proto)
    result.update({"model": str(model), "data": str(data), "model_setup": setup, "notes": notes,
                   "world_size": world, "elapsed_s": round(time.time() - t0, 2)})
    _write_json(out / "metrics.json", result)
    (out / "results.md").write_text(markdown(result))
    log(f"[eval] {the_task.name}: {result['primary']} = {result['metrics'].get(result['primary'])} "
        f"({result['n_scored']} scored, {result['malformed']['count']} malformed) -> {out}")
    return result


def _answer(task, proto, net, processor, docs: list, images: list, max_new: int, chat_template,
            strict: bool) -> list[dict]:
    """Rows for a batch of records with decoded images. A record the processor refuses (an image the slicer
    cannot take, a prompt over the context) gets an ``error`` row naming why -- the batch is redone one
    record at a time to find it -- and the run goes on (``strict``: fatal)."""
    prompts = [task.prompt(d, proto) for d in docs]
    rendered = [render_prompt(processor, p, len(d.images), proto.image_placement, chat_template)
                for p, d in zip(prompts, docs)]
    try:
        answers = generate_batch(net, processor, rendered, images, max_new)
        return [{"id": d.id, "prediction": a, "prompt": p} for d, a, p in zip(docs, answers, prompts)]
    except LoupeError as e:
        if len(docs) == 1:
            if strict:
                raise LoupeError(f"record {docs[0].id}: {e} (--strict)") from None
            return [{"id": docs[0].id, "error": f"not answerable: {e}"}]
    rows = []
    for i in range(len(docs)):
        rows += _answer(task, proto, net, processor, docs[i:i + 1], images[i:i + 1], max_new, chat_template, strict)
    return rows


def model_setup(processor, proto) -> tuple[dict, list[str]]:
    """What the model did with images and chat (recorded), and a note where the protocol's reference did
    otherwise (e.g. LLaVA-1.5's scripts pad to a square; a model with another slicer is not that setup)."""
    import hashlib

    slicer = json.loads(json.dumps(dict(getattr(processor.image_processor, "slicer", {}) or {}), default=str))
    template = getattr(processor.tokenizer, "chat_template", None) or ""
    setup = {"slicer": slicer, "chat_template_sha1": hashlib.sha1(template.encode()).hexdigest()[:12]}
    notes = []
    if proto.image_handling == "pad" and not (slicer.get("name") == "pad" and slicer.get("mode", "pad") == "pad"):
        notes.append(f"protocol {proto.id} follows references that pad images to a square (expand2square); this "
                     f"model uses slicer {slicer.get('name')!r}: its numbers are for the model's own image handling")
    return setup, notes


def score_rows(task, proto, prec: dict, docs: list, rows: list[dict], problems: list[Problem]) -> dict:
    """Score merged prediction rows; error rows join the malformed list."""
    problems = list(problems)
    preds = {}
    for r in rows:
        if "error" in r:
            problems.append(Problem(str(r["id"]), r["error"]))
        else:
            preds[str(r["id"])] = str(r.get("prediction", ""))
    scored = [d for d in docs if d.id in preds]
    out = task.score(scored, preds, proto) if scored else {"primary": task.primary, "metrics": {}, "categories": {}}
    return {"task": task.name, "protocol": prec, "primary": out["primary"], "metrics": out["metrics"],
            "categories": out["categories"], "n_records": len(docs), "n_scored": len(scored),
            "malformed": {"count": len(problems), "records": [p.as_dict() for p in problems]}}
