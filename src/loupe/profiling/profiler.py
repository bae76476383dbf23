"""``profile(preset, sizes)``: visual tokens, parameters, FLOPs per part, KV cache and memory per image size.

Every model is built from its configuration on the ``meta`` device in bf16 (no weights, no memory) and called
there on tensors of the real shapes, through its own methods: ``get_image_features`` (the vision tower and the
connector, split by forward hooks on ``model.vision_tower`` / ``model.connector``) and the language model.
FLOPs are **counted** (FlopCounterMode) and checked against each part's **analytic** ``flops`` (gap > 2%
flagged); activations are **measured** (what autograd saves).
Visual tokens come from :class:`~loupe.geometry.ImageGeometry`, the function the processor uses.

Counting conventions (FLOPs = 2 x multiply-adds; ``*_tmacs`` fields are MACs):

* ``paper`` (C2: prefill, 0 text tokens, last-position logits; C7: C2 without the connector's
  ``nn.MultiheadAttention`` calls): prefill of one image with **0 text tokens**, logits for the **last
  position only**, full **non-causal** attention, **every crop through every ViT layer** at its true size
  (Loupe's ``clip`` skips the unused last block at run time; the papers count it: the blocks it skips are
  added from the encoder's analytic ``flops(all_layers=True)``), and the connector **without its
  ``nn.MultiheadAttention`` calls** (LLaVA-UHD v2's Hiwin: its Table 1 reproduces only without them; no other
  connector has one). This reproduces the LLaVA-UHD v2 paper's Table 1 (§4.2).
* ``full``: everything the model computes in one forward pass with N text tokens (``model(**inputs)``):
  the encoder blocks it runs on the batch the processor builds, the whole connector, the LLM over visual +
  N text tokens with logits at every position, attention counted in full T^2.

``prefill_tflops`` is ``full`` with logits for the last position only (what a generation prefill computes; the
measured latency's achieved FLOP/s use it). FLOPs are per sample (one image); ``batch`` scales memory only. Parts: ``vision`` (encoder), ``connector``,
``llm_layers`` (decoder layers; of which ``llm_attention`` = score and weighted-value matmuls), ``lm_head``.
"""

from __future__ import annotations

from collections import Counter as _Tally
from typing import Iterable, Sequence

import torch
from torch import nn

from ..configuration import LoupeConfig
from ..errors import LoupeError
from ..geometry import ImageGeometry
from . import llm as _llm
from . import memory as _memory
from .anchors import anchor_for, notes_for
from .counting import ActivationMeter, Counter, PeakMeter
from .parts import check, connector_flops, encoder_flops

T = 1e12


def parse_sizes(text: str | Iterable) -> list[tuple[int, int]]:
    """``"336x336,1008x672"`` (W x H) or an iterable of (W, H) / "WxH" -> [(W, H), ...]."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for it in items:
        try:
            w, h = (int(v) for v in it.lower().split("x")) if isinstance(it, str) else (int(it[0]), int(it[1]))
        except (ValueError, TypeError, IndexError):
            raise LoupeError(f"bad image size {it!r}: give WIDTHxHEIGHT, e.g. 1008x672") from None
        if w <= 0 or h <= 0:
            raise LoupeError(f"bad image size {it!r}: both sides must be positive")
        out.append((w, h))
    return out


def _config(preset) -> LoupeConfig:
    if isinstance(preset, LoupeConfig):
        return preset
    from ..builder import build_config

    return build_config(str(preset))


def visual_tokens(preset, size: Sequence[int]) -> int:
    """Visual tokens of an image of (W, H) px: the processor's own count, without building a model."""
    return ImageGeometry.from_config(_config(preset)).num_tokens(tuple(size))


def _pixels(n: int, w: int, h: int) -> torch.Tensor:
    """``n`` meta tiles of (w, h) px in bf16, the dtype the model runs in."""
    return torch.empty(n, 3, h, w, dtype=torch.bfloat16, device="meta")


def build_meta(config: LoupeConfig):
    from ..modeling import LoupeForConditionalGeneration

    with torch.device("meta"):
        model = LoupeForConditionalGeneration(config)
    return model.to(torch.bfloat16).eval()


def parameters(model) -> dict[str, int]:
    lm = model.language_model
    emb, head = lm.get_input_embeddings(), lm.get_output_embeddings()
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    tied = head is not None and head.weight is emb.weight
    head_n = 0 if head is None or tied else head.weight.numel()
    out = {"vision": n(model.vision_tower), "connector": n(model.connector), "llm_embed": emb.weight.numel(),
           "llm_layers": n(lm) - emb.weight.numel() - head_n, "lm_head": head_n}
    out["total"] = n(model)
    return out


