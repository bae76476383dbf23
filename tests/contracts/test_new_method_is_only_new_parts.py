"""A new method is only new parts: a slicer and a connector defined here (horizontal strips, one row separator after
each strip's tokens, as nanoVLM's row tokens) register, build with a preset's encoder and LLM, count their tokens
through the one geometry, train one step and generate, with no edit to the model, processor, geometry, builder or
training runner. Parts that break the contract are refused at registration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

import loupe
from loupe.connectors.base import Connector, split_by_image
from loupe.connectors.mlp import mlp_projector
from loupe.errors import LoupeError
from loupe.registry import CONNECTORS, ENCODERS, SLICERS
from loupe.slicers.base import Layout, Slicer
from loupe.tokens import Text, Visual

ROW_ID = 7  # an ordinary id of the tiny tokenizer, written after every strip


class StripSlicer(Slicer):
    """The image cut into ``rows`` horizontal strips, each squashed to one ``tile_size`` tile."""

    @dataclass
    class Config:
        tile_size: int = 28
        rows: int = 2

    def plan(self, image_size):
        w, h = int(image_size[0]), int(image_size[1])
        if w <= 0 or h <= 0:
            raise LoupeError(f"strips: a {w}x{h} image")
        t, n = self.config.tile_size, self.config.rows
        boxes = tuple((0.0, h * r / n, float(w), h * (r + 1) / n) for r in range(n))
        return Layout(image_size=(w, h), tile_sizes=((t, t),) * n, roles=("local",) * n, grid=(1, n),
                      canvas_size=(w, h), content_box=(0, 0, w, h), boxes=boxes)

    def slice(self, image):
        lay = self.plan(image.size)
        t = self.config.tile_size
        tiles = [np.asarray(image.crop(tuple(round(v) for v in b)).resize((t, t)), dtype=np.uint8) for b in lay.boxes]
        return tiles, lay


class RowSeparatorConnector(Connector):
    """mlp2x per token; each tile's tokens then the separator id (a text token)."""

    @dataclass
    class Config:
        sep_id: int = ROW_ID

    def __init__(self, config, in_dim, out_dim):
        super().__init__(config, in_dim, out_dim)
        self.proj = mlp_projector(in_dim, out_dim)

    @classmethod
    def token_plan(cls, config, layout, grids):
        plan = []
        for gw, gh in grids:
            plan += [Visual(gw * gh, grid=(gw, gh)), Text(ids=(config.sep_id,))]
        return tuple(plan)

    @classmethod
    def flops(cls, config, layout, grids, in_dim, out_dim):
        n = sum(w * h for w, h in grids)
        return {"total": n * (2 * in_dim * out_dim + 2 * out_dim * out_dim)}

    def forward(self, features, layouts, pixel_values=None):
        return [t.reshape(-1, t.shape[-1]) for t in split_by_image(self.proj(features), layouts)]


@pytest.fixture(scope="module", autouse=True)
def registered():
    if "test_strips" not in SLICERS:
        SLICERS.register("test_strips")(StripSlicer)
        CONNECTORS.register("test_rowsep")(RowSeparatorConnector)


def test_a_new_method_builds_counts_trains_and_generates():
    torch.manual_seed(0)
    model, proc = loupe.build("llava15-tiny", slicer={"name": "test_strips", "rows": 3},
                              connector={"name": "test_rowsep"})
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    grid = ENCODERS.get("clip").feature_grid(ENCODERS.config(model.config.vision), (28, 28))
    per_strip = grid[0] * grid[1]
    assert proc.num_image_tokens(img) == 3 * (per_strip + 1)  # every position, separators included
    batch = proc(images=[img], text=["USER: <image>\nWhat? ASSISTANT: A tag."])
    ids = batch["input_ids"][0].tolist()
    start = ids.index(model.config.image_token_id)
    assert ids[start: start + 3 * (per_strip + 1)] == ([model.config.image_token_id] * per_strip + [ROW_ID]) * 3

    labels = batch["input_ids"].clone()
    labels[batch["input_ids"] == model.config.image_token_id] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.connector.proj[0].weight.detach().clone()
    out = model(**batch, labels=labels)
    out.loss.backward()
    opt.step()
    assert torch.isfinite(out.loss) and not torch.equal(before, model.connector.proj[0].weight)
    assert [e.shape[0] for e in out.image_hidden_states] == [3 * per_strip]

    gen = model.generate(**proc(images=[img], text=["USER: <image>\nWhat? ASSISTANT:"]), max_new_tokens=3,
                         do_sample=False)
    assert gen.shape[1] == len(proc(images=[img], text=["USER: <image>\nWhat? ASSISTANT:"])["input_ids"][0]) + 3


def test_parts_that_break_the_contract_are_refused_at_registration():
    class NoPlan(Connector):
        @dataclass
        class Config:
            pass

        @classmethod
        def flops(cls, config, layout, grids, in_dim, out_dim):
            return {"total": 0}

        def forward(self, features, layouts, pixel_values=None):
            return []

    with pytest.raises(LoupeError, match="does not define token_plan"):
        CONNECTORS.register("test_noplan")(NoPlan)

    class NotASlicer:
        @dataclass
        class Config:
            pass

    with pytest.raises(LoupeError, match="must derive from loupe.slicers.base.Slicer"):
        SLICERS.register("test_notaslicer")(NotASlicer)
    assert "test_noplan" not in CONNECTORS and "test_notaslicer" not in SLICERS
