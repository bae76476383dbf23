"""LLaVA-UHD v2-7B prefill FLOPs at 1008x672 beside the paper's 17.5 TFLOPs and LLaVA-NeXT-7B's 44.4 at 672x672.

The LLaVA-UHD v2 paper, Table 1, ``#FLOPs`` column (§4.2). Every model is built by ``loupe.build_model(preset)``
under ``torch.device("meta")`` (no weights), called through its own ``get_image_features`` and language model, and
counted with ``torch.utils.flop_counter.FlopCounterMode`` (:class:`loupe.profiling.counting.Counter`, split by
forward hooks on ``vision_tower`` / ``connector`` / the connector's ``nn.MultiheadAttention``) in convention C2
(:mod:`loupe.profiling.profiler`): FLOPs = 2 x MACs; the vision encoder on every tile of the image's real layout
with all 24 CLIP blocks (``select_layer=-1``: the papers count every block; Loupe runs 23 for layer -2); the
whole connector (for UHD v2 the Hiwin transformer: VDIM, per-level projectors, RoI-align einsums, the four shared
``nn.MultiheadAttention`` calls, merge); then the LLM prefill over the visual tokens with 0 text tokens, logits
for the last position only (``logits_to_keep=1``) and full non-causal attention (SDPA decomposes on meta).

Two UHD v2 totals: with the Hiwin MHA (a faithful count of the official code: the shared
``nn.MultiheadAttention`` of ``AdaptSpatialResampler`` in ``llava/model/multimodal_projector/
adapt_spatial_resampler.py``, called once per query set: anchor 22.35) and without it (``C7``: anchor 17.21,
the convention that reproduces the paper's 17.5). The anchors are Loupe's shape-level counts. Counts equal the parts' analytic
``flops`` (printed beside). Differences from the shape-level count: the overview (19 x 29 patches) is
zero-padded to 576 patches in the ViT batch (+0.02 T, the official padded batching) and RoI-align is two einsums
(+0.06 T; torchvision's kernel is not a matmul).

Usage: ``python scripts/uhd_v2_flops.py [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json

import torch

import loupe
from loupe.profiling.counting import Counter

T = 1e12
#: the paper's Table 1 and Loupe's shape-level counts (C2; C7 = C2 without the Hiwin MHA)
PAPER = {"llava-uhd-v2-7b": 17.5, "llava-next-7b": 44.4}
ANCHOR_C2 = {"llava-uhd-v2-7b": 22.35, "llava-next-7b": 44.45}
ANCHOR_C7 = {"llava-uhd-v2-7b": 17.21}


def measure(preset: str, size: tuple[int, int]) -> dict:
    """One row: (W, H) image through the model's own ``get_image_features`` (encoder with all 24 blocks, connector;
    split by forward hooks) and LLM prefill."""
    with torch.device("meta"):
        model = loupe.build_model(preset, vision={"name": "clip", "select_layer": -1}).eval()
        geo = model.geometry
        layout = geo.layout(size)
        tokens = geo.num_tokens(layout)
        hmax, wmax = max(s[1] for s in layout.tile_sizes), max(s[0] for s in layout.tile_sizes)
        px = torch.empty(layout.num_tiles, 3, hmax, wmax)
        mha = [m for m in model.connector.modules() if isinstance(m, torch.nn.MultiheadAttention)]
        parts = {"vision": model.vision_tower, "connector": model.connector}
        with Counter().parts(parts).exclude(mha) as fc:
            embeds = model.get_image_features(px, torch.tensor([[size[1], size[0]]]), image_layouts=[layout])
        assert embeds[0].shape[0] == geo.num_visual_tokens(layout), (embeds[0].shape, tokens)
        emb = torch.empty(1, tokens, model.config.text_config.hidden_size)
        with Counter() as fc_l:
            model.language_model(inputs_embeds=emb, logits_to_keep=1)
    row = dict(preset=preset, size=list(size), tiles=layout.num_tiles, tokens=tokens, vision=fc.by_part["vision"] / T,
               connector=fc.by_part["connector"] / T, mha=fc.excluded / T, llm=fc_l.total / T)
    row["total"] = row["vision"] + row["connector"] + row["llm"]
    row["total_without_mha"] = row["total"] - row["mha"]
    row["connector_analytic"] = type(model.connector).flops(
        model.connector.config, layout, geo.grids(layout), model.vision_tower.out_dim,
        model.config.text_config.hidden_size)["total"] / T
    row["paper"], row["anchor_c2"], row["anchor_c7"] = PAPER.get(preset), ANCHOR_C2.get(preset), ANCHOR_C7.get(preset)
    return row


def rows() -> list[dict]:
    return [measure("llava-uhd-v2-7b", (1008, 672)), measure("llava-next-7b", (672, 672))]


def table(rs: list[dict]) -> str:
    def dev(x, a):
        return "–" if a is None else f"{a:.2f} ({100 * (x - a) / a:+.1f}%)"

    lines = ["| Model | Image | Tiles | Tokens | Vision TF | Connector TF (MHA) | LLM TF | Total TF | w/o MHA TF "
             "| Paper | Anchor C2 (with MHA) | Anchor C7 (w/o MHA) |", "|---" * 12 + "|"]
    for r in rs:
        lines.append(
            f"| {r['preset']} | {r['size'][0]}x{r['size'][1]} | {r['tiles']} | {r['tokens']} | {r['vision']:.3f} | "
            f"{r['connector']:.3f} ({r['mha']:.2f}) | {r['llm']:.2f} | {r['total']:.2f} | "
            f"{r['total_without_mha']:.2f} | {dev(r['total_without_mha'] if r['mha'] else r['total'], r['paper'])} | "
            f"{dev(r['total'], r['anchor_c2'])} | {dev(r['total_without_mha'], r['anchor_c7'])} |")
    uhd, nxt = rs[0], rs[1]
    lines += ["", f"UHD v2 / NeXT: {uhd['total_without_mha'] / nxt['total']:.1%} without the Hiwin MHA (paper: "
              f"17.5/44.4 = {17.5 / 44.4:.1%}, '<40%'), {uhd['total'] / nxt['total']:.1%} with it."]
    if "connector_analytic" in uhd:
        lines.append(f"Hiwin connector: counted {uhd['connector']:.4f} TF, analytic flops() "
                     f"{uhd['connector_analytic']:.4f} TF.")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    rs = rows()
    print(table(rs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rs, f, indent=1)
    return rs


if __name__ == "__main__":
    main()
