"""The same tiny stage on 2 processes (torchrun, DDP over gloo) follows the 1-process loss curve (same global batch)."""

from __future__ import annotations

import math
import shutil
import sys

import pytest
import torch


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path, tiny_data, tt):
    from loupe.training import run_recipe, stage_dir

    # stage 2 (connector + language model train; text-only and two-image samples mixed in), from the preset
    overrides = ["stages.2.init_from=model", "stages.2.save_steps=100"]
    recipe = tt.tiny_recipe(tiny_data, *overrides)
    one = tmp_path / "one"
    run_recipe(recipe, output=one, stages=[1])

    two = tmp_path / "two"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "loupe.cli.main", "train", str(tt.TINY_RECIPE), f"data_root={tiny_data}", *overrides,
                "--stage", "2", "--output", str(two)]
    proc = tt.run_cli(torchrun, tmp_path / "torchrun.log")
    log = (tmp_path / "torchrun.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "8 = 4 per device x 2 processes x 1 accumulation" in log

    l1, l2 = tt.losses(stage_dir(one, recipe, 1)), tt.losses(stage_dir(two, recipe, 1))
    print("1 process:  ", [round(x, 6) for x in l1])
    print("2 processes:", [round(x, 6) for x in l2])
    assert len(l1) == len(l2) == 4
    assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(l1, l2)), (l1, l2)
    w1 = tt.weights(stage_dir(one, recipe, 1) / "final")
    w2 = tt.weights(stage_dir(two, recipe, 1) / "final")
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    print("max |w1 - w2| after the stage:", worst)
    assert worst < 1e-4, worst
    shutil.rmtree(tmp_path, ignore_errors=True)
