"""VDIM — LLaVA-UHD v2's Visual Detail Injection Module: FeatUp's joint-bilateral up-sampler stack, pure torch.

Paper §3.2 (eq. 1): each level doubles the previous one's resolution, guided by the image. Official code: FeatUp's
``JBULearnedRange`` / ``JBU4xStack`` / ``JBU2xStack`` in ``featup/upsamplers.py`` of thunlp/LLaVA-UHD (branch
``LLaVA-UHD-v2``), held by the Hiwin projector as ``mm_projector.upsampler.upsampler``. Keys here:
``up1.*``, ``up2.*``, ``fixup_proj.1.*`` (same tails as the official ones, see :mod:`loupe.convert.llava_uhd_v2`).

One :class:`JBULearnedRange` stage, source (B, C, h, w) and guidance G (B, 3, H, W) = the slice pixels
average-pooled (``adaptive_avg_pool2d``) to the target (H, W) = (2h, 2w):

1. range kernel: P = ``range_proj``(G) (Conv1x1(3,32)-GELU-Dropout2d(.1)-Conv1x1(32,32)), reflect-padded by 3 and
   unfolded 7x7; softmax over the 49 neighbours of ``exp(range_temp).clamp(1e-4, 1e4) * <P_nb, P_centre>``;
2. spatial kernel ``exp(-(x^2 + y^2) / (2 sigma^2))`` on linspace(-1, 1, 7)^2, ``sigma_spatial`` learnable;
3. K = range * spatial, renormalised over the 49 taps (clamp 1e-7); K += 0.1 * ``fixup_proj``([K, G])
   (Conv1x1(52,49)-GELU-Dropout2d(.1)-Conv1x1(49,49));
4. out[b, c, y, x] = sum_ij pad[b, c, y+i, x+j] K[b, i*7+j, y, x] with pad = reflect-pad-3 of the source
   bicubically up-sampled to (H, W) (``align_corners=False``): the official CUDA ``AdaptiveConv``, here
   ``F.unfold`` + einsum in float32 (:func:`adaptive_conv`, chunked over channels to bound memory).

:class:`VDIM` (``JBU4xStack``, or ``JBU2xStack`` when 4x is not needed): F2 = up1(F1), F4' = up2(F2),
F4 = F4' + 0.1 ``fixup_proj``(F4') with ``fixup_proj`` = Dropout2d(.2) + Conv1x1(C, C); F2 keeps no fix-up (with the
2x stack, F2 gets it). Levels (the inverse semantic pyramid): ``feature_scale_mask`` bit 1 = 1x (the ViT map), 2 =
2x, 4 = 4x; the official scripts pass 5 ({1x, 4x}, 2x computed and discarded), the code default is 7. The 8x
stack (bit 8) is not built. Shapes for a 24x24 slice: F1 24^2, F2 48^2, F4 96^2, all C = 1024 channels.

Fidelity traps: [IMPORTANT] the official code casts the stack to bf16 and runs ``AdaptiveConv`` in float32; here
the stack runs in the parameters' dtype and the adaptive conv in float32 (cast back after). Kernel tap order is
i*7 + j (``F.unfold``'s). ``forward_stageloss`` (pre-training only) detaches F2 before ``up2``.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LoupeError

LEVELS = (1, 2, 4)
#: the smallest feature map side (patches) a JBU stage takes: its 7x7 reflect padding (3) needs > 3 rows and
#: columns at 2x, so 2; a 1-patch side fails (the official code fails too). Checked at plan time by Hiwin.
MIN_VDIM_GRID = 2


def no_autocast(t: torch.Tensor):
    """A context that turns autocast off on ``t``'s device (a no-op on devices autocast does not know)."""
    return torch.autocast(t.device.type, enabled=False) if t.device.type in ("cpu", "cuda") else nullcontext()


def levels_of(mask: int) -> tuple[int, ...]:
    """ISP levels selected by ``feature_scale_mask`` (bits 1, 2, 4 -> 1x, 2x, 4x)."""
    if not 1 <= mask <= 7:
        raise ValueError(f"feature_scale_mask must be in 1..7 (bits 1=1x, 2=2x, 4=4x; 8x is not built), got {mask}")
    return tuple(lv for lv in LEVELS if mask & lv)


