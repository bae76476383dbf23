"""LLaVA-UHD v2-7B prefill FLOPs at 1008x672 beside the paper's 17.5 TFLOPs and LLaVA-NeXT-7B's 44.4 at 672x672.

Paper Table 1 ``#FLOPs`` column (``../shared/papers/llava-uhd-v2.txt`` §4.2; performance-anchors.md §1-3). Every
model is built by ``loupe.build_model(preset)`` under ``torch.device("meta")`` (no weights) and counted with
``torch.utils.flop_counter.FlopCounterMode`` in the C2 convention of performance-anchors.md §3: FLOPs = 2 x MACs;
the vision encoder on every tile of the image's real layout with all 24 CLIP blocks (the anchors' convention;
Loupe runs 23 for layer -2); the whole connector (for UHD v2 the Hiwin transformer: VDIM, per-level projectors,
RoI-align einsums, the four shared ``nn.MultiheadAttention`` calls, merge); then the LLM prefill over the visual
tokens with 0 text tokens, logits for the last position only (``logits_to_keep=1``) and full non-causal attention
(SDPA decomposes on meta).

Two UHD v2 totals: with the Hiwin MHA (a faithful count of the official code; anchor 22.35) and without it
(``C7``: anchor 17.21, the convention that reproduces the paper's 17.5). Counts equal the parts' analytic
``flops`` (printed beside). Differences from the anchors' shape-level model: the overview (19 x 29 patches) is
zero-padded to 576 patches in the ViT batch (+0.02 T, the official padded batching) and RoI-align is two einsums
(+0.06 T; torchvision's kernel is not a matmul).

Usage: ``python scripts/uhd_v2_flops.py [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

import loupe

T = 1e12
#: paper Table 1 and performance-anchors.md §3 (C2; C7 = C2 without the Hiwin MHA)
PAPER = {"llava-uhd-v2-7b": 17.5, "llava-next-7b": 44.4}
ANCHOR_C2 = {"llava-uhd-v2-7b": 22.35, "llava-next-7b": 44.45}
ANCHOR_C7 = {"llava-uhd-v2-7b": 17.21}


def _count(fn) -> tuple[object, FlopCounterMode]:
    with FlopCounterMode(display=False) as fc:
        out = fn()
    return out, fc


def measure(preset: str, size: tuple[int, int]) -> dict:
    """One row: (W, H) image through the preset's slicer, encoder (24 blocks), connector and LLM prefill."""
    with torch.device("meta"):
        model = loupe.build_model(preset, vision={"name": "clip", "select_layer": -1}).eval()
        geo = model.geometry
        layout = geo.layout(size)
        tokens = geo.num_tokens(layout)
        hmax, wmax = max(s[1] for s in layout.tile_sizes), max(s[0] for s in layout.tile_sizes)
        px = torch.empty(layout.num_tiles, 3, hmax, wmax)
        feats, fc_v = _count(lambda: model.vision_tower(px, layouts=[layout]))
        embeds, fc_c = _count(lambda: model.connector(feats, [layout], pixel_values=px))
        assert embeds[0].shape[0] == geo.num_visual_tokens(layout), (embeds[0].shape, tokens)
        emb = torch.empty(1, tokens, model.config.text_config.hidden_size)
        _, fc_l = _count(lambda: model.language_model(inputs_embeds=emb, logits_to_keep=1))
    mods = fc_c.get_flop_counts()
    mha = sum(sum(v.values()) for k, v in mods.items() if k.endswith(".attn"))
    connector = fc_c.get_total_flops()
    row = dict(preset=preset, size=list(size), tiles=layout.num_tiles, tokens=tokens, vision=fc_v.get_total_flops() / T,
               connector=connector / T, mha=mha / T, llm=fc_l.get_total_flops() / T)
    row["total"] = row["vision"] + row["connector"] + row["llm"]
    row["total_without_mha"] = row["total"] - row["mha"]
    flops = getattr(type(model.connector), "flops", None)
    if flops is not None:
        row["connector_analytic"] = flops(model.connector.config, layout, geo.grids(layout), model.vision_tower.out_dim,
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
