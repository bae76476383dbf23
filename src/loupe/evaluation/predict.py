"""Batched greedy answers for single-turn image questions (left padding; equals one-by-one generation).

* :func:`render_prompt` -- the user text plus its images through the processor's chat template, the image
  placed as the protocol says: ``"newline"`` (an image block, which Loupe's templates render as
  ``<image>\\n`` before the text: LLaVA, lmms-eval) or ``"inline"`` (``" <image> "`` then the text, as
  VLMEvalKit's LLaVA wrapper concatenates it).
* :func:`generate_batch` -- one left-padded batch through ``model.generate`` (greedy), decoded and stripped. Left
  padding with the attention mask keeps every row's positions as if it were alone (right-padded batches give empty or
  garbage answers: LLaVA-NeXT issues #365 and #398, transformers #28184), so batched answers equal one-by-one answers;
  the runner's test checks it.
* :func:`predict` -- the older interface the demo uses: LLaVA-format records -> ``(id, answer)``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from ..images import load_image


def _question(rec: dict) -> str:
    for turn in rec["conversations"]:
        if turn.get("from") in ("human", "user"):
            return turn["value"]
    raise KeyError(f"record {rec.get('id')} has no human turn")


def render_prompt(processor, text: str, n_images: int, placement: str = "newline",
                  chat_template: str | None = None) -> str:
    """The full prompt string (chat template applied, generation prompt added) for one question."""
    if placement == "inline":
        msg = {"role": "user", "content": " <image> " * n_images + text}
    else:
        msg = {"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}
    kwargs = {}
    if chat_template not in (None, "model"):
        from ..templates import get_template

        kwargs["chat_template"] = get_template(chat_template)
    return processor.tokenizer.apply_chat_template([msg], tokenize=False, add_generation_prompt=True, **kwargs)


def prompt_for(processor, question: str) -> str:
    """LLaVA-format question (``<image>`` written inline) -> prompt with the model's template."""
    text = question.replace("<image>\n", "").replace("<image>", "").strip()
    return render_prompt(processor, text, question.count("<image>"))


def open_image(source):
    """A path, a PIL image, bytes, or a ``"base64:..."`` string (TSV benchmarks) -> RGB PIL image."""
    if isinstance(source, str) and source.startswith("base64:"):
        return load_image(base64.b64decode(source[len("base64:"):]))
    return load_image(source)


@torch.no_grad()
def generate_batch(model, processor, prompts: Sequence[str], images: Sequence[Sequence], max_new_tokens: int,
                   stop: Sequence[str] = ()) -> list[str]:
    """Greedy answers for a batch: ``prompts`` are rendered prompts, ``images`` one list of PIL images (or
    loadable sources) per prompt. Text after the first ``stop`` string is dropped (as lmms-eval's ``until``)."""
    pil = [[open_image(x) for x in imgs] for imgs in images]
    flat = pil if any(pil) else None
    inputs = processor(images=flat, text=list(prompts), padding_side="left", add_special_tokens=False)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    out = model.generate(**inputs, max_new_tokens=int(max_new_tokens), do_sample=False, num_beams=1,
                         pad_token_id=processor.tokenizer.pad_token_id)
    answers = processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    cleaned = []
    for a in answers:
        for s in stop:
            if s:
                a = a.split(s)[0]
        cleaned.append(a.strip())
    return cleaned


def predict(model, processor, records: Iterable[dict], image_root: str | Path, batch_size: int = 16,
            max_new_tokens: int = 8, progress=None) -> Iterator[tuple[str, str]]:
    """``(id, answer)`` for LLaVA-format records whose first human turn is the question, in order."""
    model.eval()
    root = Path(image_root)
    batch: list[dict] = []

    def run(items):
        images = [[root / it["image"]] if it.get("image") else [] for it in items]
        texts = [prompt_for(processor, _question(it)) for it in items]
        answers = generate_batch(model, processor, texts, images, max_new_tokens)
        if progress is not None:
            progress(len(items))
        return [(it["id"], a) for it, a in zip(items, answers)]

    for rec in records:
        batch.append(rec)
        if len(batch) == batch_size:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)