class _Profiler:
    """One meta model per configuration, profiled at many image sizes."""

    def __init__(self, config: LoupeConfig):
        self.config = config
        self.name = config.preset or "custom"
        self.model = build_meta(config)
        self.geometry = self.model.geometry
        self.params = parameters(self.model)
        tc = config.text_config
        self.gated = hasattr(getattr(self.model.language_model.model.layers[0], "mlp", None), "gate_proj")
        self.kv_per_token = _llm.kv_bytes_per_token(tc)
        self.mha = [m for m in self.model.connector.modules() if isinstance(m, nn.MultiheadAttention)]

    # --- vision side ------------------------------------------------------------------------------------------
    def vision(self, layout) -> dict:
        """FLOPs, saved activations and peak memory of the vision tower and the connector, measured by calling the
        model's own :meth:`~loupe.modeling.LoupeForConditionalGeneration.get_image_features` on meta tensors of
        the processor's shapes (tiles zero-padded to the largest); forward hooks split each figure between
        ``model.vision_tower`` and ``model.connector``. The ``paper`` vision count (every crop at its true size,
        every block) is the counted tower at the true tile sizes plus the encoder's analytic cost of the blocks
        it skips (``flops(all_layers=True)`` minus ``flops()``)."""
        m = self.model
        vt, parts = m.vision_tower, {"vision": m.vision_tower, "connector": m.connector}
        sizes = [tuple(s) for s in layout.tile_sizes]
        wmax, hmax = max(s[0] for s in sizes), max(s[1] for s in sizes)
        px = _pixels(len(sizes), wmax, hmax)  # the processor's batch: tiles zero-padded to the largest
        image_sizes = torch.tensor([[int(layout.image_size[1]), int(layout.image_size[0])]])
        run = lambda: m.get_image_features(px, image_sizes, image_layouts=[layout])  # noqa: E731
        features: list = []
        keep = vt.register_forward_hook(lambda mod, args, out: features.append(out))
        try:
            with ActivationMeter(m.parameters(), parts=parts) as meter, Counter().parts(parts).exclude(self.mha) as c:
                run()
        finally:
            keep.remove()
        with torch.no_grad(), PeakMeter() as peak:
            run()
        counted_true = c.by_part["vision"]
        if len(set(sizes)) > 1:  # the model pads tiles of different sizes into one batch; the papers do not
            with torch.no_grad(), Counter() as ct:
                for (w, h), k in _Tally(sizes).items():
                    vt(_pixels(k, w, h))
            counted_true = ct.total
        enc_cls, enc_cfg = self.geometry.encoder_cls, self.geometry.encoder_cfg
        skipped = encoder_flops(enc_cls, enc_cfg, sizes, True) - encoder_flops(enc_cls, enc_cfg, sizes, False)
        act = meter.by_part
        feats = features[0]
        return {"paper_vision": counted_true + skipped, "full_vision": c.by_part["vision"],
                "connector": c.by_part["connector"], "connector_excluded": c.excluded,
                "act_vision": act["vision"]["efficient"], "act_connector": act["connector"]["efficient"],
                "attention": act["vision"]["attention"] + act["connector"]["attention"], "peak": peak.peak,
                "features": feats.detach() if isinstance(feats, torch.Tensor) else None}

    # --- language model -----------------------------------------------------------------------------------------
    def llm(self, tokens: int, logits: int, train: bool) -> dict:
        lm = self.model.language_model
        d = self.config.text_config.hidden_size
        x = torch.empty(1, tokens, d, dtype=torch.bfloat16, device="meta")
        meter = ActivationMeter(self.model.parameters()) if train else PeakMeter()
        with torch.set_grad_enabled(train), meter, Counter().exclude([lm.get_output_embeddings()]) as c:
            out = lm(inputs_embeds=x, logits_to_keep=0 if logits >= tokens else logits)
            if train:
                out.logits.float().log_softmax(-1)  # the loss keeps fp32 log-probabilities
        out = {"layers": c.total - c.excluded, "attention": c.attention, "lm_head": c.excluded}
        if train:
            out.update(activations=meter.efficient, attention_matrices=meter.attention)
        else:  # the prefill's working set, KV cache included, plus its input embeddings
            out["peak"] = meter.peak + x.untyped_storage().nbytes()
        return out

    # --- one image size ------------------------------------------------------------------------------------------
    def record(self, size, text_tokens: int, batch: int) -> dict:
        m, geo, cfg = self.model, self.geometry, self.config
        layout = geo.layout(size)
        grids = geo.grids(layout)
        n_vis = geo.num_tokens(layout)
        seq = n_vis + text_tokens
        vis = self.vision(layout)
        llm_f, llm_i = self.llm(seq, seq, True), self.llm(seq, 1, False)  # training forward, inference prefill
        llm_p = self.llm(n_vis, 1, False) if text_tokens else llm_i
        paper = {"vision": vis["paper_vision"], "connector": vis["connector"] - vis["connector_excluded"],
                 "connector_left_out": vis["connector_excluded"], "llm_layers": llm_p["layers"],
                 "llm_attention": llm_p["attention"], "lm_head": llm_p["lm_head"]}
        full = {"vision": vis["full_vision"], "connector": vis["connector"], "connector_left_out": 0,
                "llm_layers": llm_f["layers"], "llm_attention": llm_f["attention"], "lm_head": llm_f["lm_head"]}
        for f in (paper, full):
            f["total"] = f["vision"] + f["connector"] + f["llm_layers"] + f["lm_head"]
        enc_cls, enc_cfg = geo.encoder_cls, geo.encoder_cfg
        tc = cfg.text_config
        a_llm_p, a_llm_f = _llm.flops(tc, n_vis, 1, self.gated), _llm.flops(tc, seq, seq, self.gated)
        tiles = layout.tile_sizes
        a_conn = connector_flops(geo.connector_cls, geo.connector_cfg, layout, grids, m.vision_tower.out_dim,
                                 tc.hidden_size)
        checks = [
            check("vision (paper: all blocks)", encoder_flops(enc_cls, enc_cfg, tiles, True), paper["vision"]),
            check("vision (full: blocks run)", encoder_flops(enc_cls, enc_cfg, tiles, False), full["vision"],
                  "" if len(set(tiles)) == 1 else ": the model runs tiles of different sizes as one padded batch"),
            check("connector", a_conn, full["connector"]),
            check("llm (paper)", a_llm_p["total"], paper["llm_layers"] + paper["lm_head"]),
            check("llm (full)", a_llm_f["total"], full["llm_layers"] + full["lm_head"]),
        ]
        acts = {"vision": vis["act_vision"], "connector": vis["act_connector"], "llm": llm_f["activations"]}
        mem = _memory.estimate(self.params["total"], self.params["connector"], acts,
                               vis["attention"] + llm_f["attention_matrices"], max(vis["peak"], llm_i["peak"]),
                               seq * self.kv_per_token, batch)
        rec = {
            "preset": self.name, "image_size": [int(size[0]), int(size[1])], "visual_tokens": n_vis,
            "text_tokens": text_tokens, "sequence_length": seq, "batch": batch,
            "tiles": layout.num_tiles, "tile_sizes": [list(s) for s in layout.tile_sizes], "grid": list(layout.grid),
            "paper_tflops": paper["total"] / T, "full_tflops": full["total"] / T,
            "prefill_tflops": (full["vision"] + full["connector"] + llm_i["layers"] + llm_i["lm_head"]) / T,
            "paper_tmacs": paper["total"] / T / 2, "full_tmacs": full["total"] / T / 2,
            "params": self.params["total"], "params_by_part": dict(self.params),
            "flops": {"paper": paper, "full": full},
            "kv_cache_bytes_per_token": self.kv_per_token, "memory": mem,
            "checks": checks, "flags": [f"{c['part']}: {c['flag']}" for c in checks if c["flag"]],
            "notes": self.notes(),
        }
        a = anchor_for(self.name, size)
        if a is not None:
            rec["anchor"] = {"paper_tflops": a.paper_tflops, "kind": a.kind, "source": a.source,
                             "deviation": rec["paper_tflops"] / a.paper_tflops - 1}
        from .compare import dem_vs_full

        cmp = None if vis["features"] is None else dem_vs_full(m.connector, layout, vis["features"])
        if cmp is not None:
            rec["dem_vs_full_cross_attention"] = cmp
        return rec

    def notes(self) -> list[str]:
        notes = list(notes_for(self.name))
        vcfg = self.config.vision
        if vcfg.get("name") == "clip" and vcfg.get("select_layer", -2) < 0 and vcfg.get("select_layer") != -1:
            notes.append("paper counts every ViT block on every crop; Loupe's clip skips the block(s) after the "
                         f"selected layer {vcfg.get('select_layer')} at run time (full counts what runs)")
        if self.mha:
            notes.append(f"paper leaves out the connector's {len(self.mha)} nn.MultiheadAttention module(s) (C7)")
        return notes


