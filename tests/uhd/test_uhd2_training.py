"""The shipped LLaVA-UHD v2 recipe on the tiny preset: VDIM pre-training (MLR loss), overview-only pretrain, SFT."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import TrainerCallback

from loupe.data import write_tiny_dataset
from loupe.training import load_recipe, run_recipe
from loupe.objectives.vdim import AttentionDownsampler, gaussian_blur


def write_images(root, n=12, seed=0):
    """Generated images: random coloured rectangles on a textured background (edges for the JBU to find)."""
    rng = np.random.default_rng(seed)
    (root / "vdim").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        a = (rng.random((70, 90, 3)) * 60).astype(np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, 60), rng.integers(0, 80)
            a[y:y + rng.integers(5, 30), x:x + rng.integers(5, 30)] = rng.integers(0, 256, 3)
        Image.fromarray(a).save(root / "vdim" / f"{i}.png")
        lines.append(json.dumps({"id": str(i), "image": f"vdim/{i}.png"}))
    (root / "images.jsonl").write_text("\n".join(lines) + "\n")


RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "llava-uhd-v2-7b.yaml"
SHRINK = [  # the shipped recipe as is (stages, parts, slicer switches, LRs, optimizer), at toy scale on CPU
    "model.preset=llava-uhd-v2-tiny", "model.vision_tower=null", "model.language_model=null",
    "stages.*.data.path=train.jsonl", "stages.*.data.image_root=.", "stages.*.data.num_workers=0",
    "stages.*.precision=fp32", "stages.*.deepspeed=null", "stages.*.gradient_checkpointing=false",
    "stages.*.global_batch_size=4", "stages.*.per_device_batch_size=4", "stages.*.max_length=1024",
    "stages.*.save_steps=100", "stages.*.logging_steps=100", "stages.*.max_steps=2",
    "stages.vdim.data.path=images.jsonl", "stages.vdim.global_batch_size=2", "stages.vdim.per_device_batch_size=2",
    "stages.vdim.max_steps=16", "stages.vdim.objective.crf_samples=200",  # official 1000: a lighter CRF on CPU
]


class SeeSlicer(TrainerCallback):
    seen: list = []

    def on_train_begin(self, args, state, control, model=None, **kw):
        SeeSlicer.seen.append(dict(model.config.slicer))


def test_shipped_recipe_vdim_lowers_the_mlr_loss_then_pretrain_and_sft_slice_as_declared(tmp_path):
    torch.manual_seed(0)
    write_images(tmp_path)
    write_tiny_dataset(tmp_path, n=8, size=(140, 84))  # big enough to be sliced (4 slices + overview)
    recipe = load_recipe(RECIPE, [f"data_root={tmp_path}", *SHRINK])
    finals = run_recipe(recipe, output=tmp_path / "out", callbacks=[SeeSlicer()])
    hist = json.loads((tmp_path / "out" / "stage-1-vdim" / "log_history.json").read_text())
    assert len(hist) == 16 and {"rec_4x", "rec_2x", "crf", "mlr"} <= set(hist[0])
    first, last = np.mean([h["mlr"] for h in hist[:5]]), np.mean([h["mlr"] for h in hist[-5:]])
    assert last < first - 0.05, (first, last)
    assert len(finals) == 3 and (tmp_path / "out" / "stage-1-vdim" / "DONE.json").is_file()
    pretrain, sft = SeeSlicer.seen
    assert pretrain["never_split"] is True and sft["never_split"] is False and sft["max_slice_nums"] == 7
    saved = json.loads((finals[-1] / "config.json").read_text())["slicer"]
    assert saved["never_split"] is False and saved["max_slice_nums"] == 9  # the preset's evaluation slicer


def test_attention_downsampler_shapes_and_blur():
    down = AttentionDownsampler(8, 14, 4).eval()
    x = torch.randn(2, 8, 56, 56)
    assert down(x).shape == (2, 8, 4, 4)
    const = torch.ones(1, 3, 9, 9)
    torch.testing.assert_close(gaussian_blur(const), const)  # normalised kernel, reflect border
