"""``clip`` — a CLIP ViT (transformers' ``CLIPVisionModel`` weights), features of one hidden layer.

LLaVA-1.5 and its descendants take ``hidden_states[-2]`` (the output of block 23 of 24, no
``post_layernorm``) and drop the CLS token: 576 tokens on a 24x24 grid for a 336 tile
(``mm_vision_select_layer=-2`` and ``feature_select`` in LLaVA's ``llava/model/multimodal_encoder/clip_encoder.py``).

[IMPORTANT] CLIP uses ``quick_gelu``; the config keeps it. Only the blocks needed for the selected layer
are *run* (the last block is skipped for layer -2, as its output is unused), but all weights are *kept*,
so official checkpoints load unchanged and parameter counts match the published ~304M. Under DDP with a
trainable tower, use ``find_unused_parameters=True`` (the training engine does this).

Keys: ``vision_model.*`` as in a Hugging Face CLIP checkpoint (``vision_model.embeddings.patch_embedding``,
``vision_model.pre_layrnorm``, ``vision_model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj`` ...); the
module is transformers' own ``CLIPVisionModel``, so its loader handles both old and new key layouts.

``native_aspect=True`` (LLaVA-UHD v2, arXiv 2412.13871; official ``AdaptCLIPVisionTransformer`` in
``multimodal_encoder/adapt_clip_vision_model.py``): tiles of any patch grid. Each tile is cropped to its true size
(``layouts[i].tile_sizes``; the processor zero-pads tiles of different sizes into one batch), patch-embedded, and
given the 24x24 position table interpolated **bicubically** to its (h_p, w_p) (``align_corners=False``, in the
table's dtype, the CLS position kept; a 24x24 grid uses the table as is); after ``pre_layrnorm`` the token
sequences are zero-padded to the longest and run with an additive key mask, so every valid token equals its
unpadded run. Output, [IMPORTANT] a choice: a (N, gh, gw, C) tensor when all tiles share one grid (every connector
takes it), else a **list** of (gh_i, gw_i, C) tensors in tile order (only the ``hiwin`` connector takes that).
``feature_grid`` is (w // 14, h // 14) of each true tile size, as the official ``patch_sizes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel

from ..errors import LoupeError
from ..images import CLIP_MEAN, CLIP_STD  # noqa: F401  (re-exported: the statistics of this encoder)
from ..registry import ENCODERS
from .base import VisionEncoder, onloaded, vit_flops
from ..validation import bounded


#: openai/clip-vit-large-patch14-336, vision tower
CLIP_L_336 = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)


@ENCODERS.register("clip")
class CLIPEncoder(VisionEncoder):
    @dataclass
    class Config:
        hf_config: dict = field(default_factory=lambda: dict(CLIP_L_336))
        select_layer: int = -2  # index into hidden_states (0 = embeddings after pre_layrnorm)
        drop_cls: bool = True
        image_mean: tuple = bounded(CLIP_MEAN, min=0.0, max=1.0)
        image_std: tuple = bounded(CLIP_STD, gt=0.0)
        native_aspect: bool = False  # LLaVA-UHD v2: per-tile grids, interpolated positions, padded batch + mask

    no_split_modules = ("CLIPEncoderLayer",)

    def __init__(self, config):
        super().__init__(config)
        hf = CLIPVisionConfig(**config.hf_config)
        self.vision_model = CLIPVisionModel(hf)
        n = hf.num_hidden_layers
        k = config.select_layer if config.select_layer >= 0 else n + 1 + config.select_layer
        if not 0 <= k <= n:
            raise LoupeError(f"clip select_layer {config.select_layer} is out of range for {n} layers")
        self.num_layers_run = k
        if config.native_aspect and not config.drop_cls:
            raise LoupeError("clip native_aspect returns patch grids: it needs drop_cls=True")

    @classmethod
    def feature_grid(cls, config, tile_size):
        p = config.hf_config.get("patch_size", 14)
        return int(tile_size[0]) // p, int(tile_size[1]) // p

    @classmethod
    def output_dim(cls, config) -> int:
        return int(config.hf_config.get("hidden_size", 768))

    @classmethod
    def flops(cls, config, tile_size, all_layers: bool = False) -> dict[str, int]:
        """Analytic FLOPs (2 x MACs of the patch conv, linears and attention matmuls, as FlopCounterMode counts)
        of one tile of (W, H) px: N = patches + CLS tokens, full N^2 attention. ``all_layers``: every block (the
        papers' count); default: the blocks :meth:`forward` runs (layer -2 skips the last). LN, GELU, softmax,
        biases and position interpolation are not counted. Returns ``{"patch_embed", "layers", "attention"
        (the score and AV matmuls, part of "layers"), "total"}``."""
        hf, p = config.hf_config, config.hf_config.get("patch_size", 14)
        c, f, n_all = hf.get("hidden_size", 768), hf.get("intermediate_size", 3072), hf.get("num_hidden_layers", 12)
        k = config.select_layer if config.select_layer >= 0 else n_all + 1 + config.select_layer
        layers = n_all if all_layers else k
        gw, gh = cls.feature_grid(config, tile_size)
        return vit_flops(gw * gh, 1, c, f, layers, 3 * p * p)

    def forward(self, pixel_values: torch.Tensor, layouts=None) -> torch.Tensor | list[torch.Tensor]:
        """(N, 3, H, W) -> (N, H/p, W/p, C); with ``native_aspect`` see the module docstring."""
        if self.config.native_aspect:
            return self._native_forward(pixel_values, layouts)
        vm = self.vision_model
        n, _, h, w = pixel_values.shape
        size = vm.config.image_size
        x = vm.embeddings(pixel_values.to(self.dtype), interpolate_pos_encoding=(h, w) != (size, size))
        x = vm.pre_layrnorm(x)
        for layer in vm.encoder.layers[: self.num_layers_run]:
            x = layer(x, None)
        if self.config.drop_cls:
            x = x[:, 1:]
        gw, gh = self.feature_grid(self.config, (w, h))
        return x.reshape(n, gh, gw, x.shape[-1])

    def _native_forward(self, pixel_values: torch.Tensor, layouts=None):
        vm, p = self.vision_model, self.config.hf_config.get("patch_size", 14)
        n, _, height, width = pixel_values.shape
        sizes = [tuple(s) for lay in layouts for s in lay.tile_sizes] if layouts is not None else [(width, height)] * n
        if len(sizes) != n or any(w > width or h > height for w, h in sizes):
            raise LoupeError(f"clip native_aspect: {n} tiles of {width}x{height} px do not fit the layouts' tile sizes "
                             f"{sizes[:4]}...")
        grids = [(w // p, h // p) for w, h in sizes]
        emb, c = vm.embeddings, self.out_dim
        length = 1 + max(gw * gh for gw, gh in grids)
        rows: list = [None] * n
        for gw, gh in dict.fromkeys(grids):  # one batched patch embedding per distinct grid
            idx = [i for i, g in enumerate(grids) if g == (gw, gh)]
            tiles = pixel_values[torch.tensor(idx, device=pixel_values.device), :, : gh * p, : gw * p]
            patches = emb.patch_embedding(tiles.to(self.dtype)).flatten(2).transpose(1, 2)  # (k, gh*gw, C)
            with onloaded(emb, emb.position_embedding):  # read directly, not through their forward
                cls = emb.class_embedding.to(self.dtype).expand(len(idx), 1, c)
                pos = native_positions(emb.position_embedding.weight, gh, gw)
            tokens = vm.pre_layrnorm(torch.cat([cls, patches], 1) + pos)
            tokens = F.pad(tokens, (0, 0, 0, length - tokens.shape[1]))  # zeros after pre_layrnorm, as officially
            for i, t in zip(idx, tokens.unbind(0)):  # unbind: one backward, not one zero-fill per tile
                rows[i] = t
        x = torch.stack(rows)
        mask = None
        if len({gw * gh for gw, gh in grids}) > 1:  # padded tokens are masked as keys (official 4-D additive mask)
            valid = torch.tensor([1 + gw * gh for gw, gh in grids], device=x.device)
            keep = torch.arange(length, device=x.device)[None, :] < valid[:, None]
            mask = torch.zeros(n, 1, 1, length, dtype=x.dtype, device=x.device).masked_fill(
                ~keep[:, None, None, :], torch.finfo(x.dtype).min)
        for layer in vm.encoder.layers[: self.num_layers_run]:
            x = layer(x, mask)
        maps = [t[1 : 1 + gw * gh].reshape(gh, gw, c) for t, (gw, gh) in zip(x.unbind(0), grids)]
        return torch.stack(maps) if len(set(grids)) == 1 else maps

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.embeddings.patch_embedding.weight.dtype

    def load_pretrained(self, path: str) -> None:
        """Load a local Hugging Face CLIP (or CLIPVision) folder into this tower, strictly."""
        p = Path(path)
        if not p.exists():
            raise LoupeError(f"vision tower folder not found: {p}")
        if not (p / "config.json").exists():
            raise LoupeError(f"{p} is not a Hugging Face model folder (no config.json)")
        try:
            src = CLIPVisionModel.from_pretrained(str(p), local_files_only=True)
        except Exception as e:  # transformers raises OSError/ValueError/KeyError variants
            raise LoupeError(f"cannot load a CLIP vision tower from {p}: {e}") from None
        mine = {k: v.shape for k, v in self.vision_model.state_dict().items()}
        theirs = src.state_dict()
        bad = [k for k in mine if k not in theirs or theirs[k].shape != mine[k]]
        if bad:
            raise LoupeError(f"CLIP weights in {p} do not match the configured tower (first mismatches: {bad[:5]})")
        self.vision_model.load_state_dict(theirs, strict=True)


def native_positions(table: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """(1 + gh*gw, C): the CLS position and the s x s patch table bicubically resized to (gh, gw) (official
    ``resize_pos_embedding``: ``align_corners=False``, computed in the table's dtype)."""
    side = int(round((table.shape[0] - 1) ** 0.5))
    if (gh, gw) == (side, side):
        return table
    grid = table[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False).to(table.dtype)
    return torch.cat([table[:1], grid.flatten(2).transpose(1, 2)[0]], 0)
