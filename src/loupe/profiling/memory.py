"""Peak-memory estimates for inference and for one training step, and whether they fit 24 / 40 / 80 GB.

Assumptions (stated in every report):

* **weights** in bf16: 2 bytes per parameter;
* **inference** (prefill of the prompt) = weights + B x the **measured** peak of live tensors of the largest
  stage (encoder, connector, or LLM prefill with its bf16 KV cache of every prompt position), each run
  ``no_grad`` on the meta device (:class:`~loupe.profiling.counting.PeakMeter`);
* **training step** (full fine-tuning, every part trainable, mixed precision as DeepSpeed ZeRO-0 / torch AMP):
  16 bytes per parameter (bf16 weights 2 + bf16 grads 2 + fp32 master copy 4 + AdamW m and v 8) + the
  activations autograd keeps for backward, **measured** on the meta device in bf16 for one sample and
  multiplied by B (:class:`~loupe.profiling.counting.ActivationMeter`; it includes the fp32 logits of the
  loss). Attention with a fused kernel (SDPA/flash): the T^2 probability matrices are not kept; with eager
  attention they are (``training_eager_bytes``). No activation checkpointing, no ZeRO sharding, no allowance
  for the framework's own overhead (CUDA context, allocator fragmentation: plan ~1-2 GB);
* **connector-only training step** (LLaVA stage 1: encoder and LLM frozen): bf16 weights + 16 bytes per
  connector parameter + the connector's and the LLM's activations (the LLM's are still needed: the gradient
  flows through it to the visual tokens); the encoder keeps nothing.

Budgets are GiB (2^30 bytes), as GPU memory is sold ("24 GB" cards hold 24 GiB).
"""

from __future__ import annotations

GIB = 2**30
BUDGETS_GB = (24, 40, 80)
WEIGHT_BYTES = 2
TRAIN_BYTES_PER_PARAM = 16


def fits(nbytes: int) -> dict[str, bool]:
    return {f"{g}GB": nbytes <= g * GIB for g in BUDGETS_GB}


def estimate(params: int, trainable_connector: int, activations: dict, attention_matrices: int,
             inference_peak: int, kv_bytes: int, batch: int) -> dict:
    """Bytes. Per sample: ``activations`` ``{"vision", "connector", "llm"}`` (kept for backward),
    ``attention_matrices``, ``inference_peak`` (live tensors of the largest inference stage, KV cache included)
    and ``kv_bytes``."""
    weights = WEIGHT_BYTES * params
    kv = batch * kv_bytes
    inference = weights + batch * inference_peak
    act = sum(activations.values())
    training = TRAIN_BYTES_PER_PARAM * params + batch * act
    # LLaVA stage 1 (only the connector trains): frozen bf16 weights, the encoder keeps nothing for backward,
    # the LLM still does (the gradient flows through it to the visual tokens)
    stage1 = (weights + (TRAIN_BYTES_PER_PARAM - WEIGHT_BYTES) * trainable_connector
              + batch * (activations["connector"] + activations["llm"]))
    return {
        "batch": batch,
        "weights_bytes": weights,
        "kv_cache_bytes": kv,
        "activations_bytes": batch * act,
        "activations_by_part": {k: batch * v for k, v in activations.items()},
        "attention_matrix_bytes": batch * attention_matrices,
        "inference_bytes": inference,
        "training_bytes": training,
        "training_eager_bytes": training + batch * attention_matrices,
        "training_connector_only_bytes": stage1,
        "fits_inference": fits(inference),
        "fits_training": fits(training),
        "fits_training_connector_only": fits(stage1),
    }


def fits_label(flags: dict[str, bool]) -> str:
    """'24/40/80' style: the budgets it fits, or 'none'."""
    ok = [k.removesuffix("GB") for k, v in flags.items() if v]
    return "/".join(ok) if ok else "none"
