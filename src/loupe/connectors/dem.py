"""``dem`` — INF-LLaVA's Dual-perspective Enhancement Module + ``mlp2x_gelu`` projector (paper arXiv
2407.16198 §4.3, Eq. 7 and 18-27; official ``SpatialEmbed`` / ``MultiHeadedAttention`` / ``encode_images`` in
``INF_llava/model/llava_arch.py``).

Input: the ``dcm`` layout of one image: n = n_W x n_H local tiles (row-major), n global phase tiles (row phase
major), the overview; the encoder gives each tile a (g_h, g_w, C) map (24 x 24 x 1024 for CLIP-L/336).

1. **Recombination** (paper §4.3.1, official ``combine_crop_features_N`` / ``combine_stride_features_N``):
   local mosaic ``F_loc`` = the local maps as contiguous blocks, (n_H g_h, n_W g_w, C); global mosaic
   ``F_glo[i::n_H, j::n_W] = global(i, j)`` (interleaved). Both cover the whole canvas on the same grid
   (72 x 72 at 1008 px).
2. **Two window crops** of a mosaic, both vectorised into the batch dim (reshape/permute, no loops):
   :func:`crop_blocks` (contiguous g_h x g_w blocks, the local perspective, official ``crop_pixels_N``) and
   :func:`crop_phases` (stride-n sub-grids, the global perspective, official ``extract_pixels_N``). Their
   inverses are exactly :func:`local_mosaic` and :func:`global_mosaic`.
3. **Direction A, local-enhanced global** (official first loop): per contiguous block k,
   ``Attn(q=G_block_k, kv=L_block_k)``, reassembled contiguously -> A. **Direction B, global-enhanced local**:
   per stride sub-grid, ``Attn(q=L_sub_k, kv=G_sub_k)`` (G_sub_k is global tile k itself), reassembled
   interleaved -> Bm. Both directions share ONE attention module and run as one batched SDPA call.
4. ``MultiHeadedAttention(8, C)``: ``linears.0..3`` = q, k, v, out (Linear(C, C) with bias), SDPA (scale
   1/sqrt(C/8), no mask, no dropout), **post-norm residual with the query input**: ``ln(out(attn) + q_in)``.
5. **Fusion** ``official``: ``ln_fuse(cat[ffn_crop(Bm), ffn_stride(A)] + A + Bm)``, each FFN Linear(C, C/16),
   GELU, Linear(C/16, C/2) (64 and 512 at C = 1024).
6. **Down-sampling** ``bilinear`` (official): ``F.interpolate`` in fp32, align_corners=False, to the tile grid
   (g_h, g_w). The official code hard-codes ``size=(24, 24)``; here it is the encoder's tile grid, which is 24
   for the real model (and 4 for the tiny preset).
7. **Overview** ``mean`` (official): ``mean(stack([CLIP(overview), DEM]))`` = (ov + dem) / 2.
8. ``proj`` = mlp2x_gelu (keys ``proj.0`` / ``proj.2`` = ``model.mm_projector.{0,2}``) -> g_h g_w tokens
   per image (576), whatever the image size: the dcm slicer always feeds a fixed canvas.

Keys mirror the official ones under ``spatial_embed.`` (``model.spatial_embed.*`` in the checkpoint):
``attention.linears.{0..3}``, ``attention.ln``, ``ffn_crop.{0,2}``, ``ffn_stride.{0,2}``, ``ln_fuse``.
Official variant: 4,400,256 DEM parameters at C = 1024 (+ 20,979,712 for the projector into 4096).

[IMPORTANT] fidelity traps:
  * The official variable names are swapped: ``scale_stride_img_feat`` after attention holds A (queries from
    the *global* mosaic over *contiguous* blocks) and goes through ``ffn_stride``; ``scale_crop_img_feat`` holds
    Bm and goes through ``ffn_crop``; the concat order is ``[ffn_crop(Bm), ffn_stride(A)]``. Kept as is.
  * The residual inside the attention adds the *un-projected* query input, then LayerNorm (post-norm).
  * ``bilinear`` 72 -> 24 without antialiasing, for an odd integer factor n, samples exactly the centre of
    every n x n cell (source = n*dst + (n-1)/2): it is a *strided subsampling* of the fused map
    (``fused[1::3, 1::3]``), not the average pooling the paper's Eq. 7 describes. ``pool="avg"`` is the paper's.
  * The paper's Sec. 4.3.2-4.3.3 (Eq. 18-25) pairs the crops the other way round from the official code and
    from its own introduction: queries from the global features over the *global-perspective* (stride)
    crops, queries from the local features over the *local-perspective* (block) crops. ``windows="eq18"``
    selects that reading; ``"official"`` (default) is the code's. Eq. 20-21 also omit the output projection,
    residual and LayerNorm; the official attention is kept for both readings.

Paper variants, by name (defaults = official code, so the released checkpoints load and behave the same):

* ``fusion``: ``official``; ``linear_concat`` (Eq. 26-27: ``[A W_glo ; Bm W_loc]``, two bias-free
  Linear(C, C/2) ``embed_glo`` / ``embed_loc``, no residual, no LN); the Tab. 5 ablations ``add`` (A + Bm),
  ``weighted_add`` (w0 A + w1 Bm, learnable ``fuse_weight`` initialised 0.5, 0.5), ``multiply``, ``max``
  (element-wise), ``conv3x3`` (Conv2d(2C, C, 3, pad 1) ``fuse_conv`` on [A, Bm]). The ablation fusions have no
  FFN and no LN (the paper does not say; [INF]).
* ``dem``: ``both``; ``global_only`` (Tab. 4 "DEM w/ global": A alone) / ``local_only`` (Tab. 4 "DEM w/
  local": Bm alone), no fusion; ``none`` (no attention: the mosaic named by ``baseline`` — ``local`` F_loc,
  ``global`` F_glo, ``add`` F_loc + F_glo = Tab. 6 "w/ DCM" — pooled; ``pool`` defaults to ``avg`` there).
* ``pool``: ``bilinear`` (official) | ``avg`` (Eq. 7 F_pool); ``None`` = bilinear, or avg for ``dem="none"``;
  ``area`` [LOUPE]: Eq. 7's average over every cell for a factor that is not whole (adaptive average pooling).
  At the demo's native-resolution layout a 160x96 image gives a 20x12 mosaic for an 8x8 output: ``bilinear``
  at factor 2.5 never samples mosaic columns 2, 7, 12 and 17 (a tag there is invisible) and ``avg`` cannot
  divide it.
* ``combine_overview``: ``mean`` (official) | ``add`` (the paper's "[336+1008]" element-wise addition,
  Tab. 3) | ``none`` (the overview tile is still encoded but unused).
* ``out_scale`` [LOUPE]: keep an ``out_scale`` x finer grid than one tile (official 1: 576 tokens; 2: 2304), the
  overview repeated onto it; a token-budget knob for ablations, not in the paper.

Accounting: :meth:`DEMConnector.num_tokens` (pure), :meth:`DEMConnector.flops` and :func:`dem_cost` (the
DEM vs full cross-attention over the two mosaics, FLOPs and attention-matrix elements, as counted by
:func:`dem_cost`: 113.5 vs 309 GFLOPs, 47.8M vs 430M elements at 1008 px).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LoupeError
from ..registry import CONNECTORS
from ..validation import bounded
from ..tokens import Visual
from .base import Connector
from .mlp import mlp_projector

DEM_MODES = ("both", "global_only", "local_only", "none")
FUSIONS = ("official", "linear_concat", "add", "weighted_add", "multiply", "max", "conv3x3")
COMBINES = ("mean", "add", "none")
POOLS = ("bilinear", "avg", "area")
WINDOWS = ("official", "eq18")
BASELINES = ("local", "global", "add")


# --- recombination and window crops (pure tensor reshapes; grid = (n_W, n_H)) ----------------------------------
def local_mosaic(tiles: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, n_H n_W, g_h, g_w, C) tiles in row-major order -> (B, n_H g_h, n_W g_w, C) contiguous mosaic."""
    nw, nh = grid
    b, n, gh, gw, c = tiles.shape
    return tiles.reshape(b, nh, nw, gh, gw, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * gh, nw * gw, c)


