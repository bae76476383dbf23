"""The length/modality sampler is world-size independent; the engine splits batches and refuses traps."""

from __future__ import annotations

import pytest

from loupe.errors import LoupeError
from loupe.training.engine import batch_split, resolve_precision, training_arguments
from loupe.training.recipe import recipe_from_dict
from loupe.training.sampler import ModalityLengthGroupedSampler


def test_sampler_groups_by_modality_and_length_per_global_batch():
    lengths = [(i * 37) % 101 + 5 for i in range(200)]
    mm = [i % 5 != 0 for i in range(200)]
    s = ModalityLengthGroupedSampler(lengths, mm, global_batch=8, seed=3)
    idx = s.indices()
    assert sorted(idx) == list(range(200))
    full = [idx[k : k + 8] for k in range(0, 160 - 16, 8)]
    assert all(len({mm[i] for i in b}) == 1 for b in full[:-2])  # leftovers aside, one modality per batch
    assert all([lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True) for b in full[:-2])
    assert s.indices() == idx  # deterministic from (seed, epoch)
    s.set_epoch(1)
    assert s.indices() != idx


def test_batch_split():
    assert batch_split(256, 32, 8) == (32, 1)
    assert batch_split(128, 16, 2) == (16, 4)
    assert batch_split(8, 8, 2) == (4, 1)
    assert batch_split(12, 5, 1) == (4, 3)
    with pytest.raises(LoupeError, match="not divisible"):
        batch_split(10, 4, 4)


def _stage(**kw):
    raw = {"name": "x", "model": "llava15-tiny", "stages": [
        {"name": "a", "data": {"path": "d.jsonl"}, "parts": {"connector": 1e-3}, **kw}]}
    return recipe_from_dict(raw).stages[0]


def test_engine_refuses_silent_fallbacks(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU-only checks")
    assert resolve_precision("auto") == "fp32"
    with pytest.raises(LoupeError, match="needs a GPU"):
        resolve_precision("bf16")
    with pytest.raises(LoupeError, match="FSDP"):
        training_arguments(_stage(fsdp=True), tmp_path, 0)
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(LoupeError, match="DeepSpeed"):
            training_arguments(_stage(deepspeed="configs/deepspeed/zero3.json"), tmp_path, 0)
    args = training_arguments(_stage(gradient_checkpointing=True, global_batch_size=16, per_device_batch_size=4),
                              tmp_path, 0)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 4)
    assert args.activation_checkpointing and args.ddp_find_unused_parameters and not args.bf16


def test_shipped_deepspeed_configs_keep_param_groups():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"
    for name in ("zero2.json", "zero3.json"):
        cfg = json.loads((root / name).read_text())
        assert "optimizer" not in cfg and cfg["zero_optimization"]["stage"] == int(name[4])


def test_gradient_checkpointing_trains(tiny_data, tmp_path, tt):
    import torch

    from loupe.training import run_recipe

    recipe = tt.tiny_recipe(tiny_data, "stages.2.init_from=model", "stages.2.gradient_checkpointing=true",
                            "stages.2.max_steps=1", "stages.2.warmup_ratio=0", "stages.2.parts.vision_tower=1e-4")
    w0 = tt.initial_weights(recipe)
    w = tt.weights(run_recipe(recipe, output=tmp_path, stages=[1])[0])
    assert not torch.equal(w["vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"],
                                         w0["vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"])
