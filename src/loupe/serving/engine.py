"""Batched generation for the server: several chats in one left-padded prefill, then a shared decode loop.

A :class:`Request` carries chat messages (``{"type": "image"}`` / ``{"type": "text"}`` blocks, the form
:func:`loupe.serving.chat.user_message` builds), its images and optional per-image slicer configs (a token
budget, :mod:`loupe.budget`). :meth:`Engine.prepare` turns it into token ids and tiles once (its exact
``prompt_tokens`` and ``image_tokens`` come from the processor's geometry); :meth:`Engine.generate` runs any
number of prepared requests together:

* prefill: prompts left-padded (LLaVA-NeXT issue 365, transformers 28184: right padding breaks batched
  generation), ``position_ids = cumsum(attention_mask) - 1`` as in transformers' ``generate``, so each row sees
  the positions it would see alone;
* decode: one token per live row per step; a row stops at EOS, at one of its ``stop`` strings, at its
  ``max_tokens`` or when its ``cancelled`` event is set, and leaves the batch (``DynamicCache.batch_select_indices``);
* each row decodes greedily (``temperature`` 0 or None with a greedy generation config) or samples with its own
  ``torch.Generator`` seeded by ``seed`` (temperature, then top-p).

The answer is ``tokenizer.decode(tokens, skip_special_tokens=True).strip()`` — what ``loupe chat``
(:class:`loupe.serving.chat.ChatSession`) prints — and ``on_text`` receives it in pieces as it grows (whitespace
at the ends and a possible start of a stop string are held back until they are known to belong to the answer).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import LoupeError


@dataclass
class Request:
    messages: list
    images: list = field(default_factory=list)
    slicers: list | None = None  # one slicer config or None per image (None: the model's)
    max_tokens: int = 128
    temperature: float | None = None  # None: the model's generation config (greedy unless it samples)
    top_p: float = 1.0
    seed: int | None = None
    stop: list = field(default_factory=list)
    on_text: Callable[[str], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class Prepared:
    request: Request
    input_ids: torch.Tensor  # (L,)
    pixel_values: torch.Tensor | None
    image_sizes: torch.Tensor | None
    layouts: list
    image_tokens: int

    @property
    def prompt_tokens(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class Result:
    text: str
    tokens: list
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    image_tokens: int

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


class _Stream:
    """Grows the answer text and emits the part that can no longer change."""

    def __init__(self, tokenizer, stop: list[str], on_text):
        self.tok, self.stop, self.on_text = tokenizer, [s for s in stop if s], on_text
        self.tokens: list[int] = []
        self.sent = 0  # characters of the stripped answer already emitted
        self.text = ""

    def push(self, token: int) -> bool:
        """Add a token; True when a stop string ended the answer."""
        self.tokens.append(int(token))
        text = self.tok.decode(self.tokens, skip_special_tokens=True).lstrip()
        hit = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if hit >= 0:
            self.text = text[:hit]
            return True
        self.text = text
        self._emit(final=False)
        return False

    def _emit(self, final: bool):
        if self.on_text is None:
            return
        text = self.text.rstrip() if final else self.text
        if not final:
            if text.endswith("\ufffd"):  # a multi-byte character cut between tokens
                text = text.rstrip("\ufffd")
            hold = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            text = text[: len(text) - hold].rstrip()
        if len(text) > self.sent:
            self.on_text(text[self.sent:])
            self.sent = len(text)

    def finish(self) -> str:
        self._emit(final=True)
        return self.text.strip()


class Engine:
    def __init__(self, model, processor):
        self.model, self.processor = model, processor
        self.tokenizer = processor.tokenizer
        gc = getattr(model, "generation_config", None)
        eos = getattr(gc, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self.do_sample_default = bool(getattr(gc, "do_sample", False))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        tc = getattr(model.config, "text_config", None)
        self.max_positions = getattr(tc, "max_position_embeddings", None)

    # --- preparing ---------------------------------------------------------------------------------------
    def prompt(self, messages: list) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def prepare(self, req: Request) -> Prepared:
        text = self.prompt(req.messages)
        kwargs = {}
        if req.slicers is not None and any(s is not None for s in req.slicers):
            kwargs["image_slicers"] = req.slicers
        enc = self.processor(images=req.images or None, text=[text], add_special_tokens=False, **kwargs)
        ids = enc["input_ids"][0]
        layouts = enc.get("image_layouts")
        if layouts is None and req.images:
            layouts = self.model.layouts(enc["image_sizes"])
        # every position the images take (their token plans: visual slots and text spans such as separators)
        image_tokens = sum(self.processor.image_processor.geometry.num_tokens(lay) for lay in (layouts or []))
        if self.max_positions and ids.shape[0] + req.max_tokens > self.max_positions:
            raise LoupeError(
                f"the prompt is {ids.shape[0]} tokens ({image_tokens} visual) and max_tokens is {req.max_tokens}: "
                f"over the model's context of {self.max_positions} tokens"
            )
        return Prepared(req, ids, enc.get("pixel_values"), enc.get("image_sizes"), list(layouts or []), image_tokens)

    # --- generating --------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, batch: list[Prepared]) -> list[Result]:
        if not batch:
            return []
        model, dev = self.model, self.model.device
        n = len(batch)
        width = max(p.prompt_tokens for p in batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, p in enumerate(batch):
            ids[i, width - p.prompt_tokens:] = p.input_ids
            mask[i, width - p.prompt_tokens:] = 1
        inputs = {"input_ids": ids.to(dev), "attention_mask": mask.to(dev)}
        with_images = [p for p in batch if p.pixel_values is not None]
        if with_images:
            inputs["pixel_values"] = _cat_tiles([p.pixel_values for p in with_images]).to(dev, model.dtype)
            inputs["image_sizes"] = torch.cat([p.image_sizes for p in with_images]).to(dev)
            inputs["image_layouts"] = [lay for p in with_images for lay in p.layouts]
        pos = (mask.cumsum(-1) - 1).clamp(min=0).to(dev)
        out = model(**inputs, position_ids=pos, use_cache=True, logits_to_keep=1)
        cache, logits = out.past_key_values, out.logits[:, -1]
        mask, last_pos = inputs["attention_mask"], pos[:, -1]

        streams = [_Stream(self.tokenizer, p.request.stop, p.request.on_text) for p in batch]
        gens = [_generator(p.request.seed) for p in batch]
        reasons: list[str | None] = [None] * n
        live = list(range(n))  # batch rows still generating, in cache order
        while live:
            nxt, keep = [], []
            for row, i in enumerate(live):
                req = batch[i].request
                if req.cancelled.is_set():
                    reasons[i] = "cancelled"
                    continue
                tok = self._pick(logits[row], req, gens[i])
                done = None
                if tok in self.eos:
                    streams[i].tokens.append(tok)
                    done = "stop"
                elif streams[i].push(tok):
                    done = "stop"
                elif len(streams[i].tokens) >= req.max_tokens:
                    done = "length"
                if done:
                    reasons[i] = done
                else:
                    keep.append(row)
                    nxt.append(tok)
            if not keep:
                break
            if len(keep) < len(live):
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                mask, last_pos = mask[idx], last_pos[idx]
                live = [live[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], 1)
            last_pos = last_pos + 1
            out = model(
                input_ids=torch.tensor(nxt, device=dev)[:, None], attention_mask=mask,
                position_ids=last_pos[:, None], past_key_values=cache, use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1]
        results = []
        for p, s, r in zip(batch, streams, reasons):
            results.append(Result(s.finish(), s.tokens, r or "length", p.prompt_tokens, p.image_tokens))
        return results

    def _pick(self, logits: torch.Tensor, req: Request, gen) -> int:
        t = req.temperature
        greedy = (t is None and not self.do_sample_default) or (t is not None and t <= 0)
        if greedy:
            return int(logits.argmax())
        t = 1.0 if t is None else float(t)
        probs = torch.softmax(logits.float() / t, -1)
        if req.top_p < 1.0:
            sp, si = probs.sort(descending=True)
            cut = sp.cumsum(-1) - sp > req.top_p  # keep the smallest prefix whose mass reaches top_p
            sp[cut] = 0
            probs = torch.zeros_like(probs).scatter(0, si, sp)
        return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))

    def run(self, req: Request) -> Result:
        """One request alone (prepare + generate)."""
        return self.generate([self.prepare(req)])[0]


def _generator(seed):
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def _cat_tiles(chunks: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate (N_i, 3, h_i, w_i) tiles, zero-padding to the largest (the layouts keep true sizes)."""
    if len({tuple(c.shape[1:]) for c in chunks}) == 1:
        return torch.cat(chunks)
    h = max(c.shape[2] for c in chunks)
    w = max(c.shape[3] for c in chunks)
    out = chunks[0].new_zeros(sum(c.shape[0] for c in chunks), chunks[0].shape[1], h, w)
    k = 0
    for c in chunks:
        out[k:k + c.shape[0], :, : c.shape[2], : c.shape[3]] = c
        k += c.shape[0]
    return out
