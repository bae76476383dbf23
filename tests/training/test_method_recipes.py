"""The papers' recipes, shrunk to tiny presets, run on CPU through ``loupe train``'s engine and learn.

Each recipe file is used as shipped (stages, which parts train, templates, learning rates); only the model
(its tiny preset), the data (the tiny generated set), batch sizes, step counts and precision are overridden.
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
