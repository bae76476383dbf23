"""Batched greedy answers for single-turn image questions (left padding; equals one-by-one generation).

``predict(model, processor, items, image_root, batch_size)`` takes LLaVA-format records whose first human
turn is the question, renders them with the processor's chat template and yields ``(id, answer)`` in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import torch

from ..images import load_image


def _question(rec: dict) -> str:
    for turn in rec["conversations"]:
        if turn.get("from") in ("human", "user"):
            return turn["value"]
    raise KeyError(f"record {rec.get('id')} has no human turn")


def prompt_for(processor, question: str) -> str:
    text = question.replace("<image>\n", "").replace("<image>", "").strip()
    n = question.count("<image>")
    msg = {"role": "user", "content": [{"type": "image"}] * n + [{"type": "text", "text": text}]}
    return processor.tokenizer.apply_chat_template([msg], tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def predict(model, processor, records: Iterable[dict], image_root: str | Path, batch_size: int = 16,
            max_new_tokens: int = 8, progress=None) -> Iterator[tuple[str, str]]:
    model.eval()
    root = Path(image_root)
    batch: list[dict] = []

    def run(items):
        images = [[load_image(root / it["image"])] if it.get("image") else [] for it in items]
        texts = [prompt_for(processor, _question(it)) for it in items]
        flat = images if any(images) else None
        inputs = processor(images=flat, text=texts, padding_side="left", add_special_tokens=False)
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=processor.tokenizer.pad_token_id)
        answers = processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        if progress is not None:
            progress(len(items))
        return [(it["id"], a.strip()) for it, a in zip(items, answers)]

    for rec in records:
        batch.append(rec)
        if len(batch) == batch_size:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)
