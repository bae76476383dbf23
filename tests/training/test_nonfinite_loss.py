"""A non-finite loss stops the stage with a message naming the step; the last good checkpoint stays."""

from __future__ import annotations

import pytest
import torch


def test_lr_1e30_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, tiny_data, tt):
    from loupe.training import run_recipe, stage_dir
    from loupe.training.trainer import NonFiniteLossError

    recipe = tt.tiny_recipe(tiny_data, "stages.2.init_from=model", "stages.2.parts.connector=1e30",
                            "stages.2.parts.language_model=1e30", "stages.2.warmup_ratio=0", "stages.2.save_steps=1")
    with pytest.raises(NonFiniteLossError) as e:
        run_recipe(recipe, output=tmp_path, stages=[1])
    msg = str(e.value)
    assert "non-finite loss" in msg and "at step 2 of 4" in msg and "checkpoint-1" in msg
    sdir = stage_dir(tmp_path, recipe, 1)
    assert not (sdir / "DONE.json").exists() and not (sdir / "checkpoint-2").exists()
    good = tt.weights(sdir / "checkpoint-1")
    assert all(torch.isfinite(v).all() for v in good.values())
