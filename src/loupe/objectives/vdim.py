"""``vdim``: LLaVA-UHD v2's VDIM pre-training, the multi-level reconstruction (MLR) loss, image-only.

Zhang et al., "LLaVA-UHD v2" (arXiv 2412.13871), Sec. 3.2 eq. 2 ("Optimizing VDIM") and Sec. 4.1; official
``thunlp/LLaVA-UHD`` branch ``LLaVA-UHD-v2``: ``featup/train_vdim_upsampler.py`` (``JBUFeatUp.training_step``)
with ``featup/configs/vdim_upsampler.yaml`` (the defaults of :class:`VdimObjective.Config`), the loss pieces
from FeatUp (Fu et al., ICLR 2024; ``featup/downsamplers.py`` ``AttentionDownsampler``, ``featup/losses.py``
``SampledCRFLoss``).
Per batch of square crops (B, 3, R, R), with the model's own frozen vision tower as the teacher (layer -2,
CLS dropped, an (R/14)^2 map, ``is_norm False``):

1. F1 = teacher(img); (F2, F4) = ``upsampler.forward_stageloss(F1, img)`` (F2 detached before ``up2``);
   both bilinearly resized to R x R;
2. for each of ``n_jitters`` (2): jitter (reflect pad <= 30, zoom <= 2 with prob. .5, crop, flip with prob. .5;
   FeatUp ``sample_transform`` / ``apply_jitter``) the image and both hi-res maps alike; teacher(jittered image);
   a random 30-d projection of the channels (columns unit-norm); :class:`AttentionDownsampler` (kernel 14 = the
   patch, final size R/14, Gaussian-blurred input, ``downsampler`` for 4x, ``downsampler_2x`` for 2x) brings each
   level back to the teacher grid; loss per level = mean(mse / (2 s^2) + log s) / n_jitters with s = ``ScaleNet``
   (Conv1x1(C, 1), s = exp(net + .1)) of the jittered teacher map; plus ``crf_weight`` (0.001) x the sampled CRF
   loss on the first jitter (:func:`crf_loss`); total = L_4x + L_2x (the MLR loss);
3. NAdam (the recipe's optimizer, lr 1e-3), gradient norm clipped to 1e-4 for the first 10 steps only.

The down-samplers and scale nets train with the upsampler and are dropped afterwards (the official loader strips
``scale_net*`` / ``downsampler*``); only ``connector.upsampler.*`` (the recipe's ``parts``) is kept in the saved model.

Fidelity traps, [IMPORTANT]: the official crops are resized with NEAREST (shorter side -> R), centre-cropped and
normalised with **ImageNet** statistics although the MLLM feeds CLIP-normalised pixels (``normalize: imagenet``
default, ``clip`` as an option); the official down-sampler applies its attention dropout mask even in eval (here:
training only); the CRF's guidance is the un-jittered image while its features are jittered (kept).
Single process (no DDP), no mid-stage resume (no checkpoints): a rerun starts the stage over.

Recipe::

    - name: vdim
      objective: {name: vdim, n_jitters: 2, max_pad: 30, max_zoom: 2, projection: 30, crf_weight: 0.001}
      data: {path: cocostuff/train2017.jsonl, image_root: cocostuff}   # the first image of each record
      parts: {connector: {lr: 1.0e-3, only: ['connector\\.upsampler\\.']}}
      optimizer: nadam
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import LoupeError
from ..images import load_image
from ..registry import OBJECTIVES
from ..validation import bounded
from .base import Objective, StageJob, StageResult

log = logging.getLogger("loupe.train")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def gaussian_blur(x: torch.Tensor, size: int = 5, sigma: float = 1.0) -> torch.Tensor:
    """kornia ``gaussian_blur2d(x, size, (sigma, sigma))``: separable, normalised, reflect border."""
    t = torch.arange(size, dtype=x.dtype, device=x.device) - size // 2
    k = torch.exp(-t.square() / (2 * sigma ** 2))
    k = k / k.sum()
    r, (h, w) = size // 2, x.shape[2:]
    x = F.pad(x, [r, r, r, r], mode="reflect")
    x = sum(k[i] * x[..., i:i + w] for i in range(size))  # shifted sums: much faster than a depthwise conv on CPU
    return sum(k[i] * x[..., i:i + h, :] for i in range(size))


class AttentionDownsampler(nn.Module):
    """FeatUp ``AttentionDownsampler(dim, kernel_size, final_size, blur_attn=True)``: (B, C, H, W) -> (B, C, f, f)."""

    def __init__(self, dim: int, kernel_size: int, final_size: int, blur_attn: bool = True):
        super().__init__()
        self.kernel_size, self.final_size, self.blur_attn = kernel_size, final_size, blur_attn
        self.attention_net = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, 1))
        k = kernel_size
        self.w = nn.Parameter(torch.ones(k, k) + 0.01 * torch.randn(k, k))
        self.b = nn.Parameter(torch.zeros(k, k) + 0.01 * torch.randn(k, k))

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        b, c, h, w = hr.shape
        x = gaussian_blur(hr) if self.blur_attn else hr
        stride = (h - self.kernel_size) // max(self.final_size - 1, 1)
        patches = F.unfold(x, self.kernel_size, stride=stride).reshape(
            b, c, self.kernel_size ** 2, self.final_size, self.final_size * int(w / h)).permute(0, 3, 4, 2, 1)
        logits = self.attention_net(patches).squeeze(-1)  # (b, f, f, k*k)
        if self.training:
            logits = logits * (torch.rand(*logits.shape[:3], 1, device=logits.device) > 0.2)
        attn = F.softmax(logits * self.w.flatten() + self.b.flatten(), dim=-1)
        return torch.einsum("bhwpc,bhwp->bchw", patches, attn)


class ScaleNet(nn.Module):
    """Predicted uncertainty: s = exp(Conv1x1(C, 1)(x) + .1), clamped >= 1e-4 (weights scaled by .1 at init)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Conv2d(dim, 1, 1)
        with torch.no_grad():
            self.net.weight.mul_(0.1)
            self.net.bias.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.net(x) + 0.1).clamp_min(1e-4)


