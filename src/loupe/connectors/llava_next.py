"""``llava_next`` — LLaVA-NeXT's projector + ``spatial_unpad`` merge (LLaVA-NeXT, 2024; official
``LlavaMetaForCausalLM.prepare_inputs_labels_for_multimodal``, ``mm_patch_merge_type="spatial_unpad"``).

Per image, with the ``anyres`` layout ``[overview, tile_1 .. tile_n]`` (grid cols x rows):

1. every tile's (gh, gw, C) features go through the ``mlp2x_gelu`` projector (before the merge, as
   officially: keys ``proj.0``/``proj.2`` = ``model.mm_projector.{0,2}``) -> (1 + n, gh, gw, D);
2. the n tile maps are stitched row-major into one (rows*gh, cols*gw, D) map;
3. ``unpad_image`` removes the rows (or columns) that are the black padding of the canvas, in *feature*
   space, from the original (W, H) (:func:`loupe.slicers.geometry.unpadded_size`);
4. the learned ``image_newline`` (D,) is appended at the end of every row (key ``image_newline`` =
   ``model.image_newline``; init randn(D)/sqrt(D));
5. output ``[overview gh*gw tokens, unpadded rows with newlines]`` -> (gh*gw + h*(w+1), D).

672x672 with CLIP-L/336: 576 + 48*48 + 48 = 2928 tokens (2880 without the newlines).

``merge``: ``"spatial_unpad"`` (official), ``"spatial"`` (stitched map, no unpad, no newline: the official
``spatial`` branch), ``"flat"`` (every tile's tokens in layout order: the official ``flat``).
``unpad_rounding``: ``"transformers"`` (default: counts equal transformers') or ``"official"``
(``int(H*scale)``; differs for some sizes, see :mod:`loupe.slicers.geometry`). A single-tile layout (no
local tiles) gives its tokens plus one newline, as the official ``image_feature.shape[0] == 1`` branch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LoupeError
from ..registry import CONNECTORS
from ..slicers.geometry import unpadded_size
from ..tokens import Visual
from .base import Connector, split_by_image
from .mlp import mlp_projector
from ..validation import bounded

MERGES = ("spatial_unpad", "spatial", "flat")


@CONNECTORS.register("llava_next")
class LlavaNextConnector(Connector):
    @dataclass
    class Config:
        depth: int = bounded(2, min=1)
        act: str = "gelu"
        merge: str = "spatial_unpad"
        unpad_rounding: str = "transformers"  # "transformers" | "official"

        def __post_init__(self):
            if self.merge not in MERGES:
                raise ValueError(f"merge must be one of {MERGES}, got {self.merge!r}")
            if self.unpad_rounding not in ("transformers", "official"):
                raise ValueError(f"unpad_rounding must be 'transformers' or 'official', got {self.unpad_rounding!r}")

    def __init__(self, config, in_dim: int, out_dim: int):
        super().__init__(config, in_dim, out_dim)
        self.proj = mlp_projector(in_dim, out_dim, config.depth, config.act)
        self.image_newline = nn.Parameter(torch.randn(out_dim) / math.sqrt(out_dim))

    # --- accounting (pure) -----------------------------------------------------------------------------
    @staticmethod
    def _split(layout, grids):
        """(overview indices, local indices, local feature-map size (W, H)) of one image."""
        over, local = layout.indices("overview"), layout.indices("local")
        if len(over) + len(local) != layout.num_tiles:
            raise LoupeError(f"llava_next takes overview/local tiles only, got roles {set(layout.roles)}")
        if not local:
            return over, local, None
        cols, rows = layout.grid
        if cols * rows != len(local) or len({tuple(grids[i]) for i in local}) != 1:
            raise LoupeError(f"llava_next needs a full grid of equal tiles, got grid {layout.grid} and {len(local)}")
        gw, gh = grids[local[0]]
        return over, local, (cols * gw, rows * gh)

    @classmethod
    def token_plan(cls, config, layout, grids) -> tuple:
        """The overview grid(s), then the merged local map: ``spatial_unpad`` = (h, w + 1) with the newline as the
        last column (one lone newline when there are no local tiles); ``spatial`` = the stitched map; ``flat`` = every
        tile's grid in layout order."""
        over, local, fmap = cls._split(layout, grids)
        plan = [Visual(grids[i][0] * grids[i][1], grid=tuple(grids[i]), role="overview") for i in over]
        if config.merge == "flat":
            return tuple(plan + [Visual(grids[i][0] * grids[i][1], grid=tuple(grids[i]), role="local") for i in local])
        if fmap is None:
            return tuple(plan + ([Visual(1, role="newline")] if config.merge == "spatial_unpad" else []))
        if config.merge == "spatial":
            return tuple(plan + [Visual(fmap[0] * fmap[1], grid=fmap, role="local")])
        w, h = unpadded_size(layout.image_size, fmap, config.unpad_rounding)
        return tuple(plan + [Visual(h * (w + 1), grid=(w + 1, h), role="local+newline")])

    @classmethod
    def flops(cls, config, layout, grids, in_dim: int, out_dim: int) -> dict[str, int]:
        """Analytic FLOPs (2 x MACs) of one image: the projector on every tile's full feature grid (it runs
        before the merge); unpadding and newlines cost no FLOPs."""
        n = sum(w * h for w, h in grids)
        proj = n * (2 * in_dim * out_dim + (config.depth - 1) * 2 * out_dim * out_dim)
        return {"projector": proj, "total": proj}

    # --- forward ---------------------------------------------------------------------------------------
    def forward(self, features, layouts, pixel_values=None):
        """``features``: (total_tiles, gh, gw, C) -> one (num_tokens, D) tensor per image."""
        return self._arrange(self.proj(features), layouts)  # projector per tile, before the merge

    @torch.compiler.disable
    def _arrange(self, x, layouts):
        """Projected tiles (N, gh, gw, D) -> per-image token sequences. Kept out of ``torch.compile`` graphs: its
        crop offsets come from the original image size through float arithmetic (``unpadded_size``); once a second
        image size is seen, dynamo makes those ints symbolic and inductor (torch 2.13, CPU) gathered the wrong
        feature rows from the stitched, sliced map (logits off by ~0.5). Pure indexing, so eager costs nothing."""
        out = []
        for t, lay in zip(split_by_image(x, layouts), layouts):
            grids = [(t.shape[2], t.shape[1])] * t.shape[0]
            over, local, fmap = self._split(lay, grids)
            parts = [t[i].reshape(-1, t.shape[-1]) for i in over]
            if self.config.merge == "flat":
                parts += [t[i].reshape(-1, t.shape[-1]) for i in local]
            elif fmap is None:
                if self.config.merge == "spatial_unpad":
                    parts.append(self.image_newline[None].to(t.dtype))
            else:
                cols, rows = lay.grid
                gh, gw, d = t.shape[1:]
                m = t[local].reshape(rows, cols, gh, gw, d).permute(0, 2, 1, 3, 4).reshape(rows * gh, cols * gw, d)
                if self.config.merge == "spatial_unpad":
                    w, h = unpadded_size(lay.image_size, fmap, self.config.unpad_rounding)
                    y0, x0 = (m.shape[0] - h) // 2, (m.shape[1] - w) // 2
                    m = m[y0 : y0 + h, x0 : x0 + w]
                    nl = self.image_newline.to(m.dtype).expand(h, 1, d)
                    m = torch.cat([m, nl], dim=1)
                parts.append(m.reshape(-1, d))
            out.append(torch.cat(parts, 0))
        return out
