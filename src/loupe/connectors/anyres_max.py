"""``anyres_max`` — LLaVA-OneVision's ``anyres_max_N`` merge: LLaVA-NeXT's ``spatial_unpad`` plus a bilinear
down-sampling of the unpadded feature map when it holds more than ``max_num_patches`` tiles' worth of tokens.

Official ``prepare_inputs_labels_for_multimodal`` (LLaVA-NeXT repo, ``mm_patch_merge_type`` containing
``anyres_max``) and transformers' ``LlavaOnevisionModel.pack_image_features``: after ``unpad_image`` the (h, w)
map is compared with ``max_num_patches * g^2`` (g: one tile's feature side, 27 for SigLIP-so400m-384);
``ratio = sqrt(h * w / (max_num_patches * g^2))``; when ``ratio > 1.1`` the map is resized with
``F.interpolate(..., [int(h // ratio), int(w // ratio)], mode="bilinear")``; then one ``image_newline`` per row,
and the overview's g^2 tokens come FIRST. ``anyres_max_9`` is the released setting.

Everything else (projector before the merge, keys ``proj.*`` / ``image_newline``, ``unpad_rounding``) is
:class:`~loupe.connectors.llava_next.LlavaNextConnector`'s. Unpad rounding: transformers' ``int(round(h * s, 7))``
by default; ``unpad_rounding="official"`` gives the original ``int(h * s)`` (they differ e.g. at 1323x49:
1274 vs 1056 tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..registry import CONNECTORS
from ..slicers.geometry import unpadded_size
from ..tokens import Visual
from .base import split_by_image
from .llava_next import LlavaNextConnector
from ..validation import bounded


def anyres_max_size(unpadded: tuple[int, int], tile_grid: tuple[int, int], max_num_patches: int,
                    threshold: float = 1.1) -> tuple[int, int]:
    """(w, h) of the unpadded feature map after the ``anyres_max`` down-sampling (unchanged when ratio <= 1.1)."""
    w, h = unpadded
    g = tile_grid[1]
    ratio = math.sqrt(h * w / (max_num_patches * g * g))
    if ratio > threshold:
        return int(w // ratio), int(h // ratio)
    return w, h


@CONNECTORS.register("anyres_max")
class AnyResMaxConnector(LlavaNextConnector):
    @dataclass
    class Config:
        depth: int = bounded(2, min=1)
        act: str = "gelu"
        merge: str = "spatial_unpad"  # the only merge anyres_max defines
        unpad_rounding: str = "transformers"  # "transformers" | "official"
        max_num_patches: int = bounded(9, min=1)  # anyres_max_9

        def __post_init__(self):
            if self.merge != "spatial_unpad":
                raise ValueError(f"anyres_max merges with 'spatial_unpad' only, got {self.merge!r}")
            if self.unpad_rounding not in ("transformers", "official"):
                raise ValueError(f"unpad_rounding must be 'transformers' or 'official', got {self.unpad_rounding!r}")
            if self.max_num_patches <= 0:
                raise ValueError(f"max_num_patches must be positive, got {self.max_num_patches}")

    @classmethod
    def _local_size(cls, config, layout, grids):
        over, local, fmap = cls._split(layout, grids)
        if fmap is None:
            return over, local, None
        w, h = unpadded_size(layout.image_size, fmap, config.unpad_rounding)
        return over, local, anyres_max_size((w, h), grids[local[0]], config.max_num_patches)

    @classmethod
    def token_plan(cls, config, layout, grids) -> tuple:
        """The overview grid first, then the unpadded (and, past 1.1x, down-sampled) map with a newline column."""
        over, local, size = cls._local_size(config, layout, grids)
        plan = [Visual(grids[i][0] * grids[i][1], grid=tuple(grids[i]), role="overview") for i in over]
        if size is None:
            return tuple(plan + [Visual(1, role="newline")])
        w, h = size
        return tuple(plan + [Visual(h * (w + 1), grid=(w + 1, h), role="local+newline")])

    def forward(self, features, layouts, pixel_values=None):
        return self._arrange(self.proj(features), layouts)  # projector per tile, before the merge

    @torch.compiler.disable
    def _arrange(self, x, layouts):
        """Projected tiles (N, gh, gw, D) -> per-image token sequences. Kept out of ``torch.compile`` graphs: its
        crop offsets come from the original image size through float arithmetic (``unpadded_size``); once a second
        image size is seen, dynamo makes those ints symbolic and inductor (torch 2.13, CPU) gathered the wrong
        feature rows from the stitched, sliced map (logits off by ~0.5; the ``llava_next`` merge, shared here). Indexing
        and at most one small bilinear resize per image, so eager costs little."""
        out = []
        for t, lay in zip(split_by_image(x, layouts), layouts):
            grids = [(t.shape[2], t.shape[1])] * t.shape[0]
            over, local, fmap = self._split(lay, grids)
            parts = [t[i].reshape(-1, t.shape[-1]) for i in over]
            if fmap is None:
                parts.append(self.image_newline[None].to(t.dtype))
            else:
                cols, rows = lay.grid
                gh, gw, d = t.shape[1:]
                m = t[local].reshape(rows, cols, gh, gw, d).permute(0, 2, 1, 3, 4).reshape(rows * gh, cols * gw, d)
                w, h = unpadded_size(lay.image_size, fmap, self.config.unpad_rounding)
                y0, x0 = (m.shape[0] - h) // 2, (m.shape[1] - w) // 2
                m = m[y0 : y0 + h, x0 : x0 + w]
                nw, nh = anyres_max_size((w, h), (gw, gh), self.config.max_num_patches)
                if (nw, nh) != (w, h):
                    m = F.interpolate(m.permute(2, 0, 1)[None], [nh, nw], mode="bilinear")[0].permute(1, 2, 0)
                nl = self.image_newline.to(m.dtype).expand(nh, 1, d)
                parts.append(torch.cat([m, nl], dim=1).reshape(-1, d))
            out.append(torch.cat(parts, 0))
        return out
