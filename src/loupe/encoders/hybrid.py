"""``hybrid`` — FILA / HyViLM's Hybrid Encoder: CLIP-ViT on the crops, ConvNeXt on the whole canvas, fused deep.

"Fine-Grained Vision Language Models" (arXiv 2412.08378, v1 "HyViLM"). No code or checkpoint exists; only the
abstract is public (arXiv 2412.08378). Sources of each piece ([PAPER]: the abstract; [2ND]: third-party summaries
(blogs), unverified; [INF]: Loupe's inferred default, every item an option):

* [PAPER] a Hybrid Encoder that "encodes individual sub-images" of dynamic cropping with CLIP-ViT *and*
  "interacts with detailed global visual features", against semantic breaks at crop boundaries; a
  ConvNeXt-ViT Deep Fusion Module (CVFM, :mod:`loupe.encoders.cvfm`) over "different layers"; two stages.
* [2ND/INF] the crops are LLaVA-NeXT anyres (slicer ``anyres``, connector ``llava_next``); the
  ConvNeXt (default LAION CLIP-ConvNeXt-L, 4 stages 192..1536) sees the whole padded canvas resized by
  ``stride / patch`` = 32/14, so a 336 tile is 768 ConvNeXt pixels and its stage-4 grid is the ViT's 24x24;
  the overview tile gets its own ConvNeXt pass at 768; stage k feeds the ViT at the end of the k-th of four
  equal parts of the ViT; CVFM = align to 24x24, concat, MLP, zero-initialised residual, CLS untouched.
* [LOUPE] choices, all options of :class:`HybridEncoder.Config`: the ConvNeXt input is rebuilt from the tiles
  Loupe already has (below), a LayerNorm on the ConvNeXt features (``conv_norm``), the "add" and
  "cross_attn" fusions, ``fusion="none"`` (no ConvNeXt branch: exactly the ``clip`` encoder, the ablation).

Data path for one anyres image (336 tiles, canvas 672x672, CLIP-L/336 + ConvNeXt-L)::

    pixel_values [overview, t_1..t_4] (5, 3, 336, 336), CLIP-normalised (the LAION ConvNeXt uses the same stats)
    ConvNeXt input: the 2x2 tiles re-assembled into the canvas (3, 672, 672) -> F.interpolate bicubic, antialias
                    -> (3, 1536, 1536); the overview -> (3, 768, 768). Stage maps of the canvas: s1 (192, 384, 384),
                    s2 (384, 192, 192), s3 (768, 96, 96), s4 (1536, 48, 48); tile (r, c) owns the block
                    [r*S:(r+1)*S, c*S:(c+1)*S] of each (S = 192, 96, 48, 24).
    ViT: embeddings + pre_layrnorm -> blocks 1..23 (layer -2); after blocks 6, 12, 18, 23 the CVFM of stages
         1..4 adds its fused features to the 576 patch tokens of every tile -> (5, 24, 24, 1024), CLS dropped.

Rebuilding the canvas from the tiles is exact: anyres local tiles tile the canvas (layout ``grid``, row-major,
overview first), and the canvas is normalised pixels, which bicubic resizing commutes with (a linear filter
whose weights sum to 1). The alternative, a slicer role carrying the canvas at 768/336 scale from the original
image (sharper than upscaling the 336-per-tile canvas), would need a slicer change and is not done here.

Not built (an open point): reading the abstract's "leveraging information from different layers" as also
concatenating several ViT layers' outputs into the final features; the output here is the one ``select_layer``.

Keys (in a Loupe model, under ``vision_tower.``): ``vision_model.*`` = the ``clip`` encoder's (transformers'
``CLIPVisionModel``, so a LLaVA-NeXT tower maps 1:1), ``conv_branch.convnext.*`` = the ``convnext`` encoder's
(:class:`~loupe.encoders.convnext.ConvNeXtEncoder`, reused whole: HF/timm key maps, stage freezing, FLOPs),
``cvfm.{i}.*`` one fusion per interaction layer. All weights are kept; only the ViT blocks up to
``select_layer`` and the ConvNeXt stages up to the deepest fused one are run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from ..errors import LoupeError
from ..registry import ENCODERS
from .base import VisionEncoder
from .clip import CLIP_L_336, CLIP_MEAN, CLIP_STD, CLIPEncoder
from .convnext import CONVNEXT_L, ConvNeXtEncoder
from .cvfm import ALIGNS, CVFM, FUSIONS, cvfm_flops
from ..validation import bounded

#: the blog's interaction layers ([2ND], unverified and suspicious: layer 2 is very early)
BLOG_LAYERS = (2, 6, 12, 20)
RESIZE_MODES = ("bicubic", "bilinear", "nearest", "area")


@dataclass
class ConvJob:
    """One ConvNeXt pass: ``image`` (3, H, W) at ConvNeXt resolution, covering ``tiles`` (indices into the flat
    tile batch, row-major) on a ``grid`` of (cols, rows); tile j owns block (j // cols, j % cols)."""

    image: torch.Tensor
    tiles: list
    grid: tuple


@ENCODERS.register("hybrid")
class HybridEncoder(VisionEncoder):
    """Tiles (N, 3, t, t) + layouts -> (N, t/p, t/p, C_vit); see the module docstring."""

    @dataclass
    class Config:
        hf_config: dict = field(default_factory=lambda: dict(CLIP_L_336))  # the ViT (CLIPVisionModel)
        select_layer: int = -2  # ViT hidden_states index (LLaVA: -2, CLS dropped)
        convnext: dict = field(default_factory=lambda: dict(CONVNEXT_L))  # ConvNeXtEncoder.Config options
        conv_scale: float | None = bounded(None, gt=0.0)  # ConvNeXt px per ViT px; None = stride / patch (32/14: 336 -> 768)
        conv_resize: str = "bicubic"  # F.interpolate mode for the ConvNeXt input
        conv_antialias: bool = True
        conv_overview: bool = True  # the overview tile gets its own ConvNeXt pass (False: plain CLIP for it)
        interaction_layers: Any = "stage_ends"  # "stage_ends" | "blog" (2, 6, 12, 20) | explicit 1-based blocks
        stages: tuple | None = bounded(None, min=1)  # ConvNeXt stage (1-based) per interaction; None = the last len(layers)
        align: str = "avgpool"  # "avgpool" | "conv" | "bilinear"
        fusion: str = "concat_mlp"  # "concat_mlp" | "add" | "cross_attn" | "none" (no ConvNeXt branch)
        mlp_depth: int = bounded(2, min=1)  # concat_mlp: Linear(C + C_k, C) [GELU, Linear(C, C)] * (depth - 1)
        heads: int = bounded(8, min=1)  # cross_attn heads
        conv_norm: bool = True  # LayerNorm on the ConvNeXt features before fusing ([LOUPE])
        image_mean: tuple = bounded(CLIP_MEAN, min=0.0, max=1.0)
        image_std: tuple = bounded(CLIP_STD, gt=0.0)

        def __post_init__(self):
            if isinstance(self.interaction_layers, (list, tuple)):
                self.interaction_layers = tuple(int(v) for v in self.interaction_layers)
            elif self.interaction_layers not in ("stage_ends", "blog"):
                raise ValueError(f"interaction_layers must be 'stage_ends', 'blog' or a list of 1-based ViT blocks, "
                                 f"got {self.interaction_layers!r}")
            self.stages = None if self.stages is None else tuple(int(s) for s in self.stages)
            if self.align not in ALIGNS:
                raise ValueError(f"align must be one of {ALIGNS}, got {self.align!r}")
            if self.fusion not in FUSIONS + ("none",):
                raise ValueError(f"fusion must be one of {FUSIONS + ('none',)}, got {self.fusion!r}")
            if self.conv_resize not in RESIZE_MODES:
                raise ValueError(f"conv_resize must be one of {RESIZE_MODES}, got {self.conv_resize!r}")
            self.convnext = dict(self.convnext)
            self.conv_config()  # validates the ConvNeXt options
            self.plan()  # validates layers/stages

        # --- pure geometry of the fusion -----------------------------------------------------------------
        def conv_config(self) -> ConvNeXtEncoder.Config:
            try:
                return ConvNeXtEncoder.Config(**self.convnext)
            except TypeError as e:
                raise ValueError(f"bad convnext options {sorted(self.convnext)}: {e}") from None

        def patch(self) -> int:
            return int(self.hf_config.get("patch_size", 14))

        def layers_run(self) -> int:
            n = int(self.hf_config.get("num_hidden_layers", 12))
            k = self.select_layer if self.select_layer >= 0 else n + 1 + self.select_layer
            if not 0 <= k <= n:
                raise ValueError(f"select_layer {self.select_layer} is out of range for {n} layers")
            return k

        def scale(self) -> float:
            """ConvNeXt input pixels per ViT pixel (32/14 for ConvNeXt-L + ViT-L/14)."""
            if self.conv_scale:
                return float(self.conv_scale)
            return ConvNeXtEncoder.stride(self.conv_config()) / self.patch()

        def plan(self) -> list[tuple[int, int]]:
            """[(ViT block after which to fuse (1-based; 0 = after pre_layrnorm), ConvNeXt stage (1-based))].

            ``stage_ends`` [INF]: K = the fused stages (all, default), block_i = min(ceil(i * L / K), blocks run)
            for L ViT layers: 24 layers, layer -2, 4 stages -> 6, 12, 18, 23.
            """
            if self.fusion == "none":
                return []
            n_stages, run, n_all = len(self.conv_config().depths), self.layers_run(), int(
                self.hf_config.get("num_hidden_layers", 12))
            layers = self.interaction_layers
            if layers == "stage_ends":
                k = len(self.stages) if self.stages else n_stages
                layers = tuple(min(math.ceil(i * n_all / k), run) for i in range(1, k + 1))
            elif layers == "blog":
                layers = BLOG_LAYERS
            stages = self.stages or tuple(range(n_stages - len(layers) + 1, n_stages + 1))
            if len(stages) != len(layers):
                raise ValueError(f"{len(layers)} interaction layers {layers} but {len(stages)} stages {stages}")
            if not layers:
                raise ValueError("no interaction layer: use fusion='none' for a ViT without the ConvNeXt branch")
            if any(not 0 <= b <= run for b in layers):
                raise ValueError(f"interaction layers {layers} must lie in 0..{run} (the ViT blocks run)")
            if any(not 1 <= s <= n_stages for s in stages):
                raise ValueError(f"stages {stages} must lie in 1..{n_stages}")
            if list(layers) != sorted(layers):
                raise ValueError(f"interaction layers must be in increasing order, got {layers}")
            return list(zip(layers, stages))

        def factor(self, stage: int) -> float:
            """ConvNeXt cells per ViT patch side at ``stage`` (2**(K-k) in the default geometry)."""
            cc = self.conv_config()
            return self.scale() * self.patch() / (cc.patch_size * 2 ** (stage - 1))

    no_split_modules = ("CLIPEncoderLayer", "ConvNextLayer")
    self_init = True  # CVFM's zero-initialised last layers must survive the model's post_init

    def __init__(self, config):
        super().__init__(config)
        self.vision_model = CLIPVisionModel(CLIPVisionConfig(**config.hf_config))
        self.num_layers_run = config.layers_run()
        self.interactions = config.plan()
        self.conv_branch = self.cvfm = None
        if self.interactions:
            self.conv_branch = ConvNeXtEncoder(config.conv_config())
            widths, c = config.conv_config().hidden_sizes, self.output_dim(config)
            mods = []
            for _, stage in self.interactions:
                f = config.factor(stage)
                exact = abs(f - round(f)) < 1e-6 and round(f) >= 1
                if not exact and (config.align == "conv" or config.fusion == "cross_attn"):
                    raise LoupeError(f"hybrid: align='conv'/fusion='cross_attn' need a whole number of ConvNeXt cells "
                                     f"per ViT patch; stage {stage} has {f:g} (conv_scale {config.scale():g})")
                mods.append(CVFM(c, widths[stage - 1], round(f) if exact else 1, config.align, config.fusion,
                                 config.mlp_depth, config.heads, config.conv_norm))
            self.cvfm = nn.ModuleList(mods)

    def init_module(self, module) -> bool:
        """Model post_init hook (loupe.init): CVFM last layers stay zero, the rest PyTorch-style."""
        if self.cvfm is not None and any(module is m.last_layer() for m in self.cvfm):
            from transformers import initialization as init

            init.zeros_(module.weight)
            init.zeros_(module.bias)
            return True
        return False

    # --- accounting (pure) ------------------------------------------------------------------------------
    @classmethod
    def feature_grid(cls, config, tile_size):
        p = config.patch()
        return int(tile_size[0]) // p, int(tile_size[1]) // p

    @classmethod
    def output_dim(cls, config) -> int:
        return int(config.hf_config.get("hidden_size", 768))

    @classmethod
    def conv_size(cls, config, size) -> tuple[int, int]:
        """(W, H) of the ConvNeXt input for a (W, H) canvas or tile."""
        s = config.scale()
        return int(round(size[0] * s)), int(round(size[1] * s))

    @classmethod
    def flops(cls, config, tile_size, all_layers: bool = False) -> dict[str, int]:
        """Analytic FLOPs (2 x MACs) of one tile of (W, H) px: the ViT (:meth:`CLIPEncoder.flops`), the ConvNeXt over
        this tile's share of the canvas (its stages run, at :meth:`conv_size`; exact per tile, as every conv's cost
        is proportional to its area) and the CVFMs. Resizing, norms, GELU and pooling are not counted."""
        clip_cfg = CLIPEncoder.Config(hf_config=config.hf_config, select_layer=config.select_layer)
        vit = CLIPEncoder.flops(clip_cfg, tile_size, all_layers=all_layers)["total"]
        out = {"vit": vit, "convnext": 0, "cvfm": 0}
        plan = config.plan()
        if plan:
            cc = config.conv_config()
            conv = ConvNeXtEncoder.flops(cc, cls.conv_size(config, tile_size))
            last = max(s for _, s in plan)
            out["convnext"] = conv["stem"] + sum(conv[f"stage{k}"] for k in range(1, last + 1))
            gw, gh = cls.feature_grid(config, tile_size)
            c = cls.output_dim(config)
            for _, stage in plan:
                f = max(round(config.factor(stage)), 1)
                out["cvfm"] += cvfm_flops(config.fusion, config.align, gw * gh, cc.hidden_sizes[stage - 1], c, f * f,
                                          config.mlp_depth)
        out["total"] = out["vit"] + out["convnext"] + out["cvfm"]
        return out

    # --- the ConvNeXt input ---------------------------------------------------------------------------------
    def conv_jobs(self, pixel_values: torch.Tensor, layouts=None) -> list[ConvJob]:
        """The ConvNeXt passes for a flat tile batch: per image, its local tiles re-assembled into the canvas
        (``layout.grid``, row-major) and resized; every other tile (the overview) alone, resized."""
        cfg = self.config
        n, _, th, tw = pixel_values.shape
        if layouts is None:  # no layout: every tile is its own "image"
            layouts_tiles = [(["overview"], [i], (0, 0)) for i in range(n)]
        else:
            layouts_tiles, start = [], 0
            for lay in layouts:
                idx = list(range(start, start + lay.num_tiles))
                layouts_tiles.append((list(lay.roles), idx, tuple(lay.grid)))
                start += lay.num_tiles
            if start != n:
                raise LoupeError(f"hybrid: {n} tiles but the layouts hold {start}")
        jobs = []
        for roles, idx, (cols, rows) in layouts_tiles:
            local = [i for r, i in zip(roles, idx) if r == "local"]
            for r, i in zip(roles, idx):
                if r != "local" and cfg.conv_overview:
                    jobs.append(ConvJob(self._resize(pixel_values[i : i + 1])[0], [i], (1, 1)))
            if local:
                if cols * rows != len(local):
                    raise LoupeError(f"hybrid: {len(local)} local tiles do not fill the grid {cols}x{rows}")
                t = pixel_values[local]  # (rows*cols, 3, th, tw) -> (3, rows*th, cols*tw)
                canvas = t.reshape(rows, cols, 3, th, tw).permute(2, 0, 3, 1, 4).reshape(1, 3, rows * th, cols * tw)
                jobs.append(ConvJob(self._resize(canvas)[0], local, (cols, rows)))
        return jobs

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        w, h = self.conv_size(self.config, (x.shape[-1], x.shape[-2]))
        if (h, w) == tuple(x.shape[-2:]):
            return x
        mode = self.config.conv_resize
        aa = self.config.conv_antialias and mode in ("bicubic", "bilinear")
        kw = {"align_corners": False} if mode in ("bicubic", "bilinear") else {}
        return F.interpolate(x.float(), size=(h, w), mode=mode, antialias=aa, **kw).to(x.dtype)

    def conv_stage_maps(self, images: torch.Tensor, last_stage: int) -> dict[int, torch.Tensor]:
        """(B, 3, H, W) ConvNeXt input -> {stage k: (B, C_k, H_k, W_k)} for k = 1..last_stage."""
        cn = self.conv_branch.convnext
        x = cn.embeddings(images.to(self.conv_branch.dtype))
        out = {}
        for k, stage in enumerate(cn.encoder.stages[:last_stage], 1):
            x = stage(x)
            out[k] = x
        return out

    def conv_regions(self, jobs: list[ConvJob], n_tiles: int):
        """{stage: (N, C_k, gh*f, gw*f)} each tile's block of its pass, and the (N,) mask of tiles covered."""
        stages = sorted({s for _, s in self.interactions})
        groups: dict[tuple, list[ConvJob]] = {}
        for job in jobs:  # one batched ConvNeXt pass per distinct input size
            groups.setdefault(tuple(job.image.shape), []).append(job)
        blocks: dict[int, list[torch.Tensor]] = {s: [] for s in stages}
        ids: list[int] = []
        for group in groups.values():
            cols, rows = group[0].grid
            if any(tuple(j.grid) != (cols, rows) or len(j.tiles) != cols * rows for j in group):
                raise LoupeError("hybrid: ConvNeXt jobs of one input size must share one full grid")
            maps = self.conv_stage_maps(torch.stack([j.image for j in group]), max(stages))
            for s in stages:  # (B, C, rows*bh, cols*bw) -> (B*rows*cols, C, bh, bw), tiles row-major: one view op
                m = maps[s]
                b, c, h, w = m.shape
                bh, bw = h // rows, w // cols
                if (bh * rows, bw * cols) != (h, w) or bh < 1 or bw < 1:
                    raise LoupeError(f"hybrid: stage {s} map {(h, w)} does not split into a {rows}x{cols} tile grid")
                blocks[s].append(m.reshape(b, c, rows, bh, cols, bw).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, bh, bw))
            ids += [i for j in group for i in j.tiles]
        if len(set(ids)) != len(ids) or any(not 0 <= i < n_tiles for i in ids):
            raise LoupeError(f"hybrid: ConvNeXt jobs cover tiles {sorted(ids)} of {n_tiles} (each at most once)")
        covered = torch.zeros(n_tiles, dtype=torch.bool)
        covered[ids] = True
        if not ids:
            return {s: None for s in stages}, covered
        order = torch.tensor(sorted(range(len(ids)), key=ids.__getitem__))  # -> tile order
        out = {}
        for s in stages:
            if len({tuple(t.shape[1:]) for t in blocks[s]}) > 1:
                raise LoupeError(f"hybrid: stage {s} tile regions differ in size {[tuple(t.shape) for t in blocks[s]]}")
            cat = torch.cat(blocks[s]) if len(blocks[s]) > 1 else blocks[s][0]
            out[s] = cat.index_select(0, order.to(cat.device))
        return out, covered

    # --- forward ----------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.embeddings.patch_embedding.weight.dtype

    def forward(self, pixel_values: torch.Tensor, layouts=None, jobs: list[ConvJob] | None = None) -> torch.Tensor:
        """(N, 3, t, t) tiles (+ layouts) -> (N, t/p, t/p, C). ``jobs``: ConvNeXt inputs to use instead of
        :meth:`conv_jobs` (e.g. a perturbed canvas, in tests)."""
        vm, p = self.vision_model, self.config.patch()
        n, _, h, w = pixel_values.shape
        gh, gw = h // p, w // p
        regions, idx = {}, None
        if self.interactions:
            jobs = self.conv_jobs(pixel_values, layouts) if jobs is None else jobs
            regions, covered = self.conv_regions(jobs, n)
            idx = None if bool(covered.all()) else covered.nonzero().flatten().to(pixel_values.device)
        size = vm.config.image_size
        x = vm.embeddings(pixel_values.to(self.dtype), interpolate_pos_encoding=(h, w) != (size, size))
        x = vm.pre_layrnorm(x)
        x = self._fuse(x, 0, regions, idx, (gh, gw))
        for i, layer in enumerate(vm.encoder.layers[: self.num_layers_run], 1):
            x = layer(x, None)
            x = self._fuse(x, i, regions, idx, (gh, gw))
        return x[:, 1:].reshape(n, gh, gw, x.shape[-1])

    def _fuse(self, x, block: int, regions, idx, grid):
        for m, (b, stage) in zip(self.cvfm or (), self.interactions):
            if b != block or regions.get(stage) is None:
                continue
            conv = regions[stage].to(x.device)
            if idx is None:
                x = m(x, conv, grid)
            else:  # some tiles (the overview with conv_overview=False) stay plain CLIP
                x = x.index_copy(0, idx, m(x.index_select(0, idx), conv, grid))
        return x

    # --- weights ----------------------------------------------------------------------------------------------
    def load_pretrained(self, path: str) -> None:
        """A folder with ``clip/`` (a Hugging Face CLIP/CLIPVision folder) and/or ``convnext/`` (an HF ConvNeXt
        folder, or an open_clip/timm/HF checkpoint file or folder: :func:`loupe.encoders.convnext.read_state_dict`),
        or a CLIP folder alone (the ConvNeXt then keeps its initialisation; see :meth:`load_convnext`)."""
        p = Path(path)
        if not p.exists():
            raise LoupeError(f"vision tower folder not found: {p}")
        if (p / "clip").exists() or (p / "convnext").exists():
            if (p / "clip").exists():
                self.load_clip(p / "clip")
            if (p / "convnext").exists():
                self.load_convnext(p / "convnext")
            return
        self.load_clip(p)

    def load_clip(self, path) -> None:
        """Strict load of a local HF CLIP folder into the ViT (the ``clip`` encoder's loader, same module)."""
        CLIPEncoder.load_pretrained(self, str(path))  # uses only ``self.vision_model``

    def load_convnext(self, path):
        """Strict load of the ConvNeXt branch (HF or open_clip/timm names; ``ConvNeXtEncoder.load_pretrained``)."""
        if self.conv_branch is None:
            raise LoupeError("hybrid: fusion='none' has no ConvNeXt branch to load")
        return self.conv_branch.load_pretrained(str(path))
