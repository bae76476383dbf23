"""Trainable parameters by part and sub-module pattern, per-part LR groups, and a LoRA stage end to end."""

from __future__ import annotations

import json

import pytest
import torch

from loupe.errors import LoupeError
from loupe.training.freezing import apply_plan, param_groups, plan_trainable
from loupe.training.recipe import PartSpec


@pytest.fixture()
def model():
    import loupe

    return loupe.build_model("llava15-tiny")


def test_patterns_select_submodules(model):
    last_vit = r"vision_tower\.vision_model\.encoder\.layers\.1\."
    plan = plan_trainable(model, {"vision_tower": PartSpec(lr=2e-6, only=[last_vit]),
                                  "connector": PartSpec(lr=1e-3),
                                  "language_model": PartSpec(lr=2e-5, exclude=[r"language_model\.lm_head\."])})
    apply_plan(model, plan)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == plan.names
    assert all(".layers.1." in n for n in plan.trainable["vision_tower"]) and len(plan.trainable["vision_tower"]) == 16
    assert "language_model.lm_head.weight" not in trained and "language_model.model.norm.weight" in trained
    groups = param_groups(model, plan, weight_decay=0.1, no_decay={n for n in trained if n.endswith("bias")})
    by_part = {}
    for g in groups:
        by_part.setdefault(g["part"], set()).add((g["lr"], g["weight_decay"]))
    assert by_part["vision_tower"] == {(2e-6, 0.1), (2e-6, 0.0)}
    assert by_part["connector"] == {(1e-3, 0.1), (1e-3, 0.0)} and by_part["language_model"] == {(2e-5, 0.1)}
    assert sum(len(g["params"]) for g in groups) == len(trained)


def test_typos_fail_loudly(model):
    with pytest.raises(LoupeError, match="matches no parameter of 'vision_tower'"):
        plan_trainable(model, {"vision_tower": PartSpec(lr=1e-5, only=[r"vision_tower\.encoder\.layers\.1\."])})
    with pytest.raises(LoupeError, match="its parts: vision_tower, connector, language_model"):
        plan_trainable(model, {"projector": PartSpec(lr=1e-3)})
    with pytest.raises(LoupeError, match="no parameter to train"):
        plan_trainable(model, {"connector": PartSpec(lr=1e-3, exclude=["connector"])})


def test_lora_stage_saves_a_plain_model_and_the_adapter(tmp_path, tiny_data, tt):
    from loupe import LoupeForConditionalGeneration
    from loupe.training import run_recipe

    recipe = tt.tiny_recipe(tiny_data, "stages.2.init_from=model", "stages.2.lora={r: 4, alpha: 8}",
                            "stages.2.parts.language_model=1e-3", "stages.2.max_steps=2")
    w0 = tt.initial_weights(recipe)
    final = run_recipe(recipe, output=tmp_path, stages=[1])[0]
    w = tt.weights(final)
    assert set(w) == set(w0)  # merged: no lora_A / base_model keys
    changed = {k.split(".", 1)[0] for k in w if not torch.equal(w[k], w0[k])}
    assert changed == {"connector", "language_model"}
    assert not torch.equal(w["language_model.model.layers.0.self_attn.q_proj.weight"],
                           w0["language_model.model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(w["language_model.model.norm.weight"], w0["language_model.model.norm.weight"])  # not adapted
    cfg = json.loads((final / "lora_adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8
    LoupeForConditionalGeneration.from_pretrained(str(final))