def adaptive_conv(padded: torch.Tensor, kernel: torch.Tensor, max_elements: int = 1 << 26) -> torch.Tensor:
    """Per-pixel 2-D filter: (B, C, H+d-1, W+d-1) source, (B, d*d, H, W) kernels -> (B, C, H, W).

    ``out[b, c, y, x] = sum_{i,j} padded[b, c, y+i, x+j] * kernel[b, i*d+j, y, x]`` (FeatUp ``AdaptiveConv``)."""
    b, c, hp, wp = padded.shape
    k2 = kernel.shape[1]
    d = int(round(k2 ** 0.5))
    h, w = hp - d + 1, wp - d + 1
    k = kernel.reshape(b, k2, h * w)
    step = max(1, max_elements // max(b * k2 * h * w, 1))
    outs = [torch.einsum("bckl,bkl->bcl", F.unfold(padded[:, c0:c0 + step], d).reshape(b, -1, k2, h * w), k)
            for c0 in range(0, c, step)]
    return torch.cat(outs, 1).reshape(b, c, h, w)


class JBULearnedRange(nn.Module):
    """One guided 2x stage (FeatUp ``JBULearnedRange(guidance_dim=3, key_dim=32, radius=3)``)."""

    def __init__(self, guidance_dim: int = 3, key_dim: int = 32, radius: int = 3):
        super().__init__()
        self.radius, self.diameter, self.key_dim = radius, 2 * radius + 1, key_dim
        taps = self.diameter ** 2
        self.range_temp = nn.Parameter(torch.tensor(0.0))
        self.range_proj = nn.Sequential(nn.Conv2d(guidance_dim, key_dim, 1), nn.GELU(), nn.Dropout2d(0.1),
                                        nn.Conv2d(key_dim, key_dim, 1))
        self.fixup_proj = nn.Sequential(nn.Conv2d(guidance_dim + taps, taps, 1), nn.GELU(), nn.Dropout2d(0.1),
                                        nn.Conv2d(taps, taps, 1))
        self.sigma_spatial = nn.Parameter(torch.tensor(1.0))

    def range_kernel(self, guidance: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 49, H, W) softmax weights."""
        b, _, h, w = guidance.shape
        p = self.range_proj(guidance)
        nb = F.unfold(F.pad(p, [self.radius] * 4, mode="reflect"), self.diameter)
        nb = nb.reshape(b, self.key_dim, self.diameter ** 2, h, w)
        temp = self.range_temp.exp().clamp_min(1e-4).clamp_max(1e4)
        return F.softmax(temp * torch.einsum("bcphw,bchw->bphw", nb, p), dim=1)

    def spatial_kernel(self, device=None, dtype=None) -> torch.Tensor:
        """(1, 49, 1, 1) Gaussian of the tap offsets on linspace(-1, 1, 7)^2."""
        d = torch.linspace(-1, 1, self.diameter, device=device, dtype=dtype)
        y, x = torch.meshgrid(d, d, indexing="ij")
        return torch.exp(-(x.square() + y.square()) / (2 * self.sigma_spatial ** 2)).reshape(1, -1, 1, 1)

    def forward(self, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """source (B, C, h, w), guidance (B, 3, H, W) -> (B, C, H, W)."""
        _, _, h, w = guidance.shape
        kernel = self.range_kernel(guidance) * self.spatial_kernel(guidance.device, guidance.dtype)
        kernel = kernel / kernel.sum(1, keepdim=True).clamp(1e-7)
        fix_dtype = self.fixup_proj[0].weight.dtype
        kernel = kernel + 0.1 * self.fixup_proj(torch.cat([kernel, guidance], 1).to(fix_dtype)).to(kernel.dtype)
        hr = F.interpolate(source, (h, w), mode="bicubic", align_corners=False)
        padded = F.pad(hr, [self.radius] * 4, mode="reflect")
        with no_autocast(padded):  # float32 as the official CUDA AdaptiveConv, also under bf16 autocast
            return adaptive_conv(padded.float(), kernel.float()).to(source.dtype)


class VDIM(nn.Module):
    """The JBU stack up to ``top`` (2 or 4): ``forward(F1, pixels) -> {1: F1, 2: F2, 4: F4}`` (channels first)."""

    def __init__(self, dim: int, top: int = 4):
        super().__init__()
        if top not in (2, 4):
            raise ValueError(f"VDIM builds the 2x or 4x stack, got {top}x")
        self.top = top
        self.up1 = JBULearnedRange()
        if top == 4:
            self.up2 = JBULearnedRange()
        self.fixup_proj = nn.Sequential(nn.Dropout2d(0.2), nn.Conv2d(dim, dim, 1))

    @staticmethod
    def upsample(source: torch.Tensor, pixels: torch.Tensor, up: JBULearnedRange) -> torch.Tensor:
        _, _, h, w = source.shape
        if min(h, w) < MIN_VDIM_GRID:  # see MIN_VDIM_GRID; Hiwin refuses such layouts at plan time
            raise LoupeError(f"VDIM needs feature maps of at least 2 x 2 patches, got {h} x {w} (extreme aspect?)")
        return up(source, F.adaptive_avg_pool2d(pixels.to(source.dtype), (2 * h, 2 * w)))

    def fixup(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.fixup_proj(x)

    def forward(self, features: torch.Tensor, pixels: torch.Tensor) -> dict[int, torch.Tensor]:
        """``forward_with_internal_features``: features (B, C, h, w), pixels (B, 3, 14h, 14w) (CLIP-normalised)."""
        f2 = self.upsample(features, pixels, self.up1)
        if self.top == 2:
            return {1: features, 2: self.fixup(f2)}
        return {1: features, 2: f2, 4: self.fixup(self.upsample(f2, pixels, self.up2))}

    def forward_stageloss(self, features: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VDIM pre-training (``JBU4xStack.forward_stageloss``): (F2, F4) with F2 detached before ``up2``."""
        f2 = self.upsample(features, pixels, self.up1)
        return f2, self.fixup(self.upsample(f2.detach(), pixels, self.up2))


def jbu_flops(dim: int, h: int, w: int, key_dim: int = 32, taps: int = 49) -> int:
    """FLOPs (2 x MACs, as FlopCounterMode counts) of one JBU stage producing an (h, w) map of ``dim`` channels:
    the range projection and similarity, the kernel fix-up, the adaptive conv (GELU, softmax, interpolation and
    pooling are not counted)."""
    hw = h * w
    return 2 * hw * (3 * key_dim + key_dim * key_dim + key_dim * taps + (3 + taps) * taps + taps * taps + dim * taps)


def vdim_flops(dim: int, grid_hw: tuple[int, int], top: int = 4) -> int:
    """FLOPs of :class:`VDIM` on one (h, w) feature map: the stages up to ``top`` and the final fix-up conv."""
    h, w = grid_hw
    stages = [(2 * h, 2 * w)] + ([(4 * h, 4 * w)] if top == 4 else [])
    fh, fw = stages[-1]
    return sum(jbu_flops(dim, a, b) for a, b in stages) + 2 * fh * fw * dim * dim
