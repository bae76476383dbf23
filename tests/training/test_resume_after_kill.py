"""Kill -9 in the middle of a run, ``--resume``, and the final weights equal an uninterrupted run's (same seed).

Also: checkpoints are atomic — a save that dies half-way leaves no ``checkpoint-N`` that resume would pick.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch


@pytest.fixture(scope="module")
def long_data(tmp_path_factory):
    from loupe.data import write_tiny_dataset

    root = tmp_path_factory.mktemp("long-data")
    write_tiny_dataset(root, n=96, seed=1)
    return root


OVERRIDES = ["stages.2.init_from=model", "stages.2.global_batch_size=4", "stages.2.per_device_batch_size=4",
             "stages.2.save_steps=4", "stages.2.save_total_limit=3"]


@pytest.mark.slow
def test_kill9_then_resume_equals_uninterrupted(tmp_path, long_data, tt):
    from loupe.training import run_recipe, stage_dir

    recipe = tt.tiny_recipe(long_data, *OVERRIDES)
    ref = run_recipe(recipe, output=tmp_path / "ref", stages=[1])[0]  # 96 records / 4 = 24 steps

    out = tmp_path / "killed"
    sdir = stage_dir(out, recipe, 1)
    args = tt.loupe_cmd(str(tt.TINY_RECIPE), f"data_root={long_data}", *OVERRIDES, "--stage", "2",
                        "--output", str(out))
    env = tt.same_threads_env()  # the in-process reference ran with this many threads; so must the subprocesses
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=str(tt.REPO), env=env)
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            if (sdir / "checkpoint-8").is_dir():
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    assert not (sdir / "DONE.json").exists()
    for ckpt in sdir.glob("checkpoint-*"):  # whatever is visible is complete
        assert (ckpt / "trainer_state.json").is_file() and (ckpt / "optimizer.pt").is_file()

    # rerunning without --resume refuses to start over silently
    plain = tt.run_cli(args, tmp_path / "plain.log", env=env)
    assert plain.returncode != 0 and "--resume" in (tmp_path / "plain.log").read_text()

    newest = max(int(p.name.split("-")[1]) for p in sdir.glob("checkpoint-*"))
    resumed = tt.run_cli(args + ["--resume"], tmp_path / "resumed.log", env=env)
    text = (tmp_path / "resumed.log").read_text()
    assert resumed.returncode == 0, text[-3000:]
    assert "resuming from" in text
    a, b = tt.weights(ref), tt.weights(sdir / "final")
    diff = {k: (a[k] - b[k]).abs().max().item() for k in a}
    assert all(torch.equal(a[k], b[k]) for k in a), {k: v for k, v in diff.items() if v}
    done = json.loads((sdir / "DONE.json").read_text())
    assert done["global_step"] == 24 and done["resumed_from"].endswith(f"checkpoint-{newest}")
    assert done["steps_run"] == 24 - newest  # only the remaining steps trained (a restart from 0 runs 24)
    la, lb = tt.losses(ref.parent), tt.losses(sdir)
    assert lb == la[-len(lb):]  # the resumed run's steps repeat the reference curve exactly


def test_checkpoint_save_is_atomic(tmp_path, tiny_data, tt, monkeypatch):
    from transformers import Trainer

    from loupe.training import run_recipe, stage_dir

    recipe = tt.tiny_recipe(tiny_data, "stages.2.init_from=model", "stages.2.save_steps=2")
    sdir = stage_dir(tmp_path, recipe, 1)
    real = Trainer._save_optimizer_and_scheduler

    def dies_at_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise KeyboardInterrupt("simulated crash in the middle of writing checkpoint-4")
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, output=tmp_path, stages=[1])
    assert (sdir / "checkpoint-2").is_dir()
    assert not (sdir / "checkpoint-4").exists()  # the half-written one stayed in .staging
    assert (sdir / ".staging" / "checkpoint-4" / "model.safetensors").is_file()

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", real)
    run_recipe(recipe, output=tmp_path, stages=[1], resume=True)
    assert (sdir / "DONE.json").is_file() and (sdir / "checkpoint-4" / "optimizer.pt").is_file()
