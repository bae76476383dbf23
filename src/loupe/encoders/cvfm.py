"""CVFM — FILA/HyViLM's ConvNeXt-ViT Deep Fusion Module: one fusion of a ConvNeXt stage into a ViT layer.

What is known ([PAPER], the abstract of arXiv 2412.08378 only): a "ConvNeXt-ViT Deep Fusion Module" fuses
"detailed global visual features" into the sub-image encoding at several levels ("leveraging information
from different layers of the vision encoder"). Everything below is Loupe's inferred default [INF]
or a Loupe choice, each a configuration option of :class:`~loupe.encoders.hybrid.HybridEncoder`:

One :class:`CVFM` per interaction layer, applied to the ViT hidden state ``x`` (n, 1 + g*g, C) of n tiles
right after that ViT block, with ``conv`` (n, C_k, g*f, g*f) = the ConvNeXt stage-k features of each
tile's own region (``f = 2**(K-k)`` for stage k of K when the last stage's grid equals the ViT grid)::

    align    conv -> (n, g, g, C_k):   "avgpool" (default, [INF] 1) | "conv" (Conv f x f / f, [INF] 1)
                                       | "bilinear" ([INF] 1; F.interpolate, align_corners=False)
    norm     LayerNorm(C_k) on the aligned features ([LOUPE] choice: ConvNeXt residual streams are not
             normalised and their scale differs per stage; ``conv_norm=False`` removes it)
    fuse     "concat_mlp" (default, [INF] 2-3): MLP(cat[x_patch, conv]) : C + C_k -> C (-> C), GELU between
             "add"        ([LOUPE] ablation): Linear(C_k -> C)(conv)
             "cross_attn" ([LOUPE] alternative, Mini-Gemini's patch-info-mining shape): every ViT patch token
                          (LayerNorm'd) queries the f x f un-pooled ConvNeXt cells under it (``align`` unused),
                          multi-head, keys/values projected from C_k, output projection to C
    residual x_patch <- x_patch + fuse(...)  ([INF] 4); the CLS token is passed through unchanged ([INF] 2)

The LAST layer of every fusion (the MLP's last Linear, the add's Linear, the attention's output projection)
is **zero-initialised** ([INF] 4), so a fresh hybrid encoder computes exactly plain CLIP: training starts
from the pretrained ViT. Keys: ``align.*`` (conv only), ``norm.*``, ``mlp.{0,2}.*`` | ``proj.*`` |
``attn.{q,k,v,o}.*`` (``vision_tower.cvfm.{i}.`` inside a Loupe model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ALIGNS = ("avgpool", "conv", "bilinear")
FUSIONS = ("concat_mlp", "add", "cross_attn")


def align_features(conv: torch.Tensor, size: tuple[int, int], mode: str,
                   layer: nn.Module | None = None) -> torch.Tensor:
    """(n, C, H, W) stage features of n tile regions -> (n, C, gh, gw) on the ViT grid."""
    if tuple(conv.shape[-2:]) == tuple(size) and mode != "conv":
        return conv
    if mode == "avgpool":
        return F.adaptive_avg_pool2d(conv, size)  # = avg_pool2d(f) when H = f * gh (the default geometry)
    if mode == "bilinear":
        return F.interpolate(conv, size=size, mode="bilinear", align_corners=False)
    if mode == "conv":
        return layer(conv)
    raise ValueError(f"align must be one of {ALIGNS}, got {mode!r}")


class CVFM(nn.Module):
    """One ConvNeXt-stage -> ViT-layer fusion (see the module docstring). ``factor``: ConvNeXt cells per ViT
    patch side at this stage (f = 2**(K-k) in the default geometry)."""

    def __init__(self, vit_dim: int, conv_dim: int, factor: int, align: str = "avgpool", fusion: str = "concat_mlp",
                 mlp_depth: int = 2, heads: int = 8, conv_norm: bool = True):
        super().__init__()
        if align not in ALIGNS:
            raise ValueError(f"align must be one of {ALIGNS}, got {align!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.align_mode, self.fusion, self.factor, self.heads = align, fusion, int(factor), int(heads)
        conv_align = align == "conv" and fusion != "cross_attn"
        self.align = nn.Conv2d(conv_dim, conv_dim, self.factor, stride=self.factor) if conv_align else None
        self.norm = nn.LayerNorm(conv_dim) if conv_norm else nn.Identity()
        if fusion == "concat_mlp":
            if mlp_depth < 1:
                raise ValueError(f"mlp_depth must be >= 1, got {mlp_depth}")
            layers: list[nn.Module] = [nn.Linear(vit_dim + conv_dim, vit_dim)]
            for _ in range(mlp_depth - 1):
                layers += [nn.GELU(), nn.Linear(vit_dim, vit_dim)]
            self.mlp = nn.Sequential(*layers)
        elif fusion == "add":
            self.proj = nn.Linear(conv_dim, vit_dim)
        else:
            if vit_dim % self.heads:
                raise ValueError(f"cross_attn: {self.heads} heads do not divide the ViT width {vit_dim}")
            self.q_norm = nn.LayerNorm(vit_dim)
            self.attn = nn.ModuleDict({"q": nn.Linear(vit_dim, vit_dim), "k": nn.Linear(conv_dim, vit_dim),
                                       "v": nn.Linear(conv_dim, vit_dim), "o": nn.Linear(vit_dim, vit_dim)})
        self.zero_init_()

    def last_layer(self) -> nn.Linear:
        """The layer that is zero-initialised (so the fusion starts as the identity)."""
        if self.fusion == "concat_mlp":
            return self.mlp[-1]
        return self.proj if self.fusion == "add" else self.attn["o"]

    @torch.no_grad()
    def zero_init_(self) -> None:
        last = self.last_layer()
        last.weight.zero_()
        last.bias.zero_()

    def forward(self, x: torch.Tensor, conv: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``x`` (n, 1 + gh*gw, C) ViT hidden state with CLS first; ``conv`` (n, C_k, gh*f, gw*f) -> same as x."""
        gh, gw = grid
        cls, patch = x[:, :1], x[:, 1:]
        n, c = patch.shape[0], patch.shape[-1]
        if self.fusion == "cross_attn":
            delta = self._cross_attention(patch, conv, gh, gw)
        else:
            a = align_features(conv, (gh, gw), self.align_mode, self.align)  # (n, C_k, gh, gw)
            a = self.norm(a.flatten(2).transpose(1, 2).to(patch.dtype))  # (n, gh*gw, C_k)
            delta = self.mlp(torch.cat([patch, a], -1)) if self.fusion == "concat_mlp" else self.proj(a)
        return torch.cat([cls, patch + delta], 1)

    def _cross_attention(self, patch, conv, gh, gw):
        n, _, h, w = conv.shape
        fh, fw = h // gh, w // gw
        if (fh * gh, fw * gw) != (h, w):
            raise ValueError(f"cross_attn needs the stage map ({h}x{w}) to be a multiple of the ViT grid ({gh}x{gw})")
        # (n, C_k, gh, fh, gw, fw) -> (n*gh*gw, fh*fw, C_k): the cells under each ViT patch
        kv = conv.reshape(n, -1, gh, fh, gw, fw).permute(0, 2, 4, 3, 5, 1).reshape(n * gh * gw, fh * fw, -1)
        kv = self.norm(kv.to(patch.dtype))
        c, hd = patch.shape[-1], self.heads
        q = self.attn["q"](self.q_norm(patch)).reshape(n * gh * gw, 1, hd, c // hd).transpose(1, 2)
        k = self.attn["k"](kv).reshape(n * gh * gw, fh * fw, hd, c // hd).transpose(1, 2)
        v = self.attn["v"](kv).reshape(n * gh * gw, fh * fw, hd, c // hd).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v)  # (n*g*g, heads, 1, c/heads)
        return self.attn["o"](o.transpose(1, 2).reshape(n, gh * gw, c))


def cvfm_flops(fusion: str, align: str, tokens: int, conv_dim: int, vit_dim: int, f2: int, mlp_depth: int = 2) -> int:
    """Pure: FLOPs of one CVFM over ``tokens`` patch tokens (f2 = ConvNeXt cells per token)."""
    out = 2 * tokens * f2 * conv_dim * conv_dim if align == "conv" and fusion != "cross_attn" else 0
    if fusion == "concat_mlp":
        out += 2 * tokens * (vit_dim + conv_dim) * vit_dim + (mlp_depth - 1) * 2 * tokens * vit_dim * vit_dim
    elif fusion == "add":
        out += 2 * tokens * conv_dim * vit_dim
    else:  # q, o on tokens; k, v on every cell; scores + AV
        out += 4 * tokens * vit_dim * vit_dim + 4 * tokens * f2 * conv_dim * vit_dim + 4 * tokens * f2 * vit_dim
    return out
