"""Demo stage 1: pretrain the shared vision encoder on every arm's views (a stand-in for CLIP pretraining).

A linear head on each view's mean-pooled features names the tag digit the view shows, or "none" (none-views
down-weighted); overview views (the whole image) also name the big shape's side. Views come from every arm's slicer,
so the baseline's own 32 px view is in the pretraining: it gets every chance. Runs through Hugging Face ``Trainer``
with an accuracy gate (measured in a feasibility probe on 2 cores: tag-tile accuracy jumps between steps ~150 and
~300; stop once held-out tag-view accuracy >= ``gate`` after ``min_steps``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..images import load_image

NONE = 10  # class id of "no tag in this view"


class ViewHeads(nn.Module):
    """Linear heads on the mean of each view's map (the connectors pool too, so the digit must survive pooling)."""

    def __init__(self, encoder: nn.Module, dim: int, none_weight: float = 0.2):
        super().__init__()
        self.encoder = encoder
        self.digit = nn.Linear(dim, 11)
        self.side = nn.Linear(dim, 2)
        self.register_buffer("class_weight", torch.tensor([1.0] * 10 + [none_weight]))

    def logits(self, pixel_values, layouts):
        f = self.encoder(pixel_values, layouts=layouts)
        # one (h, w, C) map per view; native-aspect encoders return a list when the views' grids differ
        f = f.mean(dim=(1, 2)) if isinstance(f, torch.Tensor) else torch.stack([m.mean(dim=(0, 1)) for m in f])
        return self.digit(f), self.side(f)

    def forward(self, pixel_values, layouts, digit, side):
        d, s = self.logits(pixel_values, layouts)
        loss = F.cross_entropy(d, digit, weight=self.class_weight)
        if (side >= 0).any():
            loss = loss + F.cross_entropy(s, side, ignore_index=-100)
        return {"loss": loss}


def view_labels(layout, rec: dict) -> list[tuple[int, int]]:
    """(digit class, side class or -100) per tile of ``layout`` for a synth record."""
    x0, y0, x1, y1 = rec["tag_box"]
    out = []
    for role, box in zip(layout.roles, layout.boxes or [(0, 0, *layout.image_size)] * layout.num_tiles):
        # a "global" tile (INF-LLaVA's pixel-interleaved view) spans the whole image at 1/n of its pixels: the tag is
        # not in it as a glyph, so it is labelled "none" (the overview keeps the digit: the baseline's only view)
        inside = role != "global" and box[0] <= x0 and box[1] <= y0 and x1 <= box[2] and y1 <= box[3]
        side = (0 if rec["side"] == "left" else 1) if role == "overview" else -100
        out.append((int(rec["digit"]) if inside else NONE, side))
    return out


class ViewDataset(Dataset):
    """One item per image: its views under every given image processor, with labels."""

    def __init__(self, records: list[dict], image_root: Path, image_processors: list):
        self.records, self.root, self.procs = records, Path(image_root), image_processors

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        rec = self.records[i]
        img = load_image(self.root / rec["image"])
        pix, lays, labels = [], [], []
        for ip in self.procs:
            feats, layouts = ip.process([img])
            pix.append(feats["pixel_values"])
            lays += layouts
            labels += view_labels(layouts[0], rec)
        return {"pixel_values": cat_padded(pix), "layouts": lays, "labels": labels}


def cat_padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate (n_i, 3, h_i, w_i) view batches, zero-padding right/bottom to the largest (native-aspect slicers
    give views of several sizes; their encoders crop each view back to ``layout.tile_sizes``)."""
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    return torch.cat([F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2])) for t in tensors])


def collate(items):
    return {
        "pixel_values": cat_padded([it["pixel_values"] for it in items]),
        "layouts": [lay for it in items for lay in it["layouts"]],
        "digit": torch.tensor([lab[0] for it in items for lab in it["labels"]]),
        "side": torch.tensor([lab[1] for it in items for lab in it["labels"]]),
    }


@torch.no_grad()
def tag_view_accuracy(model: ViewHeads, dataset: ViewDataset, n: int = 64) -> float:
    model.eval()
    hit = tot = 0
    for i in range(min(n, len(dataset))):
        b = collate([dataset[i]])
        d, _ = model.logits(b["pixel_values"], b["layouts"])
        tiles = torch.tensor([r == "local" for lay in b["layouts"] for r in lay.roles])
        if not tiles.any():  # single-view arms (ConvLLaVA): the whole image is the view
            tiles = torch.ones_like(tiles)
        m = (b["digit"] != NONE) & tiles  # the views where the tag is readable
        hit += int((d.argmax(-1)[m] == b["digit"][m]).sum())
        tot += int(m.sum())
    model.train()
    return hit / max(tot, 1)


class AccuracyGate(TrainerCallback):
    """Stop once held-out accuracy on tagged tiles reaches ``gate`` (checked every ``every`` steps)."""

    def __init__(self, model, held_out, gate: float, min_steps: int, every: int, log: list):
        self.model, self.held_out, self.gate, self.min_steps, self.every, self.log = (
            model, held_out, gate, min_steps, every, log)

    def on_step_end(self, args, state, control, **kw):
        if state.global_step % self.every == 0 and state.global_step >= self.min_steps:
            acc = tag_view_accuracy(self.model, self.held_out)
            self.log.append({"step": state.global_step, "tag_view_accuracy": acc})
            if acc >= self.gate:
                control.should_training_stop = True
        return control


def pretrain_encoder(encoder: nn.Module, records: list[dict], image_root: Path, image_processors: list,
                     out_dir: Path, max_steps: int = 400, min_steps: int = 150, gate: float = 0.9,
                     batch_size: int = 8, lr: float = 2e-3, seed: int = 0) -> dict:
    """Train ``encoder`` in place; returns a report (steps, gate log, accuracy)."""
    rng = random.Random(seed)
    recs = list(records)
    rng.shuffle(recs)
    held, train = recs[:64], recs[64:]
    model = ViewHeads(encoder, encoder.out_dim)
    train_ds, held_ds = ViewDataset(train, image_root, image_processors), ViewDataset(held, image_root, image_processors)
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=max_steps, per_device_train_batch_size=batch_size, learning_rate=lr,
        warmup_steps=30, lr_scheduler_type="cosine", weight_decay=0.01, max_grad_norm=1.0, logging_steps=25,
        save_strategy="no", report_to=[], seed=seed, data_seed=seed, remove_unused_columns=False,
        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), disable_tqdm=False,
    )
    gate_log: list = []
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=collate,
                      callbacks=[AccuracyGate(model, held_ds, gate, min_steps, 25, gate_log)])
    result = trainer.train()
    acc = gate_log[-1]["tag_view_accuracy"] if gate_log else tag_view_accuracy(model, held_ds)
    report = {"steps": result.global_step, "tag_view_accuracy": acc, "gate_log": gate_log,
              "train_loss": result.training_loss}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pretrain_report.json").write_text(json.dumps(report, indent=2))
    return report