def global_mosaic(tiles: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, n_H n_W, g_h, g_w, C) phase tiles, row phase i major -> (B, g_h n_H, g_w n_W, C) with
    ``M[:, i::n_H, j::n_W] = tiles[:, i n_W + j]`` (official ``combine_stride_features_N``)."""
    nw, nh = grid
    b, n, gh, gw, c = tiles.shape
    return tiles.reshape(b, nh, nw, gh, gw, c).permute(0, 3, 1, 4, 2, 5).reshape(b, gh * nh, gw * nw, c)


def crop_blocks(mosaic: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Local-perspective crop: (B, H, W, C) -> (B, n, H/n_H, W/n_W, C) contiguous blocks, row-major
    (official ``crop_pixels_N``); the inverse of :func:`local_mosaic`."""
    nw, nh = grid
    b, h, w, c = mosaic.shape
    gh, gw = h // nh, w // nw
    return mosaic.reshape(b, nh, gh, nw, gw, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * nw, gh, gw, c)


def crop_phases(mosaic: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Global-perspective crop: (B, H, W, C) -> (B, n, H/n_H, W/n_W, C), sub-grid i n_W + j =
    ``mosaic[:, i::n_H, j::n_W]`` (official ``extract_pixels_N``); the inverse of :func:`global_mosaic`."""
    nw, nh = grid
    b, h, w, c = mosaic.shape
    gh, gw = h // nh, w // nw
    return mosaic.reshape(b, gh, nh, gw, nw, c).permute(0, 2, 4, 1, 3, 5).reshape(b, nh * nw, gh, gw, c)


# --- modules (names = the official ones) ---------------------------------------------------------------------------
class MultiHeadedAttention(nn.Module):
    """Official ``MultiHeadedAttention(h, d_model)``: ``ln(linears[3](SDPA(q W0, k W1, v W2)) + q_in)``."""

    def __init__(self, heads: int, dim: int):
        super().__init__()
        if dim % heads:
            raise LoupeError(f"dem: width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.linears = nn.ModuleList([nn.Linear(dim, dim) for _ in range(4)])
        self.ln = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """q: (N, Lq, C), kv: (N, Lk, C) -> (N, Lq, C)."""
        n, lq, c = q.shape
        h = self.heads

        def split(x, lin):
            return lin(x).view(n, -1, h, c // h).transpose(1, 2)

        lin = self.linears
        x = F.scaled_dot_product_attention(split(q, lin[0]), split(kv, lin[1]), split(kv, lin[2]))
        x = x.transpose(1, 2).reshape(n, lq, c)
        return self.ln(lin[3](x) + q)


def _ffn(dim: int, ratio: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim // ratio), nn.GELU(), nn.Linear(dim // ratio, dim // 2))


class SpatialEmbed(nn.Module):
    """The DEM proper (official ``SpatialEmbed``): (local, global) tiles -> the fused (B, H, W, C) mosaic."""

    def __init__(self, config, dim: int):
        super().__init__()
        self.config = config
        if config.dem != "none":
            self.attention = MultiHeadedAttention(config.heads, dim)
        if config.dem == "both":
            f = config.fusion
            if f == "official":
                if dim % 2 or dim // config.ffn_ratio < 1:
                    raise LoupeError(f"dem: the official fusion needs an even width >= {config.ffn_ratio}, got {dim}")
                self.ffn_crop = _ffn(dim, config.ffn_ratio)
                self.ffn_stride = _ffn(dim, config.ffn_ratio)
                self.ln_fuse = nn.LayerNorm(dim)
            elif f == "linear_concat":
                self.embed_glo = nn.Linear(dim, dim // 2, bias=False)
                self.embed_loc = nn.Linear(dim, dim - dim // 2, bias=False)
            elif f == "weighted_add":
                self.fuse_weight = nn.Parameter(torch.full((2,), 0.5))
            elif f == "conv3x3":
                self.fuse_conv = nn.Conv2d(2 * dim, dim, 3, padding=1)

    def directions(self, loc: torch.Tensor, glo: torch.Tensor, grid) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(A, Bm): the local-enhanced global and global-enhanced local mosaics, (B, H, W, C) each (None when
        the ``dem`` mode skips that direction). ``loc`` / ``glo``: (B, n, g_h, g_w, C) tiles in layout order."""
        mode, b, n, gh, gw, c = self.config.dem, *loc.shape
        want_a, want_b = mode in ("both", "global_only"), mode in ("both", "local_only")
        L, G = local_mosaic(loc, grid), global_mosaic(glo, grid)
        if self.config.windows == "official":  # A over contiguous blocks, B over stride sub-grids
            qa, kva, back_a = crop_blocks(G, grid), loc, local_mosaic
            qb, kvb, back_b = crop_phases(L, grid), glo, global_mosaic
        else:  # "eq18": A (q = global) over stride sub-grids, B (q = local) over contiguous blocks
            qa, kva, back_a = glo, crop_phases(L, grid), global_mosaic
            qb, kvb, back_b = loc, crop_blocks(G, grid), local_mosaic
        qs = ([qa] if want_a else []) + ([qb] if want_b else [])
        kvs = ([kva] if want_a else []) + ([kvb] if want_b else [])
        q = torch.cat(qs, 0).reshape(-1, gh * gw, c)  # (dirs * B * n, g_h g_w, C): every window in the batch dim
        kv = torch.cat(kvs, 0).reshape(-1, gh * gw, c)
        out = self.attention(q, kv).reshape(len(qs), b, n, gh, gw, c)
        a = back_a(out[0], grid) if want_a else None
        bm = back_b(out[-1], grid) if want_b else None
        return a, bm

    def fuse(self, a: torch.Tensor, bm: torch.Tensor) -> torch.Tensor:
        f = self.config.fusion
        if f == "official":
            return self.ln_fuse(torch.cat([self.ffn_crop(bm), self.ffn_stride(a)], -1) + a + bm)
        if f == "linear_concat":
            return torch.cat([self.embed_glo(a), self.embed_loc(bm)], -1)
        if f == "add":
            return a + bm
        if f == "weighted_add":
            return self.fuse_weight[0] * a + self.fuse_weight[1] * bm
        if f == "multiply":
            return a * bm
        if f == "max":
            return torch.maximum(a, bm)
        x = torch.cat([a, bm], -1).permute(0, 3, 1, 2)  # conv3x3
        return self.fuse_conv(x).permute(0, 2, 3, 1)

    def forward(self, loc: torch.Tensor, glo: torch.Tensor, grid) -> torch.Tensor:
        """(B, n, g_h, g_w, C) local and global tiles -> (B, n_H g_h, n_W g_w, C) before down-sampling."""
        mode = self.config.dem
        if mode == "none":
            base = self.config.baseline
            if base == "local":
                return local_mosaic(loc, grid)
            if base == "global":
                return global_mosaic(glo, grid)
            return local_mosaic(loc, grid) + global_mosaic(glo, grid)
        a, bm = self.directions(loc, glo, grid)
        if mode == "global_only":
            return a
        if mode == "local_only":
            return bm
        return self.fuse(a, bm)


def downsample(x: torch.Tensor, size: tuple[int, int], pool: str) -> torch.Tensor:
    """(B, H, W, C) -> (B, size_h, size_w, C): official bilinear (in fp32 — float64 stays float64 —,
    align_corners=False, cast back), average pooling, or ``area``: adaptive average pooling (every output cell
    the mean of the input cells it overlaps; equal to ``avg`` when the factor is whole)."""
    y = x.permute(0, 3, 1, 2)
    if pool == "bilinear":
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        y = F.interpolate(y.to(work), size=size, mode="bilinear", align_corners=False).to(x.dtype)
    elif pool == "area":
        y = F.adaptive_avg_pool2d(y, size)
    else:
        y = F.avg_pool2d(y, kernel_size=(x.shape[1] // size[0], x.shape[2] // size[1]))
    return y.permute(0, 2, 3, 1)


# --- accounting ------------------------------------------------------------------------------------------------
def dem_cost(channels: int, tile_grid: tuple[int, int], grid: tuple[int, int], heads: int = 8,
             attention: str = "windowed", dem: str = "both", fusion: str = "official",
             ffn_ratio: int = 16) -> dict[str, int]:
    """Analytic cost of the DEM on one image (2 x MACs of linears/matmuls/convs; LN, GELU, softmax, interpolation
    not counted). ``tile_grid`` = (g_w, g_h) of one tile's features, ``grid`` = (n_W, n_H) tiles.

    ``attention="windowed"``: the DEM's n windows of g_h g_w tokens per direction; ``"full"``: plain cross-attention
    between the two whole mosaics (T = n g_h g_w tokens each way), the alternative the paper rules out (§4.3.2).
    Returns ``{"projections", "attention", "ffn", "total"}`` FLOPs and ``attn_elements``, the attention-probability
    elements materialised by a non-fused kernel (all heads, both directions).
    """
    c, (gw, gh), (nw, nh) = channels, tile_grid, grid
    n, w = nw * nh, gw * gh
    t = n * w
    dirs = {"both": 2, "global_only": 1, "local_only": 1, "none": 0}[dem]
    proj = dirs * 4 * 2 * t * c * c  # q, k, v, out over T tokens
    if attention == "windowed":
        attn, elems = dirs * n * 2 * (2 * w * w * c), dirs * heads * n * w * w
    elif attention == "full":
        attn, elems = dirs * 2 * (2 * t * t * c), dirs * heads * t * t
    else:
        raise LoupeError(f"attention must be 'windowed' or 'full', got {attention!r}")
    ffn = 0
    if dem == "both":
        ffn = {"official": 2 * 2 * t * (c * (c // ffn_ratio) + (c // ffn_ratio) * (c // 2)),
               "linear_concat": 2 * t * c * c, "conv3x3": 2 * t * 9 * 2 * c * c}.get(fusion, 0)
    return {"projections": proj, "attention": attn, "ffn": ffn, "total": proj + attn + ffn, "attn_elements": elems}


# --- the connector -----------------------------------------------------------------------------------------------
@CONNECTORS.register("dem")
class DEMConnector(Connector):
    @dataclass
    class Config:
        dem: str = "both"  # both | global_only | local_only | none
        fusion: str = "official"  # official | linear_concat | add | weighted_add | multiply | max | conv3x3
        combine_overview: str = "mean"  # mean (official) | add (paper Tab. 3 "336+1008") | none
        pool: str | None = None  # bilinear (official) | avg (Eq. 7); None: bilinear, avg for dem="none"
        windows: str = "official"  # official | eq18 (see the module docstring)
        baseline: str = "local"  # dem="none" only: local | global | add (Tab. 6 "w/ DCM")
        heads: int = bounded(8, min=1)
        ffn_ratio: int = bounded(16, min=1)
        out_scale: int = bounded(1, min=1)  # [LOUPE] output grid = out_scale x the tile grid (official 1: 72x72 -> 24x24 = 576)
        depth: int = bounded(2, min=1)  # projector: mlp2x_gelu
        act: str = "gelu"

        def __post_init__(self):
            for name, allowed in (("dem", DEM_MODES), ("fusion", FUSIONS), ("combine_overview", COMBINES),
                                  ("windows", WINDOWS), ("baseline", BASELINES)):
                if getattr(self, name) not in allowed:
                    raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
            if self.pool is not None and self.pool not in POOLS:
                raise ValueError(f"pool must be one of {POOLS} or None, got {self.pool!r}")
            if self.out_scale < 1:
                raise ValueError(f"out_scale must be >= 1, got {self.out_scale}")

        @property
        def pool_mode(self) -> str:
            return self.pool or ("avg" if self.dem == "none" else "bilinear")

    def __init__(self, config, in_dim: int, out_dim: int):
        super().__init__(config, in_dim, out_dim)
        self.spatial_embed = SpatialEmbed(config, in_dim)
        self.proj = mlp_projector(in_dim, out_dim, config.depth, config.act)

    # --- accounting (pure) ----------------------------------------------------------------------------------
    @classmethod
    def _plan(cls, config, layout, grids):
        """(local, global, overview indices, tile grid (g_w, g_h)) of one image, checked."""
        loc, glo, ov = layout.indices("local"), layout.indices("global"), layout.indices("overview")
        nw, nh = layout.grid
        if not loc or len(loc) != nw * nh or len(glo) != len(loc) or len(ov) > 1:
            raise LoupeError(
                f"dem needs a dcm layout (n local + n global tiles on a {layout.grid} grid + one overview), got "
                f"roles {layout.roles}; use the 'dcm' slicer"
            )
        tg = tuple(grids[loc[0]])
        if any(tuple(grids[i]) != tg for i in loc + glo):
            got = [grids[i] for i in loc + glo]
            raise LoupeError(f"dem needs equal feature grids for all local and global tiles, got {got}")
        if config.combine_overview != "none":
            if not ov or tuple(grids[ov[0]]) != tg:
                raise LoupeError(
                    f"dem combine_overview={config.combine_overview!r} needs an overview tile with grid {tg}"
                )
        return loc, glo, ov, tg

    @classmethod
    def token_plan(cls, config, layout, grids) -> tuple:
        """One grid: the fused mosaic down-sampled to a tile's grid, times ``out_scale`` per side."""
        gw, gh = cls._plan(config, layout, grids)[3]
        s = config.out_scale
        return (Visual(gw * gh * s * s, grid=(gw * s, gh * s), role="fused"),)

    @classmethod
    def flops(cls, config, layout, grids, in_dim: int, out_dim: int, attention: str = "windowed") -> dict[str, int]:
        """FLOPs of one image: the DEM (:func:`dem_cost`) + the projector; ``attention="full"`` prices the
        full cross-attention alternative instead of the windows."""
        tg = cls._plan(config, layout, grids)[3]
        cost = dem_cost(in_dim, tg, layout.grid, config.heads, attention, config.dem, config.fusion, config.ffn_ratio)
        tokens = tg[0] * tg[1] * config.out_scale ** 2
        projector = 2 * tokens * in_dim * out_dim + (config.depth - 1) * 2 * tokens * out_dim * out_dim
        out = {"dem_" + k: v for k, v in cost.items() if k not in ("total", "attn_elements")}
        out["projector"] = projector
        out["total"] = sum(out.values())
        return out

    # --- forward --------------------------------------------------------------------------------------------------
    def forward(self, features, layouts, pixel_values=None):
        """features (total_tiles, g_h, g_w, C) -> one (g_h g_w, D) tensor per image."""
        return [self.proj(x).reshape(x.shape[0] * x.shape[1], -1) for x in self.fused_maps(features, layouts)]

    def fused_maps(self, features, layouts) -> list[torch.Tensor]:
        """features (total_tiles, g_h, g_w, C) -> one (g_h s, g_w s, C) map per image: the DEM output
        down-sampled (and combined with the overview), before the projector. Stage-1 stand-in pretraining reads
        it (:func:`loupe.demo.pretrain.pretrain_dem`)."""
        plans, offsets, start = [], [], 0
        for lay in layouts:
            grids = [(features.shape[2], features.shape[1])] * lay.num_tiles
            plans.append(self._plan(self.config, lay, grids))
            offsets.append(start)
            start += lay.num_tiles
        if start != features.shape[0]:
            raise LoupeError(f"dem got {features.shape[0]} tile features for layouts holding {start} tiles")
        groups: dict[tuple, list[int]] = {}  # images with the same tile grid run as one batch
        for i, lay in enumerate(layouts):
            groups.setdefault(tuple(lay.grid), []).append(i)
        out: list[torch.Tensor | None] = [None] * len(layouts)
        g_h, g_w = features.shape[1], features.shape[2]
        c, dev = features.shape[-1], features.device
        for grid, members in groups.items():
            # rows of each role (0 local, 1 global, 2 overview) of every member, in layout order
            loc_rows, glo_rows, ov_rows = (torch.tensor([offsets[i] + j for i in members for j in plans[i][k]],
                                                        dtype=torch.long, device=dev) for k in range(3))
            b = len(members)
            loc = features[loc_rows].reshape(b, -1, g_h, g_w, c)
            glo = features[glo_rows].reshape(b, -1, g_h, g_w, c)
            sc = self.config.out_scale
            if self.config.pool_mode == "avg" and (grid[0] % sc or grid[1] % sc):
                raise LoupeError(f"dem out_scale={sc} must divide the {grid[0]}x{grid[1]} tile grid for pool='avg'")
            x = downsample(self.spatial_embed(loc, glo, grid), (g_h * sc, g_w * sc), self.config.pool_mode)
            if self.config.combine_overview != "none":
                ov = features[ov_rows]
                if sc > 1:  # the overview's cells repeated onto the finer output grid
                    ov = ov.repeat_interleave(sc, 1).repeat_interleave(sc, 2)
                x = torch.stack([ov, x], -1).mean(-1) if self.config.combine_overview == "mean" else ov + x
            for k, i in enumerate(members):
                out[i] = x[k]
        return out
