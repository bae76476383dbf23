"""A two-stage tiny recipe runs end to end on CPU; each stage changes exactly the parts it declares."""

from __future__ import annotations

import json

import torch


def _part(name: str) -> str:
    return name.split(".", 1)[0]


def test_two_stage_recipe_trains_declared_parts_only(tmp_path, tiny_data, tt):
    from loupe import LoupeForConditionalGeneration
    from loupe.training import run_recipe

    recipe = tt.tiny_recipe(tiny_data)
    w0 = tt.initial_weights(recipe)
    out = tmp_path / "run"
    finals = run_recipe(recipe, output=out)
    w1, w2 = tt.weights(finals[0]), tt.weights(finals[1])
    assert set(w0) == set(w1) == set(w2)

    # stage 1: connector only (checked parameter by parameter)
    for name in w0:
        changed = not torch.equal(w0[name], w1[name])
        assert changed == (_part(name) == "connector"), (name, changed)
    # stage 2: connector + language model, starting from stage 1's output; the vision tower stays
    for name in w0:
        changed = not torch.equal(w1[name], w2[name])
        assert changed == (_part(name) in ("connector", "language_model")), (name, changed)

    for k, final in enumerate(finals, 1):
        done = json.loads((final.parent / "DONE.json").read_text())
        assert done["stage"] == k and done["global_step"] == 4  # 32 records / global batch 8
        assert (final / "processor_config.json").is_file()
        assert not (final.parent / ".staging").exists()
    manifest = json.loads((finals[1] / "loupe_stage.json").read_text())
    assert manifest["trained_parts"] == {"connector": 2e-4, "language_model": 2e-4}

    # the final folder is a plain Loupe model
    model = LoupeForConditionalGeneration.from_pretrained(str(finals[1]))
    assert torch.equal(model.state_dict()["connector.proj.0.weight"], w2["connector.proj.0.weight"])

    # a rerun skips finished stages (the stage-done marker) and leaves their output alone
    mtime = (finals[1] / "model.safetensors").stat().st_mtime_ns
    assert run_recipe(recipe, output=out) == finals
    assert (finals[1] / "model.safetensors").stat().st_mtime_ns == mtime

    # logs: loss, LR per part, tokens/s at every step
    hist = json.loads((finals[1].parent / "log_history.json").read_text())
    steps = [h for h in hist if "loss" in h]
    assert len(steps) == 4
    assert all({"lr/connector", "lr/language_model", "tokens_per_second", "grad_norm"} <= set(h) for h in steps)
