"""Shared helpers for the training tests: the tiny recipe, generated LLaVA-format data, subprocess runs.

Helpers are reached through the ``tt`` fixture (``tt.tiny_recipe(...)``), not imported: several test folders
have a ``conftest.py``, so ``import conftest`` would be ambiguous.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "recipes" / "tiny-llava15.yaml"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """32 records (single-image, two-image and text-only) under a session-wide folder."""
    from loupe.data import write_tiny_dataset

    root = tmp_path_factory.mktemp("tiny-data")
    write_tiny_dataset(root, n=32, seed=0)
    return root


def tiny_recipe(data_root: Path, *overrides: str):
    from loupe.training import load_recipe

    return load_recipe(TINY_RECIPE, [f"data_root={data_root}", *overrides])


def initial_weights(recipe) -> dict[str, torch.Tensor]:
    """The weights stage 1 starts from (the runner seeds, then builds the preset)."""
    import loupe
    from transformers import set_seed

    set_seed(recipe.seed)
    model, _ = loupe.build(recipe.model.preset)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def loupe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "loupe.cli.main", "train", *args]


def same_threads_env() -> dict:
    """The environment for a training subprocess that must reproduce this process's floats bit for bit: the
    same intra-op thread count (tests/conftest.py sets it in-process; OMP_NUM_THREADS may say otherwise)."""
    n = str(torch.get_num_threads())
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)


def run_cli(args: list[str], log: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        return subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=str(REPO))


def losses(stage_dir: Path) -> list[float]:
    import json

    hist = json.loads((Path(stage_dir) / "log_history.json").read_text())
    return [h["loss"] for h in hist if "loss" in h]


@pytest.fixture(scope="session")
def tt():
    return SimpleNamespace(REPO=REPO, TINY_RECIPE=TINY_RECIPE, tiny_recipe=tiny_recipe, initial_weights=initial_weights,
                           weights=weights, loupe_cmd=loupe_cmd, run_cli=run_cli, losses=losses,
                           same_threads_env=same_threads_env)
