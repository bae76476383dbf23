"""Presets of the main-job demo (``loupe demo``): tiny from-scratch models that learn on 2 CPU cores.

Every arm shares the language model (2 blocks of width 128), the tokenizer and the benchmark's image sizes
(128x128, 160x96, 96x160); each arm keeps its method's own slicer, encoder and connector, at demo scale
(a 32 px "tile" stands for 336 px, an 8 px patch for 14 px). Arms whose method does not change the vision
encoder share one ``tinyconv`` (a stand-in for CLIP, pretrained once by the demo's stage 1 on every such
arm's views); ConvLLaVA and FILA bring their own encoders, pretrained the same way.

* ``demo-lowres``     — LLaVA-1.5: pad to a square, downscale to one 32 px view; mlp2x with 2x2 pooling: 4 tokens.
* ``demo-anyres``     — LLaVA-NeXT anyres: overview + native-resolution 32 px tiles (pinpoints = the benchmark's
  sizes, so tiles are never resampled): 4 + 4 x tiles tokens.
* ``demo-inf-llava``  — INF-LLaVA: Dual-perspective Cropping at native resolution (the paper's layout: the image cut
  into 32 px local tiles + as many pixel-interleaved global tiles, + overview), DEM over the mosaics (4 heads, FFN
  x4, official fusion), down-sampled to 8x8 = 64 tokens. [LOUPE] three measured departures from the released
  configuration, each a Loupe option (same pretrained encoder, 200 steps, detail %): the official layout pads and
  resizes every image to one 128 px canvas (0.8x for 160x96: 8 %); the official output of one tile's grid (4x4 =
  16 tokens, 4x4 cells per token: 8 %); averaging with the overview (``combine_overview="mean"``: 8 %, ``add``: 8 %,
  ``none``: 63 %; local tiles alone without DEM or overview: 100 % detail, 52 % layout). So here: ``layout="paper"``,
  ``out_scale=2`` (2x2 cells per token, as the other arms' connectors), ``combine_overview="none"`` (the global
  tiles carry the layout through DEM). Two more, for stability across seeds: ``pool="area"`` (the paper's Eq. 7
  average pooling, over every mosaic cell: the official bilinear 20 -> 8 down-sampling of a 160x96 image's mosaic
  never reads 4 of its 20 columns), and DEM pretrained in the demo's stage 1 as the paper trains it in its stage 1
  (:func:`loupe.demo.pretrain.pretrain_dem`: a per-cell digit head on the fused map, frozen encoder, ~75 steps,
  ~10 s). Without it, seed 1 sat on the layout-only plateau and named one digit for every image (14.3 %, with
  bilinear or area pooling; the paper's ``linear_concat`` fusion: 35 %) where seed 0 reached 51 %.
* ``demo-convllava``  — ConvLLaVA: the image at its own resolution, centred on a 256 px canvas (``pad``
  ``mode="canvas"``), a five-stage ConvNeXt (64x: 4x4 grid), mlp2x after 2x2 pooling: the baseline's 4 tokens
  at 4-5x its resolution (the baseline reads a 32 px view of a 128-160 px image). ConvLLaVA's claim is about equal
  tokens, so the arm gets the baseline's count. [LOUPE] What made its from-scratch encoder learn, measured
  (stage-1 held-out digit accuracy, 2 cores; details in :mod:`loupe.demo.pretrain`): the released-style view (pad
  to square, resize to 128 px: the 160x96 images at 0.8x) stayed at chance (6-8 %) with the mean-pooled head for
  1000 steps, and also with layer scale 1.0, a conv stem, lr 5e-4, batch 64, or a 64 px tag-crop curriculum;
  deep supervision (a per-cell digit head on every stage) reached only 27-33 % there. Two changes did it: no
  resampling (the tag keeps its 8 px grid: ``mode="canvas"``) and deep supervision, with the side target weighted
  5: 91 % at the pooled tokens after ~725 steps (``DemoConfig.deep_pretrain_steps``), and the trained arm reads
  the digit. The cost is the canvas: 4x the pixels of a 128 px view (GFLOPs in the table). Stable across seeds only
  with the encoder frozen in the demo's instruct stage, as ConvLLaVA's own stage 3 freezes it (detail 8-14 % on
  seeds 1-2 when it trains on at 1e-3, 95-97 % frozen; :mod:`loupe.demo.run`).
* ``demo-uhd-v2``     — LLaVA-UHD v2: UHD adaptive slices (<= 16 slices of ~32 px, native aspect, 8 px patches)
  + an overview, ``tinyconv`` per slice at its own grid, Hiwin (2x2 RoI-aligned windows with learnable queries:
  4 tokens per slice), separators in the official token order. [LOUPE] The 1x level only (``feature_scale_mask=1``,
  no VDIM): the guided up-sampler's 7x7 per-pixel filters over every slice cost too much here (measured, batch 32,
  2 cores: 0.57 / 3.2 / 17.4 s per training step with levels {1x} / {1x, 2x} / {1x, 4x}, vs 0.27 s for anyres);
  ``loupe.build("demo-uhd-v2", connector={"feature_scale_mask": 5})`` is the released configuration.
* ``demo-fila`` (:mod:`loupe.presets.fila`) — FILA: anyres tiles through a small CLIP ViT with a ConvNeXt over the
  whole canvas fused by CVFM.

Pad colour: every arm that pads to a square (``pad``; ``dcm`` and ``aspect`` in their square modes) fills with its
own encoder's ``image_mean`` (``canvas`` too), LLaVA's rule ``tuple(int(x * 255) for x in image_processor.image_mean)``
(``expand2square`` in ``llava/mm_utils.py``), so padding normalises to 0 as in the official pipeline. The demo
encoders normalise with 0.5, so ``demo-lowres`` and ``demo-convllava`` pad with (127, 127, 127). [IMPORTANT] These
two arms used to pad with CLIP's (122, 116, 104) while normalising with 0.5 (issue #18): on the benchmark's
non-square sizes (160x96, 96x160) their padding pixels, and so their trained results, differ slightly from
runs made before the change; square images are unchanged.
"""

