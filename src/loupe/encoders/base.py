"""The vision-encoder part: tiles (N, 3, H, W) -> feature maps (N, gh, gw, C), channels last.

``forward(pixel_values, layouts=None)``: ``layouts`` (one :class:`~loupe.slicers.Layout` per image, tiles in
order) lets an encoder use where each tile sits in the image (e.g. whole-image position features);
encoders that do not need it ignore it.

An encoder owns its accounting: :meth:`VisionEncoder.feature_grid` (pure: the feature-map size of a tile
size, no weights), :attr:`out_dim` (channels), and ``image_mean``/``image_std`` (the normalisation its
weights expect), which the processor uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext

import torch
from torch import nn


def onloaded(*modules: nn.Module):
    """A context that makes the *own* parameters of ``modules`` real while it runs, for code that reads them
    directly instead of calling the module (``emb.class_embedding``, ``mha.out_proj.weight`` inside
    ``F.multi_head_attention_forward``). Under an accelerate ``device_map`` with CPU/disk offload
    (``from_pretrained(device_map=..., offload_folder=...)``) a module's weights are loaded by its own ``_hf_hook``
    only around its own ``forward``; this runs that hook's ``pre_forward``/``post_forward`` around the block.
    Without hooks (the usual case, and under ``torch.compile``) it is a ``nullcontext``."""
    hooked = [m for m in modules if getattr(m, "_hf_hook", None) is not None]
    return _Onloaded(hooked) if hooked else nullcontext()


class _Onloaded:
    def __init__(self, hooked):
        self.hooked = hooked

    def __enter__(self):
        for m in self.hooked:
            m._hf_hook.pre_forward(m)

    def __exit__(self, *exc):
        for m in self.hooked:
            m._hf_hook.post_forward(m, None)
        return False


def vit_flops(patches: int, extra_tokens: int, width: int, ffn: int, layers: int, patch_in: int) -> dict[str, int]:
    """Analytic FLOPs (2 x MACs, as FlopCounterMode counts) of a plain ViT on one tile: the patch embedding
    (``patches`` x ``patch_in`` inputs, e.g. 3 x 14 x 14) and ``layers`` blocks over N = patches + ``extra_tokens``
    (CLS) tokens: q/k/v/o projections 8 N C^2, MLP 4 N C F, score and AV matmuls 4 N^2 C (full attention). LN, GELU,
    softmax and biases are not counted. ``{"patch_embed", "attention" (part of "layers"), "layers", "total"}``."""
    n = patches + extra_tokens
    attn = 4 * n * n * width
    out = {"patch_embed": 2 * patches * width * patch_in, "attention": layers * attn,
           "layers": layers * (8 * n * width * width + 4 * n * width * ffn + attn)}
    out["total"] = out["patch_embed"] + out["layers"]
    return out


class VisionEncoder(nn.Module, ABC):
    """Contract (every abstract member must be defined, or registration fails): :meth:`feature_grid`,
    :meth:`output_dim` and :meth:`flops` (pure, from the config) and :meth:`forward` (tiles -> feature maps:
    a (N, gh, gw, C) tensor, or a list of per-tile (gh_i, gw_i, C) maps when native-aspect tiles differ in size)."""

    Config: type
    registry_name: str = ""
    #: module class names FSDP should not split (models declare, strategies decide)
    no_split_modules: tuple[str, ...] = ()

    def __init__(self, config):
        super().__init__()
        self.config = config

    @classmethod
    @abstractmethod
    def feature_grid(cls, config, tile_size: tuple[int, int]) -> tuple[int, int]:
        """(grid_w, grid_h) of the feature map for a tile of (width, height) pixels."""

    @classmethod
    @abstractmethod
    def output_dim(cls, config) -> int:
        """Channels of the feature maps."""

    @classmethod
    @abstractmethod
    def flops(cls, config, tile_size: tuple[int, int], all_layers: bool = False) -> dict[str, int]:
        """Analytic FLOPs (2 x MACs) of one tile of (W, H) px: ``{..., "total": ...}``. ``all_layers``: every block
        (the papers' convention) rather than the blocks :meth:`forward` runs (they differ when a layer before the
        last is taken)."""

    @property
    def out_dim(self) -> int:
        return self.output_dim(self.config)

    @property
    def image_mean(self):
        return tuple(self.config.image_mean)

    @property
    def image_std(self):
        return tuple(self.config.image_std)

    def load_pretrained(self, path: str) -> None:  # pragma: no cover - per encoder
        raise NotImplementedError(f"{type(self).__name__} cannot load pretrained weights")

    @abstractmethod
    def forward(self, pixel_values: torch.Tensor, layouts=None) -> torch.Tensor | list[torch.Tensor]:
        """(N, 3, H, W) tiles of all images (``layouts``: one per image) -> feature maps, channels last."""
