"""One-shot and multi-turn chat with a saved Loupe model (used by ``loupe chat``, ``loupe eval`` and the server).

* :func:`load_model_folder` -- (model, processor) from a ``save_pretrained`` folder, after checking what the
  folder must hold (``config.json``, complete weights, ``tokenizer.json``, the processor config) and that the
  device exists; every problem is a :class:`~loupe.errors.LoupeError` naming the file, never a traceback from
  deep inside transformers or safetensors. It also tells the processor the LLM's context length
  (``text_config.max_position_embeddings``), so over-long prompts are refused before they reach the model.
* :class:`ChatSession` -- a conversation; a question that does not fit the context is refused with both
  numbers, or shortened when asked (``truncate=True``, ``loupe chat --truncate``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import LoupeError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, or a :class:`LoupeError` when it does not exist on this machine."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise LoupeError(f"device {device!r} is not a device name (cpu, cuda, cuda:N, mps): {e}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise LoupeError(f"device {device!r}: CUDA is not available ({why}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise LoupeError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise LoupeError(f"device {device!r}: MPS is not available on this machine; use --device cpu")
        return dev
    raise LoupeError(f"device {device!r} is not supported here; use cpu, cuda, cuda:N or mps")


def check_safetensors(path: Path) -> None:
    """Raise if ``path`` is not a complete safetensors file: the 8-byte header length, the JSON header and
    the largest tensor end offset must all fit in the file (what an interrupted copy or save breaks).
    Reads the header only."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{size} bytes, shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if 8 + n > size:
                raise ValueError(f"the header says {n:,} header bytes but the file is {size:,} bytes")
            header = json.loads(f.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise LoupeError(f"{path} is truncated or corrupt ({e}); save or copy the model again") from None
    if 8 + n + end > size:
        raise LoupeError(f"{path} is truncated: its tensors need {8 + n + end:,} bytes but the file is {size:,} "
                         f"bytes; save or copy the model again")


def _check_weights(p: Path) -> list[str]:
    if (p / "model.safetensors").is_file():
        check_safetensors(p / "model.safetensors")
        return []
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = p / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise LoupeError(f"{index} is not a valid weight index ({e})") from None
            missing = [s for s in shards if not (p / s).is_file()]
            if missing:
                return [f"weight shard(s) listed in {index_name} are missing: {', '.join(missing)}"]
            for s in shards:
                if s.endswith(".safetensors"):
                    check_safetensors(p / s)
            return []
    if (p / "pytorch_model.bin").is_file():
        return []
    return [f"no weights ({' or '.join(WEIGHT_FILES)})"]


def check_model_folder(model_dir: str | Path) -> Path:
    """Check that ``model_dir`` is a complete saved Loupe model + processor folder (without loading it):
    ``config.json`` (valid JSON), weights (a complete safetensors file, an index with all its shards, or
    ``pytorch_model.bin``), ``tokenizer.json`` and ``processor_config.json``. Raises one
    :class:`LoupeError` naming everything that is missing."""
    p = Path(model_dir)
    if not p.exists():
        raise LoupeError(f"model folder not found: {p}")
    if not p.is_dir():
        raise LoupeError(f"{p} is a file, not a model folder (give the folder written by save_pretrained)")
    if not (p / "config.json").is_file():
        raise LoupeError(f"{p} is not a saved Loupe model folder (no config.json)")
    try:
        cfg = json.loads((p / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise LoupeError(f"{p / 'config.json'} is not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise LoupeError(f"{p / 'config.json'} is not a JSON object")
    problems = _check_weights(p)
    if not (p / "tokenizer.json").is_file():
        problems.append("no tokenizer.json (save the processor too: processor.save_pretrained(folder))")
    if not any((p / f).is_file() for f in PROCESSOR_FILES):
        problems.append("no processor_config.json (save the processor too: processor.save_pretrained(folder))")
    if problems:
        raise LoupeError(f"model folder {p} is incomplete: " + "; ".join(problems))
    return p


def context_length_of(model) -> int | None:
    """The LLM's context length from the model config (``max_position_embeddings``), if it says."""
    cfg = getattr(getattr(model, "config", None), "text_config", None)
    n = getattr(cfg, "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def load_model_folder(model_dir: str | Path, device: str = "cpu", dtype: torch.dtype | None = None):
    """(model, processor) from a folder written by ``save_pretrained`` (model and processor), checked first
    (:func:`check_device`, :func:`check_model_folder`); the processor learns the LLM's context length."""
    from .. import LoupeForConditionalGeneration, LoupeProcessor

    dev = check_device(device)
    p = check_model_folder(model_dir)
    try:
        model = LoupeForConditionalGeneration.from_pretrained(str(p), dtype=dtype)
    except LoupeError:
        raise
    except Exception as e:  # OSError, SafetensorError, size mismatches: the folder is bad, say which
        raise LoupeError(f"cannot load the model weights in {p}: {type(e).__name__}: {e}") from None
    try:
        processor = LoupeProcessor.from_pretrained(str(p), local_files_only=True)
    except LoupeError:
        raise
    except Exception as e:
        raise LoupeError(f"cannot load the processor in {p}: {type(e).__name__}: {e}") from None
    processor.context_length = context_length_of(model)
    return model.to(dev).eval(), processor


load = load_model_folder  # the older name


def user_message(text: str, n_images: int) -> dict:
    if "<image>" in text:
        if text.count("<image>") != n_images:
            raise LoupeError(f"the question has {text.count('<image>')} <image> but {n_images} image(s) were given")
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}


def check_max_new_tokens(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LoupeError(f"max_new_tokens must be a positive integer, got {n!r}")
    return n


@dataclass
class ChatSession:
    """A conversation: images attach to the turn they are given with.

    A turn whose prompt (text + visual tokens, history included) does not fit the model's context
    (``processor.max_prompt_tokens``) is refused with both numbers and leaves the conversation as it was;
    with ``truncate=True`` the new question is cut (from its end, never inside an image) so that the prompt
    and ``max_new_tokens`` fit. The answer is capped at the room the context leaves."""

    model: object
    processor: object
    max_new_tokens: int = 128
    truncate: bool = False
    max_image_tokens: int | None = None  # per-image visual-token budget (loupe.budget, as the server's)
    messages: list = field(default_factory=list)
    images: list = field(default_factory=list)

    def __post_init__(self):
        check_max_new_tokens(self.max_new_tokens)

    def _prompt(self, messages) -> str:
        return self.processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _fit(self, text: str, images: list) -> str:
        """``text`` cut so that the whole prompt leaves room for the answer (``truncate=True``)."""
        proc, limit = self.processor, self.processor.max_prompt_tokens
        rest = self._prompt(self.messages + [user_message("", len(images))])
        cap = max(0, proc.max_text_chars - len(rest.replace(proc.image_token, "")))
        if len(text) > cap:  # the raw-character cap first, so that the tokenizer never sees a huge string
            text = text[:cap]
        if limit is None:
            return text
        target = max(1, limit - self.max_new_tokens)
        tok = proc.tokenizer
        for _ in range(4):  # re-tokenising at the cut can shift a token or two
            prompt = self._prompt(self.messages + [user_message(text, len(images))])
            n_text, n_visual = proc.count_tokens(self.images + images, prompt)
            over = n_text + n_visual - target
            if over <= 0:
                return text
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if over >= len(ids):
                raise LoupeError(f"the prompt needs {n_text + n_visual} tokens ({n_text} text + {n_visual} visual) "
                                 f"without room for a {self.max_new_tokens}-token answer in the model's context of "
                                 f"{limit}; even an empty question would not fit (fewer or smaller images, a "
                                 f"shorter history, or a smaller --max-new-tokens)")
            text = tok.decode(ids[: len(ids) - over], skip_special_tokens=False)
        return text

    @torch.no_grad()
    def ask(self, text: str, images: list | None = None) -> str:
        images = list(images or [])
        if self.truncate:
            text = self._fit(text, images)
        elif len(text) > self.processor.max_text_chars:  # before the template and the tokenizer see it
            limit = self.processor.max_prompt_tokens
            raise LoupeError(f"the question is {len(text):,} characters, over the limit of "
                             f"{self.processor.max_text_chars:,}"
                             + (f" for the model's {limit}-token context" if limit else "")
                             + "; shorten it, or let it be cut to fit (loupe chat --truncate)")
        messages = self.messages + [user_message(text, len(images))]
        prompt = self._prompt(messages)
        # the processor refuses a prompt over the context (both numbers in the message)
        all_images = self.images + images
        budget = {"max_image_tokens": self.max_image_tokens} if self.max_image_tokens is not None and all_images else {}
        inputs = self.processor(images=all_images or None, text=[prompt], add_special_tokens=False, **budget)
        n_prompt = int(inputs["input_ids"].shape[1])
        max_new = self.max_new_tokens
        limit = self.processor.max_prompt_tokens
        if limit is not None:
            if n_prompt >= limit:
                raise LoupeError(f"the prompt is {n_prompt} tokens, the model's whole context ({limit}); no room "
                                 f"is left for an answer")
            max_new = min(max_new, limit - n_prompt)
        inputs = {k: v.to(self.model.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        out = self.model.generate(**inputs, max_new_tokens=max_new, do_sample=False)
        answer = self.processor.tokenizer.decode(out[0, n_prompt:], skip_special_tokens=True).strip()
        self.messages = messages + [{"role": "assistant", "content": answer}]
        self.images += images
        return answer
