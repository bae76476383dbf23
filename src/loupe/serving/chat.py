"""One-shot and multi-turn chat with a saved Loupe model (used by ``loupe chat`` and the server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import LoupeError


def load(model_dir: str, device: str = "cpu", dtype: torch.dtype | None = None):
    """(model, processor) from a folder written by ``save_pretrained`` (model and processor)."""
    from .. import LoupeForConditionalGeneration, LoupeProcessor

    p = Path(model_dir)
    if not (p / "config.json").exists():
        raise LoupeError(f"{p} is not a saved Loupe model folder (no config.json)")
    model = LoupeForConditionalGeneration.from_pretrained(str(p), dtype=dtype).to(device).eval()
    processor = LoupeProcessor.from_pretrained(str(p), local_files_only=True)
    return model, processor


def user_message(text: str, n_images: int) -> dict:
    if "<image>" in text:
        if text.count("<image>") != n_images:
            raise LoupeError(f"the question has {text.count('<image>')} <image> but {n_images} image(s) were given")
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}


@dataclass
class ChatSession:
    """A conversation: images attach to the turn they are given with."""

    model: object
    processor: object
    max_new_tokens: int = 128
    messages: list = field(default_factory=list)
    images: list = field(default_factory=list)

    @torch.no_grad()
    def ask(self, text: str, images: list | None = None) -> str:
        images = list(images or [])
        self.messages.append(user_message(text, len(images)))
        self.images += images
        prompt = self.processor.tokenizer.apply_chat_template(self.messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(images=self.images or None, text=[prompt], add_special_tokens=False)
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        answer = self.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        self.messages.append({"role": "assistant", "content": answer})
        return answer
