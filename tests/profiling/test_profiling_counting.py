"""Units of the profiler: FLOP counting traps, the activation meter, the LLM and memory accounting, checks."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import loupe
from loupe.errors import LoupeError
from loupe.profiling import counting, llm, memory, parse_sizes
from loupe.profiling.parts import check


def test_cpu_sdpa_is_counted():
    q = torch.randn(1, 2, 16, 8)
    with FlopCounterMode(display=False) as plain:
        F.scaled_dot_product_attention(q, q, q)
    with counting.Counter() as c:
        F.scaled_dot_product_attention(q, q, q)
    assert plain.get_total_flops() == 0  # the trap: the CPU fused kernel is not in torch's registry
    assert c.total == c.attention == 4 * 16 * 16 * 8 * 2


def test_counter_exclude_attributes_module_flops():
    lin, mha = torch.nn.Linear(8, 8), torch.nn.MultiheadAttention(8, 2)
    x = torch.randn(5, 1, 8)
    with counting.Counter().exclude([mha]) as c:
        mha(lin(x), x, x, need_weights=False)
    assert c.total == 2 * 5 * 8 * 8 + c.excluded and c.excluded > 0


def test_activation_meter_is_deterministic_and_keeps_no_probabilities():
    with torch.device("meta"):
        model = loupe.build_model("llava15-tiny").to(torch.bfloat16)
    x = torch.empty(1, 40, 64, dtype=torch.bfloat16, device="meta")
    seen = []
    for _ in range(3):
        with counting.ActivationMeter(model.parameters()) as m:
            model.language_model(inputs_embeds=x)
        seen.append((m.efficient, m.attention))
    assert len(set(seen)) == 1
    assert seen[0][1] == 2 * 2 * 40 * 40 * 2  # 2 layers x 2 heads x 40^2 probabilities, bf16
    assert seen[0][0] > 0


def test_llm_analytic_equals_counted_with_gqa():
    cfg = loupe.build_config("llava15-llama3-8b").text_config  # GQA: 8 KV heads of 32
    with torch.device("meta"):
        lm = loupe.build_model("llava15-llama3-8b").language_model
    with counting.Counter() as c:
        lm(inputs_embeds=torch.empty(1, 100, 4096, device="meta"), logits_to_keep=1)
    assert c.total == llm.flops(cfg, 100, 1)["total"]
    assert llm.kv_bytes_per_token(cfg) == 2 * 32 * 8 * 128 * 2


def test_memory_estimate_and_budgets():
    acts = {"vision": 2**28, "connector": 2**28, "llm": 2**29}
    m = memory.estimate(params=7_000_000_000, trainable_connector=20_000_000, activations=acts,
                        attention_matrices=2**29, inference_peak=2**20, kv_bytes=100_000, batch=4)
    assert m["inference_bytes"] == 2 * 7_000_000_000 + 4 * 2**20 and m["kv_cache_bytes"] == 400_000
    assert m["training_bytes"] == 16 * 7_000_000_000 + 4 * 2**30
    assert m["training_connector_only_bytes"] == 2 * 7_000_000_000 + 14 * 20_000_000 + 4 * (2**28 + 2**29)
    assert m["fits_training_connector_only"]["24GB"] and not m["fits_training"]["80GB"]
    assert m["training_eager_bytes"] == m["training_bytes"] + 4 * 2**29
    assert m["fits_inference"] == {"24GB": True, "40GB": True, "80GB": True}
    assert memory.fits_label(m["fits_training"]) == "none"


def test_peak_meter_follows_live_tensors():
    x = torch.empty(1000, device="meta")
    with counting.PeakMeter() as m:
        a = x * 2
        b = a + 1  # 8000 bytes live
        del a
        c = b.view(10, 100)  # a view: nothing new
        d = b * 3  # 8000 bytes live again
        del b, c, d
    assert m.peak == 8000 and m.live == 0


def test_check_flags_gaps_over_two_percent():
    assert check("x", 100, 101)["flag"] is None
    assert "+5.0%" in check("x", 95, 100)["flag"]
    assert check("x", None, 100)["flag"].startswith("no analytic")


def test_parse_sizes():
    assert parse_sizes("336x336, 1008x672") == [(336, 336), (1008, 672)]
    assert parse_sizes([(1, 2), "3x4"]) == [(1, 2), (3, 4)]
    for bad in ("336", "0x5", "axb"):
        with pytest.raises(LoupeError):
            parse_sizes(bad)
