"""FILA presets and recipe: meta-device parameter and token counts of ``fila-7b`` (LLaVA-NeXT's layout, 2928 at
672x672), the tiny preset end to end through the processor, and the 2-stage recipe's real module patterns
training exactly CVFM + projector (stage 1) and CVFM + projector + LLM (stage 2) on ``fila-tiny``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import loupe
from loupe.encoders.convnext import CONVNEXT_L, ConvNeXtEncoder
from loupe.geometry import ImageGeometry
from loupe.training import load_recipe, recipe_from_dict


@pytest.fixture(scope="module")
def fila7b():
    with torch.device("meta"):
        return loupe.build_model("fila-7b")


def test_fila_7b_tokens_are_llava_next_s():
    fila = ImageGeometry.from_config(loupe.build_config("fila-7b"))
    nxt = ImageGeometry.from_config(loupe.build_config("llava-next-7b"))
    assert fila.num_tokens((672, 672)) == 576 + 48 * 48 + 48 == 2928
    assert fila.layout((672, 672)).num_tiles == 5
    for size in [(336, 336), (1008, 336), (336, 1008), (672, 336), (1000, 700), (1920, 1080), (97, 513)]:
        assert fila.num_tokens(size) == nxt.num_tokens(size), size


def test_fila_7b_parameter_counts(fila7b):
    vt = fila7b.vision_tower
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(vt.vision_model) == 303_507_456  # CLIP-ViT-L/14-336 vision tower, all 24 blocks kept
    assert count(vt.conv_branch) == ConvNeXtEncoder.num_parameters(ConvNeXtEncoder.Config(**CONVNEXT_L))
    c = 1024  # CVFM per stage: LN(C_k) + Linear(C + C_k -> C) + Linear(C -> C)
    want = [2 * ck + (c + ck) * c + c + c * c + c for ck in CONVNEXT_L["hidden_sizes"]]
    assert [count(m) for m in vt.cvfm] == want
    with torch.device("meta"):
        nxt = loupe.build_model("llava-next-7b")
    assert count(fila7b) - count(nxt) == count(vt.conv_branch) + sum(want)
    assert vt.interactions == [(6, 1), (12, 2), (18, 3), (23, 4)]


def test_fila_7b_vision_forward_on_meta(fila7b):
    """Shapes through the real-size hybrid encoder on the meta device (no weights): 672x672 -> 5 tiles."""
    lay = fila7b.layouts(torch.tensor([[672, 672]]))
    x = torch.empty(5, 3, 336, 336, device="meta")
    jobs = fila7b.vision_tower.conv_jobs(x, lay)
    assert [tuple(j.image.shape) for j in jobs] == [(3, 768, 768), (3, 1536, 1536)]
    assert tuple(fila7b.vision_tower(x, lay).shape) == (5, 24, 24, 1024)


def test_fila_tiny_end_to_end_through_the_processor():
    torch.manual_seed(0)
    model, proc = loupe.build("fila-tiny")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 170, 3), dtype=np.uint8))
    batch = proc(images=[img], text=["<image>\nWhat is it?"], return_tensors="pt")
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    n = proc.num_image_tokens((170, 90))
    assert out.image_hidden_states[0].shape == (n, 64)


def test_recipe_patterns_train_cvfm_and_projector_then_llm(tmp_path):
    """recipes/fila-7b.yaml's parts (names and patterns as shipped) on fila-tiny, one step per stage."""
    from loupe.data import write_tiny_dataset
    from loupe.training import run_recipe

    write_tiny_dataset(tmp_path / "data", n=4, seed=0, size=(60, 50), multi_every=0, text_every=0)
    shipped = load_recipe(loupe_root() / "recipes" / "fila-7b.yaml")
    stages = []
    for s in shipped.stages:
        parts = {k: {"lr": v.lr, "only": v.only, "exclude": v.exclude} for k, v in s.parts.items()}
        stages.append({"name": s.name, "data": {"path": "train.jsonl", "template": "tiny"}, "parts": parts,
                       "global_batch_size": 2, "per_device_batch_size": 2, "max_steps": 1, "max_length": 256,
                       "precision": "fp32", "save_steps": 1, "group_by_length": False,
                       "schedule": "constant", "warmup_ratio": 0.0})
    recipe = recipe_from_dict({"name": "fila-tiny-2stage", "model": "fila-tiny", "seed": 0,
                               "data_root": str(tmp_path / "data"), "stages": stages})
    from transformers import set_seed

    set_seed(0)
    w0 = {k: v.detach().clone() for k, v in loupe.build("fila-tiny")[0].state_dict().items()}
    finals = run_recipe(recipe, output=tmp_path / "run")
    w1, w2 = (load_file(str(f / "model.safetensors")) for f in finals)

    def changed(a, b):
        return {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("vision_tower") else "")
                for k in a if not torch.equal(a[k], b[k])}

    assert changed(w0, w1) == {"vision_tower.cvfm", "connector"}
    assert changed(w1, w2) == {"vision_tower.cvfm", "connector", "language_model"}


def loupe_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
