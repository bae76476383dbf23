"""The papers' recipes, shrunk to tiny presets, run on CPU through ``loupe train``'s engine and learn.

Each recipe file is used as shipped (stages, which parts train, templates, learning rates); only the model
(its tiny preset), the data (the tiny generated set), batch sizes, step counts and precision are overridden.
Every recipe in ``recipes/`` runs (one step of 2 samples a stage), and after each stage exactly the modules its ``parts``
train have moved; INF-LLaVA's also runs long enough for its loss to fall.
"""

import json

import pytest

REPO_RECIPES = __import__("pathlib").Path(__file__).resolve().parents[2] / "recipes"

SHRINK = [
    "model.vision_tower=null", "model.language_model=null", "stages.*.data.path=train.jsonl",
    "stages.*.data.image_root=.", "stages.*.data.num_workers=0", "stages.*.precision=fp32",
    "stages.*.deepspeed=null", "stages.*.gradient_checkpointing=false", "stages.*.global_batch_size=8",
    "stages.*.per_device_batch_size=8", "stages.*.max_length=1024", "stages.*.save_steps=100",
    "stages.*.logging_steps=1", "stages.*.warmup_ratio=0.0",
]


@pytest.mark.parametrize("recipe,preset,steps", [("inf-llava-8b.yaml", "inf-llava-tiny", 12)])
def test_paper_recipe_on_tiny_preset_trains_and_loss_falls(recipe, preset, steps, tiny_data, tmp_path):
    from loupe.training import load_recipe, run_recipe

    r = load_recipe(REPO_RECIPES / recipe, [f"data_root={tiny_data}", f"model.preset={preset}",
                                            f"stages.*.max_steps={steps}", *SHRINK])
    finals = run_recipe(r, output=tmp_path / "run")
    assert len(finals) == len(r.stages) and all((f / "config.json").exists() for f in finals)
    hist = json.loads((finals[0].parent / "log_history.json").read_text())
    losses = [h["loss"] for h in hist if "loss" in h]
    assert len(losses) >= steps - 1
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, losses


TINY = {"convllava-1536.yaml": "convllava-tiny", "fila-7b.yaml": "fila-tiny", "inf-llava-8b.yaml": "inf-llava-tiny",
        "llava-uhd-v2-7b.yaml": "llava-uhd-v2-tiny", "llava15-7b.yaml": "llava15-tiny",
        "tiny-llava15.yaml": "llava15-tiny"}


def test_every_shipped_recipe_is_covered():
    assert {p.name for p in REPO_RECIPES.glob("*.yaml")} == set(TINY)


@pytest.mark.parametrize("recipe", sorted(TINY))
def test_every_recipe_trains_exactly_its_parts_per_stage(recipe, tiny_data, tmp_path, tt):
    import torch

    from loupe.training import load_recipe, run_recipe
    from loupe.training.runner import check_parts

    shrink = [o for o in SHRINK if not o.startswith("model.")] if recipe.startswith("tiny") else SHRINK
    r = load_recipe(REPO_RECIPES / recipe, [f"data_root={tiny_data}", f"model.preset={TINY[recipe]}", *shrink,
                                            "stages.*.max_steps=1", "stages.*.global_batch_size=2",
                                            "stages.*.per_device_batch_size=2"])
    plans = check_parts(r)
    start = tt.initial_weights(r)
    finals = run_recipe(r, output=tmp_path / "run")
    assert len(finals) == len(r.stages)
    prev = start
    for k, (stage, plan, final) in enumerate(zip(r.stages, plans, finals)):
        before = start if stage.init_from == "model" or k == 0 else prev
        after = tt.weights(final)
        changed = {n for n in after if n in before and not torch.equal(after[n], before[n])}
        trained = plan.names
        assert changed <= trained, f"stage {stage.name}: frozen tensors moved: {sorted(changed - trained)[:5]}"
        for part, spec in stage.parts.items():
            if spec.lr > 0:
                assert any(n.split(".", 1)[0] == part for n in changed), f"stage {stage.name}: {part} did not train"
            else:
                assert not any(n.split(".", 1)[0] == part for n in changed), f"stage {stage.name}: {part} moved"
        prev = after
