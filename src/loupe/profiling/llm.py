"""The language model's own accounting (nanochat's ``estimate_flops`` / ``kv_bytes_per_token``, kept beside the
profiler because Loupe wraps any ``AutoModelForCausalLM`` rather than defining one).

Decoder-only transformer of the LLaMA family (LLaMA/Vicuna, Llama-3, Qwen2, Mistral: GQA, gated MLP), for a
prefill of ``tokens`` positions, FLOPs = 2 x MACs:

* projections: q and o ``2 T d (h hd)`` each, k and v ``2 T d (kv hd)`` each;
* MLP: ``3 x 2 T d ff`` (gate, up, down; ``gated=False``: 2 matmuls);
* attention: ``2 x 2 T^2 h hd`` (scores and weighted values), **full non-causal** T^2 as FlopCounterMode counts
  it (a causal kernel skips about half of it);
* ``lm_head``: ``2 K d V`` for the K positions whose logits are computed (K = 1 for a prefill that only needs
  the next token, the ``paper`` convention C2; K = T for a training forward, the ``full`` total).

Norms, rotary embeddings, activations, softmax and biases are not counted (nor by FlopCounterMode: Qwen2's
qkv biases ride in ``addmm``).
"""

from __future__ import annotations


def shapes(cfg) -> dict[str, int]:
    d, h = cfg.hidden_size, cfg.num_attention_heads
    return {"d": d, "h": h, "kv": getattr(cfg, "num_key_value_heads", None) or h,
            "hd": getattr(cfg, "head_dim", None) or d // h, "ff": cfg.intermediate_size,
            "layers": cfg.num_hidden_layers, "vocab": cfg.vocab_size}


def flops(cfg, tokens: int, logits: int = 1, gated: bool = True) -> dict[str, int]:
    """``{"projections", "mlp", "attention", "layers" (= the three), "lm_head", "total"}`` for one sequence."""
    s, t = shapes(cfg), int(tokens)
    q = s["h"] * s["hd"]
    proj = 2 * t * s["d"] * (2 * q + 2 * s["kv"] * s["hd"])
    mlp = (3 if gated else 2) * 2 * t * s["d"] * s["ff"]
    attn = 4 * t * t * q
    out = {k: s["layers"] * v for k, v in (("projections", proj), ("mlp", mlp), ("attention", attn))}
    out["layers"] = sum(out.values())
    out["lm_head"] = 2 * min(int(logits), t) * s["d"] * s["vocab"]
    out["total"] = out["layers"] + out["lm_head"]
    return out


def kv_bytes_per_token(cfg, dtype_bytes: int = 2) -> int:
    """KV-cache bytes one position occupies: keys and values of every layer."""
    s = shapes(cfg)
    return 2 * s["layers"] * s["kv"] * s["hd"] * dtype_bytes