def profile(preset, sizes, text_tokens: int = 0, batch: int = 1, model_dir: str | None = None,
            latency_reps: int = 5) -> list[dict]:
    """One record per image size (see the module docstring). ``preset``: a preset name or a
    :class:`~loupe.LoupeConfig` (None with ``model_dir``: the saved configuration); ``sizes``:
    ``"336x336,672x672"`` or [(W, H), ...]; ``model_dir``: a saved Loupe folder whose weights are timed on the
    current device (adds ``latency``, the median of ``latency_reps`` runs)."""
    if text_tokens < 0 or batch < 1:
        raise LoupeError(f"text_tokens must be >= 0 and batch >= 1, got {text_tokens} and {batch}")
    sizes = parse_sizes(sizes)
    if preset is None and model_dir is None:
        raise LoupeError("give a preset (or a LoupeConfig), or model_dir")
    if model_dir is not None and preset is None:
        preset = LoupeConfig.from_pretrained(str(model_dir))
    p = _Profiler(_config(preset))
    records = [p.record(s, int(text_tokens), int(batch)) for s in sizes]
    if model_dir is not None:
        from .latency import measure

        for rec, lat in zip(records, measure(model_dir, sizes, text_tokens, batch, reps=latency_reps)):
            lat["achieved_tflops_per_s"] = rec["prefill_tflops"] * batch / lat["latency_s"]
            rec["latency"] = lat
    return records


def profile_many(presets: Sequence, sizes, text_tokens: int = 0, batch: int = 1, model_dir=None) -> list[dict]:
    out = []
    for p in presets or [None]:
        out += profile(p, sizes, text_tokens, batch, model_dir=model_dir)
    return out
