"""``hiwin`` — LLaVA-UHD v2's Hiwin transformer: VDIM pyramid + hierarchical window attention -> 144 tokens/slice.

Paper §3.2-3.4; official ``AdaptSpatialResampler.forward_with_featup`` (``mm_projector_type
adapt_spatial_resampler_v2``, ``llava/model/multimodal_projector/adapt_spatial_resampler.py``) and the token
organisation of ``llava_arch.py`` (``UsePermute=False``), branch ``LLaVA-UHD-v2`` of thunlp/LLaVA-UHD. Per tile (slice
or overview; ``native_aspect`` CLIP maps of any grid, tiles of equal grid batched):

1. the inverse semantic pyramid: :class:`~loupe.connectors.vdim.VDIM` guided by the tile's pixels -> levels
   1x/2x/4x, those of ``feature_scale_mask`` kept (official scripts: 5 = {1x, 4x});
2. per level: f = ``ln_kv``(``features_{l}x_projector``(F_l)) (Linear(C, D); ``ln_kv`` shared); key = f + the
   12x12 2-D sin-cos ``pos_embed`` bicubically resized to the level's (h, w) + ``feature_{l}x_embedding``;
   value = f;
3. windows: a 12 x 12 grid of float boxes on **every** level whatever its aspect, box (i, j) = [j w/12, i h/12,
   (j+1) w/12, (i+1) h/12] (official ``generate_subimage_coordinates`` arithmetic); keys and values RoI-aligned
   per window (:mod:`loupe.ops.roi_align`, aligned=False, adaptive sampling, float32) to the pooling grid of
   :func:`best_pooling_size` (square maps: 3x3); concatenated over levels per window (18 keys with mask 5);
4. across tiles of different grids keys are zero-padded to the longest, with ``key_padding_mask``;
5. four query sets ``query_1..4`` (144, D): q = ``ln_q``(query_k) + ``pos_embed``; each window's one query attends
   only to its own window's keys through ONE shared ``nn.MultiheadAttention(D, D/128)``; ``ln_proj`` each;
6. concat (144, 4D) -> ``cat_proj`` Linear(4D, D) -> ``ln_post`` -> ``@ proj`` (D, D): 144 tokens in the LLM width.

Token organisation (``token_order``, the :meth:`HiwinConnector.token_plan`): ``"official"`` = [slice_1, sep_1, ...,
slice_n, sep_n, overview] with sep_k the text token ``layout.meta["separators"][k]`` (',' in a row, '\\n' at a row
end; written by the processor, embedded by the LLM as in the official ``embed_tokens`` call), the
overview LAST without a separator: n * 144 + n + 144 tokens (1008x672: 6 slices -> 1014); no slicing -> 144.
``"stitched"`` (paper §3.4; the code's disabled ``UsePermute=True`` branch): the slices' 12x12 maps stitched into one
(rows*12, cols*12) map, the row-end separator's embedding after every feature row, then the first separator, then
the overview: rows*12*(cols*12 + 1) + 1 + 144. The connector returns the visual tokens only; positions are the plan's.

Keys: ``pos_embed``, ``query_{1..4}``, ``feature_{l}x_embedding``, ``features_{l}x_projector.*``, ``attn.*``,
``ln_{q,kv,proj,post}.*``, ``cat_proj.*``, ``proj``, ``upsampler.{up1,up2,fixup_proj}.*`` (official prefix
``model.mm_projector.``; the unused ``query``, ``kv_proj`` and unused levels are not built, see the converter).

[IMPORTANT] fidelity traps: ``grid[0]`` of the MAE sin-cos table is the *column* index and fills the first D/2 dims;
the window boxes are cast to the features' dtype before RoI-align (bf16 in the official runs: coarse boxes);
the overview comes last; separator ids are Llama's even for Qwen2; ``pos_embed`` trains (the official trainer sets
requires_grad on all projector parameters). All LayerNorms eps 1e-6; Linears trunc-normal 0.02, zero bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LoupeError
from ..ops.roi_align import roi_align_grid
from ..registry import CONNECTORS
from ..encoders.base import onloaded
from ..tokens import Text, Visual
from .base import Connector
from .vdim import MIN_VDIM_GRID, VDIM, levels_of, no_autocast, vdim_flops
from ..validation import bounded

POOLING_SIZES = ((4, 2), (3, 2), (4, 3), (3, 3), (2, 4), (2, 3), (3, 4))  # (w, h), official order


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """MAE ``get_2d_sincos_pos_embed(dim, grid)`` (grid*grid, dim), in numpy float32 as the official code:
    the first dim/2 channels encode the column index, the second half the row index."""
    def one_d(d, pos):
        omega = np.arange(d // 2, dtype=np.float32) / np.float32(d / 2.0)
        omega = (1.0 / 10000 ** omega).astype(np.float32)
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    g = np.arange(grid, dtype=np.float32)
    cols, rows = np.meshgrid(g, g)  # meshgrid(w, h): cols[i, j] = j
    return torch.from_numpy(np.concatenate([one_d(dim // 2, cols), one_d(dim // 2, rows)], axis=1)).float()


def best_pooling_size(wh_ratio: float, candidates=POOLING_SIZES) -> tuple[int, int]:
    """Official ``cal_best_pooling_size``: the (w, h) candidate closest in log aspect (first strict minimum),
    returned as (rows=h, cols=w)."""
    best, err = (3, 3), float("inf")
    for w, h in candidates:
        e = abs(math.log(wh_ratio) - math.log(w / h))
        if e < err:
            best, err = (h, w), e
    return best


def window_intervals(h: int, w: int, grid: int, dtype=torch.float32):
    """(rows [(y1, y2)], cols [(x1, x2)]) of the grid x grid windows of an (h, w) map, in the official arithmetic
    (``slice_image_feature_minicpm``: float crop size from sqrt, x2 = x1 + crop), rounded through ``dtype``."""
    ratio = h * w / grid ** 2
    ch = math.sqrt(ratio / (w / h))
    cw = ch * (w / h)
    if round(h / ch) * round(w / cw) != grid ** 2:
        raise LoupeError(f"hiwin: a {h}x{w} map does not split into {grid}x{grid} windows")
    def rnd(pairs):
        t = torch.tensor(pairs, dtype=torch.float32, device="cpu").to(dtype).float()
        return [tuple(p) for p in t.tolist()]
    return rnd([(i * ch, i * ch + ch) for i in range(grid)]), rnd([(j * cw, j * cw + cw) for j in range(grid)])


@CONNECTORS.register("hiwin")
class HiwinConnector(Connector):
    @dataclass
    class Config:
        grid_size: int = bounded(12, min=1)  # windows per side: grid_size^2 tokens per tile (official 12 -> 144)
        feature_scale_mask: int = bounded(5, min=1, max=7)  # ISP levels, bits 1 = 1x, 2 = 2x, 4 = 4x; released scripts 5, code default 7
        num_heads: int = bounded(0, min=0)  # 0: D // 128 (official), at least 1
        num_query_sets: int = bounded(4, min=1)
        token_order: str = "official"  # "official" (slices + separators, overview last) | "stitched" (paper §3.4)

        def __post_init__(self):
            levels_of(self.feature_scale_mask)
            if self.token_order not in ("official", "stitched"):
                raise ValueError(f"token_order must be 'official' or 'stitched', got {self.token_order!r}")
            if self.grid_size < 1 or self.num_query_sets < 1 or self.num_heads < 0:
                raise ValueError("grid_size and num_query_sets must be >= 1, num_heads >= 0")

    self_init = True  # the official init (trunc-normal 0.02 Linears, sin-cos table), not transformers' N(0, 0.02)
    #: kept whole by ``device_map="auto"``/FSDP: the forward mixes its own parameters (queries, ``pos_embed``, ``proj``)
    #: with its children's outputs, and ``nn.MultiheadAttention`` reads ``out_proj``'s weights without calling it
    no_split_modules = ("HiwinConnector", "MultiheadAttention")

    def __init__(self, config, in_dim: int, out_dim: int):
        super().__init__(config, in_dim, out_dim)
        d, g = out_dim, config.grid_size
        self.levels = levels_of(config.feature_scale_mask)
        self.heads = config.num_heads or max(1, d // 128)
        self.pos_embed = nn.Parameter(torch.empty(g * g, d))
        with torch.no_grad():  # from_numpy ignores a torch.device("meta") context: copy into a tensor that honours it
            self.pos_embed.copy_(sincos_2d(d, g))
        for k in range(1, config.num_query_sets + 1):
            self.register_parameter(f"query_{k}", nn.Parameter(torch.zeros(g * g, d)))
        for lv in self.levels:
            self.register_parameter(f"feature_{lv}x_embedding", nn.Parameter(torch.zeros(1, 1, d)))
            self.add_module(f"features_{lv}x_projector", nn.Linear(in_dim, d))
        top = max(self.levels)
        self.upsampler = VDIM(in_dim, top) if top > 1 else None
        self.attn = nn.MultiheadAttention(d, self.heads)
        self.ln_q, self.ln_kv, self.ln_proj, self.ln_post = (nn.LayerNorm(d, eps=1e-6) for _ in range(4))
        self.cat_proj = nn.Linear(config.num_query_sets * d, d)
        self.proj = nn.Parameter(d ** -0.5 * torch.randn(d, d))

    def init_module(self, module) -> bool:
        from transformers import initialization as init

        from .vdim import JBULearnedRange

        if module is self:
            init.copy_(self.pos_embed, sincos_2d(self.out_dim, self.config.grid_size))
            for k in range(1, self.config.num_query_sets + 1):
                init.trunc_normal_(getattr(self, f"query_{k}"), std=0.02)
            for lv in self.levels:
                init.zeros_(getattr(self, f"feature_{lv}x_embedding"))
            init.normal_(self.proj, std=self.out_dim ** -0.5)
            return True
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
            return True
        if isinstance(module, JBULearnedRange):
            init.zeros_(module.range_temp)
            init.ones_(module.sigma_spatial)
            return True
        return False

    # --- accounting (pure) -----------------------------------------------------------------------------
    @staticmethod
    def _roles(layout):
        local, over = layout.indices("local"), layout.indices("overview")
        if len(local) + len(over) != layout.num_tiles:
            raise LoupeError(f"hiwin takes local/overview tiles (the uhd slicer), got roles {set(layout.roles)}")
        seps = list(layout.meta.get("separators") or [])
        if local and len(seps) != len(local):
            raise LoupeError(f"hiwin needs one separator id per slice in layout.meta (uhd slicer), got {seps}")
        return local, over, seps

    @classmethod
    def check_grids(cls, config, layout, grids) -> None:
        """Plan-time twin of the forward's only size constraint: with a VDIM (a level above 1x), every tile's
        feature map needs both sides >= :data:`~loupe.connectors.vdim.MIN_VDIM_GRID` patches. Extreme aspect
        ratios break it (the uhd overview is ~tile_size^2 in area: from ~144:1 at 336 px, ~4:1 at the tiny 56 px),
        so the processor refuses them with this message instead of the model failing at forward."""
        if max(levels_of(config.feature_scale_mask)) == 1:
            return
        for i, (gw, gh) in enumerate(grids):
            if min(gw, gh) < MIN_VDIM_GRID:
                w, h = layout.image_size
                tw, th = layout.tile_sizes[i]
                raise LoupeError(
                    f"hiwin: an image of {w}x{h} pixels (aspect {max(w, h) / min(w, h):.1f}:1) is too elongated for "
                    f"this model: its {layout.roles[i]} tile is {tw}x{th} px = {gw}x{gh} patches, and the VDIM "
                    f"up-sampler needs at least {MIN_VDIM_GRID}x{MIN_VDIM_GRID}; crop or pad the image to a less "
                    f"extreme aspect ratio")

    @classmethod
    def token_plan(cls, config, layout, grids) -> tuple:
        """``official``: per slice its g x g window tokens then its separator id (a text token), the overview last;
        ``stitched``: each row of the stitched map then the row-end separator, the first separator, the overview."""
        g = config.grid_size
        local, over, seps = cls._roles(layout)
        cls.check_grids(config, layout, grids)
        overview = [Visual(g * g, grid=(g, g), role="overview") for _ in over]
        if not local:
            return tuple(overview)
        if config.token_order == "official":
            plan = []
            for k in range(len(local)):
                plan += [Visual(g * g, grid=(g, g), role="local"), Text(ids=(int(seps[k]),))]
            return tuple(plan + overview)
        cols, rows = layout.grid
        row = [Visual(cols * g, grid=(cols * g, 1), role="local"), Text(ids=(int(seps[cols - 1]),))]
        return tuple(row * (rows * g) + [Text(ids=(int(seps[0]),))] + overview)

    @classmethod
    def flops(cls, config, layout, grids, in_dim: int, out_dim: int, attention: bool = True) -> dict[str, int]:
        """Analytic FLOPs of one image (2 x MACs of convs, linears and matmuls, as FlopCounterMode counts):
        ``vdim``, ``projectors`` (Linear(C, D) on every pixel of every level), ``roi_align`` (the two window
        einsums on keys and values), ``mha`` (4 sets: q/k/v/out projections on keys padded to the image's longest,
        score and AV products), ``merge`` (cat_proj, proj). ``total`` includes the MHA unless ``attention=False``;
        ``total_without_mha`` always excludes it (the convention under which the LLaVA-UHD v2 paper's 17.5 TFLOPs
        is reproduced)."""
        d, g = out_dim, config.grid_size
        levels, n = levels_of(config.feature_scale_mask), len(grids)
        out = {"vdim": 0, "projectors": 0, "roi_align": 0}
        kmax = 0
        for gw, gh in grids:
            if max(levels) > 1:
                out["vdim"] += vdim_flops(in_dim, (gh, gw), max(levels))
            ph, pw = best_pooling_size(gw / gh)
            kmax = max(kmax, len(levels) * ph * pw)
            for lv in levels:
                h, w = gh * lv, gw * lv
                out["projectors"] += 2 * h * w * in_dim * d
                out["roi_align"] += 2 * g * ph * h * w * 2 * d + 2 * g * ph * w * g * pw * 2 * d
        q = n * g * g
        per_set = 2 * q * d * d * 2 + 2 * 2 * q * kmax * d * d + 2 * 2 * q * kmax * d
        out["mha"] = config.num_query_sets * per_set
        out["merge"] = 2 * q * config.num_query_sets * d * d + 2 * q * d * d
        out["total_without_mha"] = sum(v for k, v in out.items() if k != "mha")
        out["total"] = out["total_without_mha"] + (out["mha"] if attention else 0)
        return out

    # --- forward ---------------------------------------------------------------------------------------
    def _pos(self, h: int, w: int, dtype) -> torch.Tensor:
        """Official ``get_abs_pos``: the grid x grid table resized bicubically (float32) to (h, w) -> (h, w, D)."""
        g = self.config.grid_size
        t = self.pos_embed.float().reshape(1, g, g, -1).permute(0, 3, 1, 2)
        return F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).to(dtype)

    def _window_kv(self, maps: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """One group of tiles with equal grids: maps (B, h, w, C), pixels (B, 3, 14h, 14w) -> (B, g*g, k, 2D)."""
        dtype, g = self.proj.dtype, self.config.grid_size
        f1 = maps.permute(0, 3, 1, 2)
        pyramid = self.upsampler(f1, pixels) if self.upsampler is not None else {1: f1}
        out = []
        for lv in self.levels:
            f = getattr(self, f"features_{lv}x_projector")(pyramid[lv].permute(0, 2, 3, 1).to(dtype))
            f = self.ln_kv(f)
            b, h, w, d = f.shape
            key = f + self._pos(h, w, dtype) + getattr(self, f"feature_{lv}x_embedding").to(dtype)
            rows, cols = window_intervals(h, w, g, dtype)
            ph, pw = best_pooling_size(w / h)
            with no_autocast(f):  # RoI-align in float32, as officially
                kv = roi_align_grid(torch.cat([key, f], -1).float(), rows, cols, (ph, pw))  # (B, g, g, ph, pw, 2D)
            out.append(kv.reshape(b, g * g, ph * pw, 2 * d).to(dtype))
        return torch.cat(out, 2)

    def encode_tiles(self, features, pixel_values: torch.Tensor, tile_sizes) -> torch.Tensor:
        """Per-tile feature maps (a (T, gh, gw, C) tensor or a list of (gh_i, gw_i, C)) + their (T, 3, H, W)
        pixels (zero-padded; ``tile_sizes`` (w, h) px the true sizes) -> (T, g*g, D) window tokens."""
        maps = list(features.unbind(0)) if isinstance(features, torch.Tensor) else list(features)
        if len(maps) != len(tile_sizes) or pixel_values.shape[0] != len(maps):
            raise LoupeError(f"hiwin got {len(maps)} feature maps, {pixel_values.shape[0]} tiles, "
                             f"{len(tile_sizes)} tile sizes")
        keys = [(tuple(m.shape[:2]), tuple(s)) for m, s in zip(maps, tile_sizes)]
        kv: list = [None] * len(maps)
        for key in dict.fromkeys(keys):  # tiles with equal grids run as one batch
            idx = [i for i, k in enumerate(keys) if k == key]
            (w_px, h_px) = key[1]
            pix = pixel_values[torch.tensor(idx, device=pixel_values.device), :, :h_px, :w_px]
            group = self._window_kv(torch.stack([maps[i] for i in idx]), pix)
            for i, t in zip(idx, group.unbind(0)):  # unbind: one backward for all (indexing is O(T) each)
                kv[i] = t
        lengths = [t.shape[1] for t in kv]
        kmax, g2, d = max(lengths), kv[0].shape[0], self.out_dim
        kv = torch.stack([F.pad(t, (0, 0, 0, kmax - t.shape[1])) for t in kv]).reshape(-1, kmax, 2 * d)
        mask = None
        if len(set(lengths)) > 1:
            pad = torch.arange(kmax, device=kv.device)[None, :] >= torch.tensor(lengths, device=kv.device)[:, None]
            mask = pad.repeat_interleave(g2, 0)  # (T*g*g, kmax), True = padding
        k, v = kv[..., :d].transpose(0, 1), kv[..., d:].transpose(0, 1)  # (kmax, T*g*g, D)
        results = []
        for s in range(1, self.config.num_query_sets + 1):
            q = self.ln_q(getattr(self, f"query_{s}")) + self.pos_embed.to(kv.dtype)
            q = q.repeat(len(maps), 1)[None]  # (1, T*g*g, D): one query per window
            with onloaded(self.attn.out_proj):  # F.multi_head_attention_forward reads out_proj's weights directly
                out = self.attn(q, k, v, key_padding_mask=mask, need_weights=False)[0]
            results.append(self.ln_proj(out[0].reshape(len(maps), g2, d)))
        x = self.ln_post(self.cat_proj(torch.cat(results, -1)))
        return x @ self.proj

    def organise(self, tokens: torch.Tensor, layout) -> torch.Tensor:
        """(tiles, g*g, D) of one image -> its visual tokens in the order of :meth:`token_plan`'s visual spans (the
        separators are text tokens the processor writes, embedded by the LLM like any other)."""
        local, over, _ = self._roles(layout)
        tiles = tokens.unbind(0)  # per-tile views with one cheap backward (tokens[i] would zero-fill T times)
        if not local or self.config.token_order == "official":
            return tokens.reshape(-1, tokens.shape[-1])  # slices row-major, then the overview: the tile order
        (cols, rows), g, d = layout.grid, self.config.grid_size, tokens.shape[-1]
        grid = tokens[local].reshape(rows, cols, g, g, d).permute(0, 2, 1, 3, 4).reshape(rows * g * cols * g, d)
        return torch.cat([grid] + [tiles[i] for i in over])

    def forward(self, features, layouts, pixel_values=None):
        """``pixel_values``: the tiles, which guide the VDIM."""
        if pixel_values is None:
            raise LoupeError("hiwin needs pixel_values (the VDIM is guided by the slice pixels)")
        sizes = [tuple(s) for lay in layouts for s in lay.tile_sizes]
        tokens = self.encode_tiles(features, pixel_values, sizes)
        chunks = tokens.split([lay.num_tiles for lay in layouts])  # split: one backward for all images
        return [self.organise(t, lay) for t, lay in zip(chunks, layouts)]
