"""Every shipped recipe loads strictly; parts and patterns are checked against registered presets (meta device)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loupe.errors import LoupeError
from loupe.training import load_recipe, recipe_from_dict
from loupe.training.runner import check_parts

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def test_expected_recipes_ship():
    names = {p.stem for p in RECIPES}
    assert {"llava15-7b", "convllava-1536", "inf-llava-8b", "llava-uhd-v2-7b", "fila-7b", "tiny-llava15"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_cites_its_source(path):
    recipe = load_recipe(path)
    assert path.read_text().startswith("#")  # the paper table / script cited in the first lines
    plans = check_parts(recipe)  # None when the method's preset is not registered yet (data only)
    if plans is not None:
        assert len(plans) == len(recipe.stages) and all(plan.names for plan in plans)


def test_paper_stage_counts_and_hyper_parameters():
    r = {p.stem: load_recipe(p) for p in RECIPES}
    assert [len(r[n].stages) for n in ("llava15-7b", "convllava-1536", "inf-llava-8b", "llava-uhd-v2-7b",
                                       "fila-7b")] == [2, 3, 2, 3, 2]
    s1, s2 = r["llava15-7b"].stages
    assert (s1.parts["connector"].lr, s1.global_batch_size, s1.data.template) == (1e-3, 256, "plain")
    assert (s2.parts["language_model"].lr, s2.global_batch_size, s2.data.template) == (2e-5, 128, "vicuna_v1")
    assert s1.warmup_ratio == 0.03 and s1.schedule == "cosine" and s1.max_length == 2048
    conv = r["convllava-1536"].stages
    assert conv[1].parts["vision_tower"].only == [r"vision_tower\.convnext\.encoder\.stages\.[2-4]\."]
    uhd = r["llava-uhd-v2-7b"].stages
    assert uhd[0].objective == {"name": "vdim", "n_jitters": 2, "max_pad": 30, "max_zoom": 2.0, "projection": 30,
                                "crf_weight": 0.001, "crf_samples": 1000, "normalize": "imagenet"}
    assert [s.objective for s in uhd[1:]] == [{"name": "lm"}] * 2
    assert [s.model_overrides.slicer for s in uhd] == [{}, {"never_split": True}, {"max_slice_nums": 7}]


def _raw():
    return {"name": "x", "model": "llava15-tiny", "stages": [
        {"name": "a", "data": {"path": "d.jsonl"}, "parts": {"connector": "1e-3"}}]}


def test_strictness_and_overrides():
    r = recipe_from_dict(_raw())
    assert r.stages[0].parts["connector"].lr == 1e-3  # PyYAML reads 1e-3 as a string; coerced for float fields
    with pytest.raises(LoupeError, match="unknown key 'lr_projector'; valid keys: name, data, parts"):
        recipe_from_dict({**_raw(), "stages": [{**_raw()["stages"][0], "lr_projector": 1}]})
    with pytest.raises(LoupeError, match="unknown part 'projector'"):
        recipe_from_dict({**_raw(), "stages": [{**_raw()["stages"][0], "parts": {"projector": 1e-3}}]})
    with pytest.raises(LoupeError, match="nothing would train"):
        recipe_from_dict({**_raw(), "stages": [{**_raw()["stages"][0], "parts": {"connector": 0}}]})
    r = recipe_from_dict(_raw(), ["stages.1.max_steps=5", "stages.a.gradient_checkpointing=false",
                                  "stages.*.parts.language_model.lr=2e-5", "seed=7"])
    s = r.stages[0]
    assert (s.max_steps, s.gradient_checkpointing, s.parts["language_model"].lr, r.seed) == (5, False, 2e-5, 7)
    with pytest.raises(LoupeError, match="expected true or false"):
        recipe_from_dict(_raw(), ["stages.1.gradient_checkpointing=maybe"])
    with pytest.raises(LoupeError, match="stage 2 does not exist"):
        recipe_from_dict(_raw(), ["stages.2.max_steps=5"])
    with pytest.raises(LoupeError, match="unknown key 'max_step'"):
        recipe_from_dict(_raw(), ["stages.*.max_step=5"])


def test_cli_check_and_mixed_arguments(capsys, tmp_path):
    from loupe.cli.main import main

    tiny = [p for p in RECIPES if p.stem == "tiny-llava15"][0]
    assert main(["train", str(tiny), "--check", "stages.*.max_steps=3", "--stage", "2"]) == 0
    out = capsys.readouterr().out
    assert "3 steps" in out and "checked on llava15-tiny" in out
    assert main(["train", str(tiny), "--check", "stages.*.bogus=1"]) == 2
