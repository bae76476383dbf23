"""``LlavaCollator``: samples of :class:`~loupe.data.llava_format.LlavaDataset` -> one padded model batch.

Output (what :meth:`LoupeForConditionalGeneration.forward` takes, the processor's conventions)::

    input_ids       (B, T) long, right-padded with the pad id (training; generation pads left elsewhere)
    attention_mask  (B, T) long
    labels          (B, T) long, -100 on padding, prompts and image tokens
    pixel_values    (total_tiles, 3, h, w) float32 — the tiles of all images of the batch, in order
                    (tiles of different sizes are zero-padded to the largest, as the processor does)
    image_sizes     (num_images, 2) long rows (height, width)       [both absent in a text-only batch]
    loupe_bad       [(position, id, kind, message), ...] — the bad-record markers dropped from this batch
    loupe_seen      int — records looked at (good + bad)

``loupe_bad`` / ``loupe_seen`` travel with the batch from DataLoader workers to the trainer, which pops them
before the forward pass (:class:`~loupe.training.trainer.LoupeTrainer`). A batch whose samples were all bad
becomes one pad-token row with no labels and ``loupe_dummy=True``: the trainer runs it with a zero loss so
every DDP rank still joins the gradient all-reduce.
"""

from __future__ import annotations

import torch

from .llava_format import IGNORE_INDEX


class LlavaCollator:
    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        bad = [f["loupe_bad"] for f in features if "loupe_bad" in f]
        good = [f for f in features if "loupe_bad" not in f]
        if not good:
            return {
                "input_ids": torch.full((1, 1), self.pad_token_id, dtype=torch.long),
                "attention_mask": torch.ones(1, 1, dtype=torch.long),
                "labels": torch.full((1, 1), IGNORE_INDEX, dtype=torch.long),
                "loupe_bad": bad, "loupe_seen": len(features), "loupe_dummy": True,
            }
        t = max(len(f["input_ids"]) for f in good)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            t = (t + m - 1) // m * m
        b = len(good)
        input_ids = torch.full((b, t), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(b, t, dtype=torch.long)
        labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.long)
        for i, f in enumerate(good):
            n = len(f["input_ids"])
            input_ids[i, :n] = f["input_ids"]
            attention_mask[i, :n] = 1
            labels[i, :n] = f["labels"]
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        tiles = [f["pixel_values"] for f in good if f.get("pixel_values") is not None]
        if tiles:
            batch["pixel_values"] = _cat_tiles(tiles)
            batch["image_sizes"] = torch.cat([f["image_sizes"] for f in good if f.get("image_sizes") is not None])
        batch["loupe_bad"] = bad
        batch["loupe_seen"] = len(features)
        return batch


def _cat_tiles(tiles: list[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(x.shape[1:]) for x in tiles}
    if len(shapes) == 1:
        return torch.cat(tiles)
    c = tiles[0].shape[1]
    h = max(s[1] for s in shapes)
    w = max(s[2] for s in shapes)
    out = tiles[0].new_zeros(sum(x.shape[0] for x in tiles), c, h, w)
    k = 0
    for x in tiles:
        out[k : k + x.shape[0], :, : x.shape[2], : x.shape[3]] = x
        k += x.shape[0]
    return out
