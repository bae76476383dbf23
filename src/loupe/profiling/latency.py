"""Measured latency and throughput of a saved Loupe model (with weights) on the current device.

For each image size: a random RGB image of that size through the saved processor (``batch`` copies), a prompt
of its visual tokens + ``text_tokens`` random text ids; then, timed (median of ``reps`` after one warm-up):

* **prefill**: one ``model(...)`` forward with logits for the last position (``no_grad``) -> ``latency_s``,
  images/s and prompt tokens/s;
* **decode**: ``generate`` of ``new_tokens`` greedy tokens; decode tokens/s = new tokens / (generate - prefill).

The device is CUDA when available, else CPU (fp32 on CPU: bf16 matmuls are ~14x slower there on x86 without AMX).
Preprocessing is not timed here (``benchmarks/bench_anyres_preprocess.py`` does that).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from PIL import Image


def _median_time(fn, reps: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(model_dir, sizes, text_tokens: int = 0, batch: int = 1, reps: int = 5, new_tokens: int = 8) -> list[dict]:
    from ..builder import build_processor
    from ..modeling import LoupeForConditionalGeneration

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    model = LoupeForConditionalGeneration.from_pretrained(str(model_dir), dtype=dtype).to(device).eval()
    proc = build_processor(str(model_dir))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rng = np.random.default_rng(0)
    vocab = model.config.text_config.vocab_size
    out = []
    for w, h in sizes:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        feats, layouts = proc.image_processor.process([img] * batch)
        n_vis = proc.image_processor.geometry.num_tokens(layouts[0])
        text = torch.as_tensor(rng.integers(5, vocab, (batch, text_tokens)), dtype=torch.long)
        ids = torch.cat([torch.full((batch, n_vis), model.config.image_token_id), text], 1)
        inputs = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
                  "pixel_values": feats["pixel_values"].to(device, dtype),
                  "image_sizes": feats["image_sizes"].to(device)}
        with torch.no_grad():
            prefill = _median_time(lambda: model(**inputs, logits_to_keep=1), reps, sync)
            try:
                gen = _median_time(lambda: model.generate(**inputs, max_new_tokens=new_tokens,
                                                          min_new_tokens=new_tokens, do_sample=False),
                                   max(1, reps // 2), sync)
                decode = new_tokens * batch / max(gen - prefill, 1e-9)
            except Exception:  # a model that cannot generate still gets its prefill figures
                decode = None
        out.append({"device": str(device), "dtype": str(dtype).removeprefix("torch."), "latency_s": prefill,
                    "images_per_s": batch / prefill, "prefill_tokens_per_s": batch * ids.shape[1] / prefill,
                    "decode_tokens_per_s": decode, "reps": reps})
    return out