def crf_loss(guidance, feats, n_samples=1000, alpha=0.1, beta=0.15, gamma=0.005, w1=10.0, w2=3.0, shift=0.0):
    """FeatUp ``SampledCRFLoss`` (the official weights): pairwise feature differences of random pixels weighted by
    an appearance + smoothness kernel."""
    h, w = guidance.shape[2:]
    coords = torch.stack([torch.randint(0, h, (n_samples,)), torch.randint(0, w, (n_samples,))]).to(feats.device)
    norm = coords / torch.tensor([h, w], device=feats.device).unsqueeze(-1)
    g = guidance[:, :, coords[0], coords[1]]
    cd = (norm.unsqueeze(-1) - norm.unsqueeze(-2)).square().sum(0).unsqueeze(0)
    gd = (g.unsqueeze(-1) - g.unsqueeze(-2)).square().sum(1)
    sim = w1 * torch.exp(-cd / (2 * alpha) - gd / (2 * beta)) + w2 * torch.exp(-cd / (2 * gamma)) - shift
    f = feats[:, :, coords[0], coords[1]]  # (B, C, n)
    sq = f.square().sum(1)  # |f_i - f_j|^2 as |f_i|^2 + |f_j|^2 - 2 f_i.f_j: no (B, C, n, n) tensor
    fd = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * torch.einsum("bcn,bcm->bnm", f, f)).clamp_min(0)
    return (fd * sim).mean()


def sample_jitter(max_pad: int, max_zoom: float, h: int, w: int) -> dict:
    flip = random.random() > 0.5
    zoom = random.random() * (max_zoom - 1) + 1 if random.random() > 0.5 else 1.0
    return {"x": random.randrange(int((h + 2 * max_pad) * zoom) - h + 1),
            "y": random.randrange(int((w + 2 * max_pad) * zoom) - w + 1), "zoom": zoom, "flip": flip}


def apply_jitter(img: torch.Tensor, max_pad: int, t: dict) -> torch.Tensor:
    h, w = img.shape[2:]
    x = F.pad(img, [max_pad] * 4, mode="reflect")
    if t["zoom"] > 1.0:
        x = F.interpolate(x, scale_factor=t["zoom"], mode="bilinear")
    x = x[:, :, t["x"]: h + t["x"], t["y"]: w + t["y"]]
    return torch.flip(x, [3]) if t["flip"] else x


