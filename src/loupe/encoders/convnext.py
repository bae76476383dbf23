"""``convnext`` — ConvLLaVA's hierarchical vision encoder: a (five-stage) ConvNeXt, features of the last stage.

Follows ``llava/model/multimodal_encoder/convnext_encoder.py`` of alibaba/conv-llava and the paper
(ConvLLaVA §3.1, "Five-stage ConvNeXt†"). The module is transformers' own ``ConvNextModel``, which builds a
fifth stage natively from ``depths=[3,3,27,3,6], hidden_sizes=[...,3072]`` — exactly the ``ConvNextStage``
(LN + Conv 2x2/2, then 6 blocks) that the official ``add_stage`` appends, with the same key names.

Shapes (ConvLLaVA-1536)::

    pixel_values (N, 3, 1536, 1536) -> stem 4x4/4 (N, 192, 384, 384) -> s1..s5 -> (N, 3072, 24, 24)
    -> returned channels-last (N, 24, 24, 3072); tokens row-major = 576.  Stride 64 (5 stages) / 32 (4).

[IMPORTANT] fidelity traps:
  * No final LayerNorm: the official tower reads ``encoder(...).hidden_states[-1]``; ``ConvNextModel.layernorm``
    (applied only to the pooled vector) is deleted here, and its keys are ignored when loading (the released
    ConvLLaVA towers ship without them).
  * ``select_layer=-2`` follows the official ``layers.pop(-1)``: the last block of the *last configured stage*
    is not run (its weights are kept, as clip.py does, so checkpoints load strictly). The official code pops
    *before* ``add_stage``, i.e. from stage 4 when stage 5 is added fresh; the released scripts all use -1.
  * Mean/std are CLIP's (ConvLLaVA uses ``CLIPImageProcessor``), not ImageNet's. Blocks use LN eps 1e-6
    (hard-coded by HF; the config's ``layer_norm_eps`` only affected the deleted final LN).
  * Odd sizes: every conv floors, so the grid is ``floor(W / stride)`` x ``floor(H / stride)``.

Weights: :meth:`ConvNeXtEncoder.load_pretrained` / :func:`load_state_dict_any` take Hugging Face names
(``embeddings.patch_embeddings``, ``encoder.stages.s.layers.l.dwconv`` ...) or open_clip/timm names (``stem.0``,
``stages.s.blocks.l.conv_dw`` ..., :data:`KEY_MAP`), under any prefix of :data:`PREFIXES`.
Stages absent from a checkpoint (stage 5 of the 4-stage LAION ConvNeXt-L) are initialised fresh with HF's init
(std 0.02, layer scale 1e-6) and reported; any other missing or unexpected key is a :class:`LoupeError`.
Recipes select parts by stage (:meth:`~ConvNeXtEncoder.stage_prefixes`, :meth:`~ConvNeXtEncoder.freeze_before`);
:meth:`~ConvNeXtEncoder.flops` and :meth:`~ConvNeXtEncoder.num_parameters` are the encoder's own accounting.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import ConvNextConfig, ConvNextModel

from ..errors import LoupeError
from ..registry import ENCODERS
from .base import VisionEncoder
from .clip import CLIP_MEAN, CLIP_STD
from ..validation import bounded

log = logging.getLogger(__name__)

#: LAION-CLIP ConvNeXt-L (open_clip ``convnext_large_d_320`` trunk; HF ``LAION-CLIP-ConvNeXt-Large-512``)
CONVNEXT_L = dict(depths=(3, 3, 27, 3), hidden_sizes=(192, 384, 768, 1536))
#: ConvLLaVA's ConvNeXt† (hub ``ConvLLaVA-ConvNeXt-{768,1024,1536}``): ConvNeXt-L + stage 5 (6 blocks, 3072)
CONVNEXT_L_5STAGE = dict(depths=(3, 3, 27, 3, 6), hidden_sizes=(192, 384, 768, 1536, 3072))

#: open_clip/timm name <-> HF ConvNextModel name (``ConvLLaVA/ConvLLaVA-ConvNeXt-*`` keys vs timm's);
#: data, {s} = stage, {b} = block
KEY_MAP = (
    ("stem.0.", "embeddings.patch_embeddings."),
    ("stem.1.", "embeddings.layernorm."),
    ("stages.{s}.downsample.", "encoder.stages.{s}.downsampling_layer."),
    ("stages.{s}.blocks.{b}.conv_dw.", "encoder.stages.{s}.layers.{b}.dwconv."),
    ("stages.{s}.blocks.{b}.norm.", "encoder.stages.{s}.layers.{b}.layernorm."),
    ("stages.{s}.blocks.{b}.mlp.fc1.", "encoder.stages.{s}.layers.{b}.pwconv1."),
    ("stages.{s}.blocks.{b}.mlp.fc2.", "encoder.stages.{s}.layers.{b}.pwconv2."),
    ("stages.{s}.blocks.{b}.gamma", "encoder.stages.{s}.layers.{b}.layer_scale_parameter"),
    ("head.norm.", "layernorm."),  # timm's pre-logits norm == HF's final (pooled) LN: ignored when loading
)


def _rules(pairs) -> tuple:
    """(regex, replacement) rules from (source, target) name templates."""
    def pattern(t):
        p = re.escape(t).replace(re.escape("{s}"), r"(?P<s>\d+)").replace(re.escape("{b}"), r"(?P<b>\d+)")
        return re.compile("^" + p + ("" if t.endswith(".") else "$"))

    return tuple((pattern(a), b.replace("{s}", r"\g<s>").replace("{b}", r"\g<b>")) for a, b in pairs)


TIMM_TO_HF, HF_TO_TIMM = _rules(KEY_MAP), _rules((b, a) for a, b in KEY_MAP)
#: prefixes a tower may sit under (LLaVA / ConvLLaVA checkpoint, open_clip, HF classifier, a Loupe model)
PREFIXES = ("model.vision_tower.vision_tower.", "vision_tower.vision_tower.", "vision_tower.convnext.",
            "visual.trunk.", "trunk.", "convnext.")
#: keys of a tower that are not part of this encoder (final pooled LN, classifier heads): ignored, reported
IGNORED = re.compile(r"^(layernorm\.|classifier\.|head\.)")


def _rename(sd: dict, table) -> dict:
    out = {}
    for k, v in sd.items():
        new = k
        for pat, rep in table:
            new, n = pat.subn(rep, k)
            if n:
                break
        if new in out:
            raise LoupeError(f"two checkpoint keys map to {new!r}")
        if new.endswith(("pwconv1.weight", "pwconv2.weight")) and getattr(v, "ndim", 0) == 4:  # timm conv_mlp
            v = v.flatten(1)
        out[new] = v
    return out


def convert_timm_to_hf(state_dict: dict) -> dict:
    """open_clip/timm ConvNeXt trunk names -> HF ``ConvNextModel`` names (:data:`KEY_MAP`); others pass through."""
    return _rename(state_dict, TIMM_TO_HF)


def convert_hf_to_timm(state_dict: dict) -> dict:
    """The inverse of :func:`convert_timm_to_hf` (for exporting to open_clip/timm)."""
    return _rename(state_dict, HF_TO_TIMM)


@dataclass
class LoadReport:
    naming: str  # "hf" | "timm"
    prefix: str  # the prefix the tower was found under ("" if none)
    loaded: int = 0  # tensors copied
    ignored: list = field(default_factory=list)  # checkpoint keys not used (final LN, heads, outside prefix)
    initialised: list = field(default_factory=list)  # stage names initialised fresh (absent from checkpoint)

    def __str__(self):
        return (f"loaded {self.loaded} tensors ({self.naming} names, prefix {self.prefix!r}); initialised fresh "
                f"(HF init, std 0.02): {self.initialised or 'none'}; ignored {len(self.ignored)} {self.ignored[:3]}")


def match_state_dict(encoder: "ConvNeXtEncoder", state_dict: dict) -> tuple[dict, LoadReport]:
    """Check a checkpoint against ``encoder`` without copying: (HF-named dict for ``encoder.convnext``, report).

    Works on meta tensors. Raises :class:`LoupeError` naming missing, unexpected or mis-shaped keys.
    """
    prefix = next((p for p in PREFIXES if any(k.startswith(p) for k in state_dict)), "")
    outside = [k for k in state_dict if not k.startswith(prefix)]
    sd = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    timm = any(k.startswith(("stem.", "stages.")) for k in sd)
    if timm and any(k.startswith(("embeddings.", "encoder.")) for k in sd):
        raise LoupeError("checkpoint mixes HF (embeddings./encoder.) and timm (stem./stages.) ConvNeXt names")
    if timm:
        sd = convert_timm_to_hf(sd)
    report = LoadReport("timm" if timm else "hf", prefix, ignored=outside + [k for k in sd if IGNORED.match(k)])
    sd = {k: v for k, v in sd.items() if not IGNORED.match(k)}
    mine = encoder.convnext.state_dict()  # trailing stages absent from the checkpoint are initialised fresh:
    unexpected, missing = sorted(set(sd) - set(mine)), sorted(set(mine) - set(sd))
    present = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.stages\.(\d+)\.", k))}
    n_ck, prefixes = (max(present) + 1 if present else 0), encoder.stage_prefixes(root="")
    report.initialised = [f"stage{i + 1}" for i in range(n_ck, len(encoder.config.depths))]
    fresh = tuple(prefixes[n] for n in report.initialised)
    missing = [k for k in missing if not (fresh and k.startswith(fresh))]
    if missing or unexpected:
        if timm:  # name missing keys in the checkpoint's own naming too
            missing = [f"{k} (= {next(iter(convert_hf_to_timm({k: None})))})" for k in missing]
        raise LoupeError(
            f"ConvNeXt checkpoint does not match the configured tower ({report.naming} names, prefix {prefix!r}): "
            f"{len(missing)} missing {missing[:8]}, {len(unexpected)} unexpected {unexpected[:8]}"
        )
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(mine[k].shape)}" for k, v in sd.items()
           if tuple(v.shape) != tuple(mine[k].shape)]
    if bad:
        raise LoupeError(f"ConvNeXt checkpoint shapes do not match the configured tower: {bad[:5]}")
    report.loaded = len(sd)
    return sd, report


def load_state_dict_any(encoder: "ConvNeXtEncoder", state_dict: dict) -> LoadReport:
    """Load a ConvNeXt state dict in HF or open_clip/timm names, strictly; fresh trailing stages get HF init."""
    sd, report = match_state_dict(encoder, state_dict)
    for name in report.initialised:
        encoder.init_stage(name)
    encoder.convnext.load_state_dict(sd, strict=False)  # completeness was checked above
    log.info("ConvNeXt tower: %s", report)
    return report


def read_state_dict(path) -> dict:
    """Tensors of a local HF folder (``*.safetensors`` or ``pytorch_model*.bin``) or of one checkpoint file."""
    p = Path(path)
    if not p.exists():
        raise LoupeError(f"ConvNeXt checkpoint not found: {p}")
    files = [p] if p.is_file() else sorted(p.glob("*.safetensors")) or sorted(p.glob("pytorch_model*.bin"))
    if not files:
        raise LoupeError(f"{p} holds no *.safetensors or pytorch_model*.bin file")
    from safetensors.torch import load_file

    sd = {}
    for f in files:
        safe = f.suffix == ".safetensors"
        obj = load_file(str(f)) if safe else torch.load(str(f), map_location="cpu", weights_only=True)
        sd.update(obj.get("state_dict", obj))  # torch checkpoints may wrap the weights in {"state_dict": ...}
    return sd


@ENCODERS.register("convnext")
class ConvNeXtEncoder(VisionEncoder):
    """Tiles (N, 3, H, W) -> (N, H/stride, W/stride, C_last), stride = patch_size * 2**(stages - 1)."""

    @dataclass
    class Config:
        depths: tuple = bounded(CONVNEXT_L_5STAGE["depths"], min=1)
        hidden_sizes: tuple = bounded(CONVNEXT_L_5STAGE["hidden_sizes"], min=1)
        patch_size: int = bounded(4, min=1)
        layer_scale_init_value: float = bounded(1e-6, min=0.0)
        drop_path_rate: float = bounded(0.0, min=0.0, lt=1.0)
        select_layer: int = -1  # -1: last stage output; -2: without the last block of the last stage (official)
        torch_init: bool = False  # PyTorch-default init (loupe.init) for from-scratch training, not HF's N(0, 0.02)
        image_mean: tuple = bounded(CLIP_MEAN, min=0.0, max=1.0)
        image_std: tuple = bounded(CLIP_STD, gt=0.0)

        def __post_init__(self):
            self.depths, self.hidden_sizes = tuple(self.depths), tuple(self.hidden_sizes)
            if len(self.depths) != len(self.hidden_sizes) or not self.depths:
                raise ValueError(f"depths {self.depths} and hidden_sizes {self.hidden_sizes}: one entry per stage")
            if self.select_layer not in (-1, -2):
                raise ValueError(f"select_layer must be -1 or -2 (the official choices), got {self.select_layer}")

    no_split_modules = ("ConvNextLayer",)

    def __init__(self, config):
        super().__init__(config)
        self.self_init = bool(config.torch_init)  # read by the model's post_init (loupe.init)
        hf = ConvNextConfig(num_stages=len(config.depths), depths=list(config.depths),
                            hidden_sizes=list(config.hidden_sizes), patch_size=config.patch_size,
                            layer_scale_init_value=config.layer_scale_init_value,
                            drop_path_rate=config.drop_path_rate, out_features=[f"stage{len(config.depths)}"])
        self.convnext = ConvNextModel(hf)
        del self.convnext.layernorm  # no final LN (official tower deletes it)

    # --- accounting (pure) ----------------------------------------------------------------------------
    @classmethod
    def stride(cls, config) -> int:
        return config.patch_size * 2 ** (len(config.depths) - 1)

    @classmethod
    def feature_grid(cls, config, tile_size):
        s = cls.stride(config)  # nested floors of the stem and 2x2/2 convs compose to one floor
        return int(tile_size[0]) // s, int(tile_size[1]) // s

    @classmethod
    def output_dim(cls, config) -> int:
        return int(config.hidden_sizes[-1])

    @classmethod
    def flops(cls, config, tile_size, all_layers: bool = False) -> dict[str, int]:
        """Analytic FLOPs (2 x MACs of convs and linears, as FlopCounterMode counts) of one tile of (W, H) px.

        Returns ``{"stem": ..., "stage1": ..., ..., "total": ...}``; LN, GELU, bias and residual adds are
        not counted. Stage i >= 2 includes its 2x2/2 downsampling conv. ``select_layer=-2`` skips a block.
        """
        w, h = int(tile_size[0]) // config.patch_size, int(tile_size[1]) // config.patch_size
        prev, last = config.hidden_sizes[0], len(config.depths) - 1
        out = {"stem": 2 * w * h * prev * 3 * config.patch_size ** 2}
        for i, (d, c) in enumerate(zip(config.depths, config.hidden_sizes)):
            if i > 0:
                w, h = w // 2, h // 2
            d -= i == last and config.select_layer == -2
            down = 2 * w * h * c * prev * 4 if i > 0 else 0  # Conv 2x2/2
            out[f"stage{i + 1}"], prev = down + d * 2 * w * h * (49 * c + 8 * c * c), c  # dw 7x7, C->4C->C
        out["total"] = sum(out.values())
        return out

    @classmethod
    def num_parameters(cls, config) -> int:
        """Analytic parameter count (no final LN), equal to the module's: stem, downsamplings, blocks."""
        hs, c0 = config.hidden_sizes, config.hidden_sizes[0]
        n = (3 * config.patch_size ** 2 + 3) * c0 + sum(2 * p + 4 * p * c + c for p, c in zip(hs, hs[1:]))
        return n + sum(d * (8 * c * c + 58 * c) for d, c in zip(config.depths, hs))  # dw 50c, LN 2c, MLP, gamma

    # --- parts by stage (training recipes select these) ------------------------------------------------
    def stage_modules(self) -> dict[str, nn.Module]:
        """{"stem": embeddings, "stage1": encoder.stages[0], ...}; stage i >= 2 includes its downsampling."""
        mods = {"stem": self.convnext.embeddings}
        mods.update({f"stage{i + 1}": s for i, s in enumerate(self.convnext.encoder.stages)})
        return mods

    def stage_prefixes(self, root: str = "vision_tower.convnext.") -> dict[str, str]:
        """Parameter-name prefixes per stage, as in a Loupe model's ``named_parameters()`` by default."""
        out = {"stem": f"{root}embeddings."}
        out.update({f"stage{i + 1}": f"{root}encoder.stages.{i}." for i in range(len(self.config.depths))})
        return out

    def freeze_before(self, stage: int | str) -> list[str]:
        """Freeze the stem and stages < ``stage`` (1-based), unfreeze the rest; returns the trainable stages.

        ConvLLaVA stage 2 = ``freeze_before(3)`` (official ``--tune_vit_from_layer 2``, 0-based): stages 3-5
        train, including their downsampling layers; stem and stages 1-2 stay frozen.
        """
        names, k = list(self.stage_modules()), str(stage).removeprefix("stage")
        k = int(k) if k.isdigit() else -1
        if not 0 <= k <= len(names):
            raise LoupeError(f"stage must be 0..{len(names)} (1-based; {len(names)} freezes all), got {stage!r}")
        for i, (name, mod) in enumerate(self.stage_modules().items()):
            mod.requires_grad_(i >= k)
        return names[k:]

    @torch.no_grad()
    def init_stage(self, name: str, std: float = 0.02) -> None:
        """HF ConvNeXt init of one stage: conv/linear N(0, std), zero bias, LN (1, 0), layer scale = init value."""
        for m in self.stage_modules()[name].modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, std)
                m.bias.zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
            if getattr(m, "layer_scale_parameter", None) is not None:
                m.layer_scale_parameter.fill_(self.config.layer_scale_init_value)

    # --- forward / weights -----------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.convnext.embeddings.patch_embeddings.weight.dtype

    def forward(self, pixel_values: torch.Tensor, layouts=None) -> torch.Tensor:
        """(N, 3, H, W) -> (N, H // stride, W // stride, C) channels-last, row-major tokens."""
        return self.stage_outputs(pixel_values)[-1]

    def stage_outputs(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's map, channels-last: [(N, H / (p * 2**i), W / (p * 2**i), C_i) for stage i]; the last is
        :meth:`forward`'s output (``select_layer=-2`` drops its last block). Deep supervision reads these (the demo's
        stand-in pretraining, :func:`loupe.demo.pretrain.pretrain_encoder`)."""
        s = self.stride(self.config)
        if min(pixel_values.shape[-2:]) < s:
            raise LoupeError(f"tiles of {tuple(pixel_values.shape[-2:])} px are smaller than the stride {s}")
        x = self.convnext.embeddings(pixel_values.to(self.dtype))
        stages, outs = self.convnext.encoder.stages, []
        for stage in stages[:-1]:
            x = stage(x)
            outs.append(x.permute(0, 2, 3, 1))
        last = stages[-1]
        for layer in last.downsampling_layer:
            x = layer(x)
        for layer in last.layers[: len(last.layers) - (self.config.select_layer == -2)]:
            x = layer(x)
        return outs + [x.permute(0, 2, 3, 1)]

    def load_pretrained(self, path: str) -> LoadReport:
        """Load a local HF ConvNextModel folder (or one open_clip/timm/HF checkpoint file), strictly."""
        return load_state_dict_any(self, read_state_dict(path))