from . import TINY_IMAGE_TOKEN_ID, TINY_TOKENIZER, register_preset
from ..registry import ENCODERS

DEMO_SIZES = [[128, 128], [160, 96], [96, 160]]
DEMO_TILE = 32
DEMO_LLM = dict(model_type="llama", hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, vocab_size=1024, max_position_embeddings=1024,
                bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
DEMO_VISION = {"name": "tinyconv", "width": 96, "depth": 1, "heads": 4, "max_grid": 4, "native_aspect": True}
DEMO_CONNECTOR = {"name": "mlp", "depth": 2, "pool": 2}
DEMO_CONVNEXT = {"name": "convnext", "depths": (1, 1, 1, 1, 1), "hidden_sizes": (32, 48, 64, 96, 128),
                 "torch_init": True, "image_mean": (0.5, 0.5, 0.5), "image_std": (0.25, 0.25, 0.25)}


#: the slicers that pad to a square with ``fill`` (``expand2square``)
PADDING_SLICERS = ("pad", "dcm", "aspect")


def _demo(slicer: dict, vision: dict | None = None, connector: dict | None = None) -> dict:
    vision = dict(vision or DEMO_VISION)
    if slicer["name"] in PADDING_SLICERS and "fill" not in slicer:  # pad with the encoder's own mean (docstring)
        slicer = {**slicer, "fill": tuple(ENCODERS.config(vision).image_mean)}
    return {
        "config": dict(slicer=slicer, vision=vision, connector=dict(connector or DEMO_CONNECTOR),
                       text_config=dict(DEMO_LLM), image_token_id=TINY_IMAGE_TOKEN_ID),
        "tokenizer": dict(TINY_TOKENIZER),
    }


@register_preset("demo-lowres", "demo baseline: pad + downscale to one 32 px view (LLaVA-1.5 style), 4 tokens")
def _demo_lowres():
    return _demo({"name": "pad", "tile_size": DEMO_TILE})


@register_preset("demo-anyres", "demo high-res: overview + native 32 px tiles (LLaVA-NeXT anyres style)")
def _demo_anyres():
    return _demo({"name": "anyres", "tile_size": DEMO_TILE, "pinpoints": [list(s) for s in DEMO_SIZES]})


@register_preset("demo-inf-llava", "demo INF-LLaVA: DCM at native resolution (32 px local + global tiles), DEM, area pooling, 64 tokens")
def _demo_inf_llava():
    return _demo({"name": "dcm", "tile_size": DEMO_TILE, "size": 4 * DEMO_TILE, "layout": "paper"},  # size: official only
                 connector={"name": "dem", "heads": 4, "ffn_ratio": 4, "pool": "area", "out_scale": 2,
                            "combine_overview": "none"})


@register_preset("demo-convllava", "demo ConvLLaVA: native pixels on a 256 px canvas, five-stage ConvNeXt (64x), 2x2 pool: 4 tokens")
def _demo_convllava():
    return _demo({"name": "pad", "tile_size": 8 * DEMO_TILE, "mode": "canvas"}, vision=DEMO_CONVNEXT,
                 connector={"name": "mlp", "depth": 2, "pool": 2})


@register_preset("demo-uhd-v2", "demo LLaVA-UHD v2: UHD slices (<= 16 x ~32 px, native aspect), Hiwin 2x2 windows (1x level)")
def _demo_uhd_v2():
    return _demo({"name": "uhd", "tile_size": DEMO_TILE, "patch_size": 8, "max_slice_nums": 16, "comma_id": 16,
                  "newline_id": 203},
                 connector={"name": "hiwin", "grid_size": 2, "feature_scale_mask": 1})