class MLRLoss(nn.Module):
    """The MLR objective around a model's frozen vision tower and its Hiwin connector's ``upsampler``."""

    def __init__(self, model, n_jitters: int = 2, max_pad: int = 30, max_zoom: float = 2.0, projection: int = 30,
                 crf_weight: float = 0.001, crf_samples: int = 1000):
        super().__init__()
        up = getattr(model.connector, "upsampler", None)
        if up is None or getattr(up, "top", 0) != 4:
            raise LoupeError("objective vdim needs a connector with a 4x VDIM upsampler (hiwin, mask & 4)")
        self.refs = (model, up)  # not submodules: their weights stay the model's; this module owns the aux nets
        dim, cfg = model.vision_tower.out_dim, model.vision_tower.config
        p, res = cfg.hf_config.get("patch_size", 14), cfg.hf_config.get("image_size", 336)
        self.resolution, final = res, res // p
        self.downsampler, self.downsampler_2x = (AttentionDownsampler(dim, p, final) for _ in range(2))
        self.scale_net, self.scale_net_2x = ScaleNet(dim), ScaleNet(dim)
        self.n_jitters, self.max_pad, self.max_zoom = n_jitters, max_pad, max_zoom
        self.projection, self.crf_weight, self.crf_samples = projection, crf_weight, crf_samples

    @torch.no_grad()
    def teacher(self, img: torch.Tensor) -> torch.Tensor:
        return self.refs[0].vision_tower(img).permute(0, 3, 1, 2).float()  # (B, C, h, w)

    def _level(self, jit, lr_jit, proj, down, scale_net):
        down_jit = torch.einsum("bchw,bcd->bdhw", down(jit), proj)
        s = scale_net(lr_jit)
        mse = (down_jit - torch.einsum("bchw,bcd->bdhw", lr_jit, proj)).square()
        return (mse / (2 * s ** 2) + s.log()).mean() / self.n_jitters

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        lr = self.teacher(img)
        f2, f4 = self.refs[1].forward_stageloss(lr, img)
        f2 = F.interpolate(f2.float(), img.shape[2:], mode="bilinear")
        f4 = F.interpolate(f4.float(), img.shape[2:], mode="bilinear")
        out = {k: img.new_zeros(()) for k in ("rec_4x", "rec_2x", "crf")}
        for i in range(self.n_jitters):
            t = sample_jitter(self.max_pad, self.max_zoom, *img.shape[2:])
            lr_jit = self.teacher(apply_jitter(img, self.max_pad, t))
            proj = torch.randn(lr.shape[0], lr.shape[1], self.projection, device=lr.device)
            proj = proj / proj.square().sum(1, keepdim=True).sqrt()
            j4, j2 = apply_jitter(f4, self.max_pad, t), apply_jitter(f2, self.max_pad, t)
            out["rec_4x"] = out["rec_4x"] + self._level(j4, lr_jit, proj, self.downsampler, self.scale_net)
            out["rec_2x"] = out["rec_2x"] + self._level(j2, lr_jit, proj, self.downsampler_2x, self.scale_net_2x)
            if self.crf_weight > 0 and i == 0:
                p4, p2 = (torch.einsum("bchw,bcd->bdhw", j, proj) for j in (j4, j2))
                out["crf"] = crf_loss(img, p4, self.crf_samples) + crf_loss(img, p2, self.crf_samples)
        out["mlr"] = out["rec_4x"] + out["rec_2x"]
        out["loss"] = out["mlr"] + self.crf_weight * out["crf"]
        return out


def load_crop(path, resolution: int, normalize: str = "imagenet") -> torch.Tensor:
    """Official ``get_transform(res, False, "center")``: NEAREST resize of the shorter side, centre crop, normalise."""
    img = load_image(path)
    w, h = img.size
    s = resolution / min(w, h)
    img = img.resize((max(resolution, round(w * s)), max(resolution, round(h * s))), Image.NEAREST)
    w, h = img.size
    left, top = int(round((w - resolution) / 2.0)), int(round((h - resolution) / 2.0))
    img = img.crop((left, top, left + resolution, top + resolution))
    from ..encoders.clip import CLIP_MEAN, CLIP_STD

    mean, std = IMAGENET if normalize == "imagenet" else (CLIP_MEAN, CLIP_STD)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def image_paths(data_path: Path, image_root: Path | None) -> list[Path]:
    """Images of a LLaVA JSON/JSONL file (the first image of every record that has one)."""
    from ..data.llava_format import read_records

    records, _ = read_records(data_path)
    root = image_root or data_path.parent
    out = []
    for _, _, rec in records:
        img = rec.get("image") if isinstance(rec, dict) else None
        img = img[0] if isinstance(img, list) and img else img
        if isinstance(img, str):
            out.append(Path(img) if Path(img).is_absolute() else root / img)
    if not out:
        raise LoupeError(f"no image in {data_path}: objective vdim reads the 'image' field of each record")
    return out


