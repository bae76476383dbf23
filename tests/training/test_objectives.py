"""Training objectives are registered parts: a stage names one (with its options as data, checked by its own
Config); the generic runner looks it up and calls ``train``; per-stage model settings are ``model_overrides``."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

import pytest
import torch

from loupe.errors import LoupeError
from loupe.objectives import OBJECTIVES, Objective, StageJob, StageResult
from loupe.training import recipe_from_dict
from loupe.training.strict import to_dict
from loupe.validation import bounded

SEEN: list[dict] = []


@OBJECTIVES.register("toy_shrink")
class ToyShrink(Objective):
    """A test-only objective: one SGD step on ``scale * sum(p^2)`` over the trainable parameters."""

    @dataclass
    class Config:
        scale: float = bounded(1.0, gt=0.0)

    def train(self, job: StageJob) -> StageResult:
        SEEN.append({"processor_slicer": dict(job.processor.image_processor.slicer),
                     "model_slicer": dict(job.model.config.slicer),
                     "processor_tokens": job.processor.num_image_tokens((140, 84)),
                     "model_tokens": job.model.geometry.num_tokens((140, 84)),
                     "own_tokens": job.base_processor.num_image_tokens((140, 84)),
                     "base_is_own": job.base_processor is not job.processor})
        params = [p for p in job.model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=job.stage.max_lr)
        loss = self.config.scale * sum(p.square().sum() for p in params)
        loss.backward()
        opt.step()

        def save(folder):
            job.model.save_pretrained(str(folder))
            job.base_processor.save_pretrained(str(folder))

        loss = float(loss.detach())
        return StageResult(global_step=1, train_loss=loss, log_history=[{"step": 1, "loss": loss}],
                           save=save, steps_run=1)


def _stage(**kw):
    return {"name": "a", "data": {"path": "d.jsonl"}, "parts": {"connector": 1.0e-3}, **kw}


def _recipe(*stages, preset="llava-uhd-v2-tiny", overrides=()):
    return recipe_from_dict({"name": "x", "model": preset, "stages": list(stages)}, list(overrides))


def test_registered_objectives_and_the_contract():
    assert {"lm", "vdim", "toy_shrink"} <= set(OBJECTIVES.names())
    with pytest.raises(LoupeError, match="does not define train"):
        @OBJECTIVES.register("no_train")
        class NoTrain(Objective):
            @dataclass
            class Config:
                pass
    import loupe.training.runner as runner

    assert "vdim" not in inspect.getsource(runner).lower()  # the generic runner names no method


def test_new_spelling_old_spelling_and_round_trip_agree():
    new = _recipe(_stage(objective={"name": "vdim", "n_jitters": 3, "crf_weight": "1e-4"},
                         model_overrides={"slicer": {"never_split": True}}))
    old = _recipe(_stage(objective="vdim", vdim={"n_jitters": 3, "crf_weight": "1e-4"},
                         slicer={"never_split": True}))
    assert to_dict(new) == to_dict(old)
    s = new.stages[0]
    assert s.objective == {"name": "vdim", "n_jitters": 3, "max_pad": 30, "max_zoom": 2.0, "projection": 30,
                           "crf_weight": 1e-4, "crf_samples": 1000, "normalize": "imagenet"}
    assert s.model_overrides.slicer == {"never_split": True}
    assert to_dict(recipe_from_dict(to_dict(new))) == to_dict(new)  # the resolved recipe.yaml loads again
    # a recipe.yaml written by the previous version (every field dumped) still loads
    dumped = _stage(objective="lm", slicer={}, vdim={})
    assert _recipe(dumped).stages[0].objective == {"name": "lm"}
    # name-only and default
    assert _recipe(_stage()).stages[0].objective == {"name": "lm"}
    assert _recipe(_stage(objective={"name": "lm"})).stages[0].objective == {"name": "lm"}


@pytest.mark.parametrize("stage, message", [
    (_stage(objective={"name": "vdim", "n_jitters": "2"}), r"objective\.n_jitters: expected int, got str"),
    (_stage(objective={"name": "vdim", "n_jitters": 0}), r"objective\.n_jitters: .*>= 1"),
    (_stage(objective={"name": "vdim", "jitters": 2}),
     r"objective: unknown option\(s\) \['jitters'\] for objective 'vdim'; valid: crf_samples"),
    (_stage(objective={"name": "vdim", "normalize": "clip2"}), r"objective\.normalize: 'clip2' is not one of"),
    (_stage(objective={"name": "lm", "scale": 1}), r"objective: unknown option\(s\) \['scale'\]"),
    (_stage(objective="dpo"), "unknown objective 'dpo'; registered: "),
    (_stage(objective={"n_jitters": 2}), "give an objective name"),
    (_stage(objective="lm", vdim={"n_jitters": 2}),
     "options for objective 'vdim' given, but the stage's objective is 'lm'"),
    (_stage(objective="vdim", parts={"connector": 1e-3, "language_model": 1e-3}, lora={}), "remove lora"),
    (_stage(model_overrides={"connector": {"pool": 2}}), "unknown key 'connector'; valid keys: slicer"),
    (_stage(model_overrides={"slicer": {"never_splt": True}}),
     r"stages\.1\.model_overrides\.slicer: unknown option\(s\) \['never_splt'\]"),
    (_stage(model_overrides={"slicer": {"max_slice_nums": "7"}}),
     r"stages\.1\.model_overrides\.slicer\.max_slice_nums: expected int"),
])
def test_bad_objectives_and_overrides_name_the_path(stage, message):
    with pytest.raises(LoupeError, match=message):
        _recipe(stage)


def test_key_value_overrides_reach_objective_options():
    r = _recipe(_stage(objective="vdim"), overrides=["stages.a.objective.n_jitters=3",
                                                     "stages.1.objective.crf_weight=1e-4",
                                                     "stages.*.model_overrides.slicer.never_split=true"])
    s = r.stages[0]
    assert (s.objective["n_jitters"], s.objective["crf_weight"], s.model_overrides.slicer) == (3, 1e-4,
                                                                                             {"never_split": True})
    with pytest.raises(LoupeError, match=r"objective: unknown option\(s\) \['n_jitters'\]"):
        _recipe(_stage(), overrides=["stages.1.objective.n_jitters=3"])  # lm takes no option


def test_runner_runs_a_registered_objective_with_model_overrides(tmp_path):
    """A test-only objective trains through the generic runner: its job carries the stage's processor (the
    overview-only slicer) and a model with the same geometry; final/ keeps the model's own slicer."""
    from loupe.training import run_recipe
    from loupe.presets import get_preset

    SEEN.clear()
    recipe = recipe_from_dict({
        "name": "toy", "model": "llava-uhd-v2-tiny", "data_root": str(tmp_path), "stages": [
            {"name": "shrink", "objective": {"name": "toy_shrink", "scale": 2}, "data": {"path": "unused.jsonl"},
             "parts": {"connector": 0.1}, "model_overrides": {"slicer": {"never_split": True}}}]})
    final = run_recipe(recipe, output=tmp_path / "out")[0]
    (seen,) = SEEN
    preset_slicer = get_preset("llava-uhd-v2-tiny")["config"]["slicer"]
    assert seen["processor_slicer"]["never_split"] is True and seen["model_slicer"]["never_split"] is True
    assert seen["processor_tokens"] == seen["model_tokens"] < seen["own_tokens"] and seen["base_is_own"]
    saved = json.loads((final / "config.json").read_text())["slicer"]
    assert saved["never_split"] is False and saved["max_slice_nums"] == preset_slicer["max_slice_nums"]
    assert json.loads((final / "processor_config.json").read_text())["image_processor"]["slicer"] == saved
    done = json.loads((final.parent / "DONE.json").read_text())
    assert (done["objective"], done["global_step"], done["steps_run"], done["bad_records"]) == ("toy_shrink", 1, 1,
                                                                                                None)
    manifest = json.loads((final / "loupe_stage.json").read_text())
    assert manifest["objective"] == "toy_shrink" and manifest["trained_parts"] == {"connector": 0.1}
    assert json.loads((final.parent / "log_history.json").read_text())[0]["step"] == 1
    assert not (final.parent / "final.tmp").exists()
    # a rerun skips the finished stage
    assert run_recipe(recipe, output=tmp_path / "out") == [final] and len(SEEN) == 1