@OBJECTIVES.register("vdim")
class VdimObjective(Objective):
    """Trains the connector's VDIM up-sampler (the stage's ``parts``) with :class:`MLRLoss` on the first image
    of every record of the stage's data; one process, its own small loop (no Trainer: the auxiliary
    down-samplers and scale nets train with the up-sampler but are not part of the model)."""

    @dataclass
    class Config:
        """Defaults: the official ``featup/configs/vdim_upsampler.yaml``."""

        n_jitters: int = bounded(2, min=1)
        max_pad: int = bounded(30, min=0)
        max_zoom: float = bounded(2.0, min=1.0)
        projection: int = bounded(30, min=1)  # random projection's output channels
        crf_weight: float = bounded(0.001, min=0.0)
        crf_samples: int = bounded(1000, min=2)  # pixels sampled by the CRF loss
        normalize: Literal["imagenet", "clip"] = "imagenet"  # the crops' statistics (official: imagenet)

    def check_stage(self, stage) -> None:
        if stage.lora is not None:
            raise LoupeError("objective vdim trains the connector's up-sampler only: remove lora from this stage")

    def train(self, job: StageJob) -> StageResult:
        from ..training.engine import batch_split, resolve_precision

        stage, model, cfg = job.stage, job.model, self.config
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device).train()
        mlr = MLRLoss(model, n_jitters=cfg.n_jitters, max_pad=cfg.max_pad, max_zoom=cfg.max_zoom,
                      projection=cfg.projection, crf_weight=cfg.crf_weight,
                      crf_samples=cfg.crf_samples).to(device).train()
        paths = image_paths(job.data_path, job.image_root)
        per_device, accum = batch_split(stage.global_batch_size, stage.per_device_batch_size, 1)
        steps = stage.max_steps or max(1, int(stage.epochs * len(paths)) // stage.global_batch_size)
        params = [p for p in model.parameters() if p.requires_grad] + list(mlr.parameters())
        opt_cls = {"nadam": torch.optim.NAdam, "sgd": torch.optim.SGD}.get(stage.optimizer, torch.optim.AdamW)
        decay = {} if opt_cls is torch.optim.SGD else {"weight_decay": stage.weight_decay}
        opt = opt_cls(params, lr=stage.max_lr, **decay)
        bf16 = resolve_precision(stage.precision) == "bf16"
        g = torch.Generator().manual_seed(job.recipe.seed)
        history, order = [], []
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            logs: dict[str, float] = {}
            for _ in range(accum):
                if len(order) < per_device:
                    order += torch.randperm(len(paths), generator=g).tolist()
                batch = torch.stack([load_crop(paths[order.pop(0)], mlr.resolution, cfg.normalize)
                                     for _ in range(per_device)])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    losses = mlr(batch.to(device))
                (losses["loss"] / accum).backward()
                for key, v in losses.items():
                    logs[key] = logs.get(key, 0.0) + float(v.detach()) / accum
            if step < 10:  # official: clip_gradients(0.0001) for the first 10 steps only
                torch.nn.utils.clip_grad_norm_(params, 1e-4)
            opt.step()
            history.append({"step": step + 1, **{key: round(v, 6) for key, v in logs.items()}})
            if (step + 1) % stage.logging_steps == 0:
                log.info("vdim step %d/%d: %s", step + 1, steps, history[-1])

        def save(folder: Path) -> None:
            model.save_pretrained(str(folder))
            job.base_processor.save_pretrained(str(folder))

        return StageResult(global_step=steps, train_loss=history[-1]["loss"], log_history=history, save=save,
                           steps_run=steps)
