"""Vision-encoder FLOPs, visual tokens and LLM prefill FLOPs vs resolution: ViT-L vs ConvNeXt vs ConvNeXt†.

Reproduces the trend of ConvLLaVA's Figure 2 ("Estimated FLOPs v.s. image resolution", paper §3.1) with real
counts: every model is built by ``loupe.build_model(preset)`` under ``torch.device("meta")`` (no weights) and
counted with ``torch.utils.flop_counter.FlopCounterMode``, in the convention of performance-anchors.md §3 (C2):
FLOPs = 2 x MACs; the vision encoder on every tile, the projector, then a Vicuna-7B prefill over the visual tokens
with 0 text tokens and logits for the last position only (``logits_to_keep=1``); attention is counted in full
(non-causal T^2, as SDPA decomposes on meta).

Rows: CLIP-ViT-L/14 at 336 (LLaVA-1.5, 576 tokens) and 672 via anyres (LLaVA-NeXT: 5 crops of 336 -> 2880
projected features, 2928 LLM tokens with unpad + newline, as the official count); ViT-L on one tile with
interpolated positions at 512-1536 (the figure's ViT line); four-stage ConvNeXt-L (stride 32) and five-stage
ConvNeXt† (stride 64) at 512-1536. Printed beside the derived anchors of performance-anchors.md §4.

[IMPORTANT] CLIP is counted with all 24 blocks, the anchors' convention; Loupe's ``clip`` encoder skips the 24th
block for ``select_layer=-2`` (1/24 less ViT compute at run time).

Usage: ``python scripts/convllava_flops.py [--output out/convllava_flops]`` -> stdout table, ``flops.md``,
``flops.json``, ``flops.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import loupe

T = 1e12
RESOLUTIONS = (512, 768, 1024, 1280, 1536)
#: performance-anchors.md §3-4, (encoder TFLOPs or None, total C2 TFLOPs)
ANCHORS = {
    ("LLaVA-1.5 CLIP-L/336", 336): (0.382, 8.04),
    ("LLaVA-NeXT anyres", 672): (1.910, 44.45),
    ("ViT-L/14 one tile", 1536): (None, 249.5),
    ("ConvNeXt-L (4 stages)", 768): (0.808, 8.47),
    ("ConvNeXt-L (4 stages)", 1536): (3.231, 35.96),
    ("ConvLLaVA ConvNeXt† (5 stages)", 768): (0.944, 2.83),
    ("ConvLLaVA ConvNeXt† (5 stages)", 1024): (1.678, 5.04),
    ("ConvLLaVA ConvNeXt† (5 stages)", 1536): (3.776, 11.44),
}


def count(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def measure(model, name: str, res: int, tiles: int = 1, tile: int | None = None,
            llm_tokens: int | None = None) -> dict:
    """One row: the encoder on ``tiles`` tiles of ``tile`` px (default ``res``), the projector, the LLM prefill."""
    with torch.device("meta"):
        px = torch.empty(tiles, 3, tile or res, tile or res)
        feats = model.vision_tower(px)  # (tiles, gh, gw, C)
        vision = count(lambda: model.vision_tower(px))
        n_feat = feats.shape[0] * feats.shape[1] * feats.shape[2]
        proj = count(lambda: model.connector.proj(torch.empty(n_feat, feats.shape[-1])))
        tokens = llm_tokens or n_feat
        emb = torch.empty(1, tokens, model.config.text_config.hidden_size)
        llm = count(lambda: model.language_model(inputs_embeds=emb, logits_to_keep=1))
    return dict(model=name, res=res, tiles=tiles, tokens=tokens, vision=vision / T, projector=proj / T,
                llm=llm / T, total=(vision + proj + llm) / T)


def rows() -> list[dict]:
    with torch.device("meta"):
        clip = loupe.build_model("llava15-7b", vision={"name": "clip", "select_layer": -1}).eval()
        conv4 = loupe.build_model("convnext-l-768").eval()
        conv5 = loupe.build_model("convllava-7b-1536").eval()
    out = [measure(clip, "LLaVA-1.5 CLIP-L/336", 336),
           measure(clip, "LLaVA-NeXT anyres", 672, tiles=5, tile=336, llm_tokens=2928)]
    for name, m in [("ViT-L/14 one tile", clip), ("ConvNeXt-L (4 stages)", conv4),
                    ("ConvLLaVA ConvNeXt† (5 stages)", conv5)]:
        out += [measure(m, name, r) for r in RESOLUTIONS]
    for r in out:
        r["anchor_vision"], r["anchor_total"] = ANCHORS.get((r["model"], r["res"]), (None, None))
    return out


def table(rs: list[dict]) -> str:
    def f(x, nd=3):
        return "–" if x is None else f"{x:.{nd}f}"

    def dev(x, a):
        return "" if a is None else f" ({100 * (x - a) / a:+.1f}%)"

    lines = ["| Model | Res | Tiles | Tokens | Vision TF | Proj TF | LLM TF | Total TF | Anchor vision "
             "| Anchor total |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rs:
        lines.append(f"| {r['model']} | {r['res']} | {r['tiles']} | {r['tokens']} | {f(r['vision'])} | "
                     f"{f(r['projector'])} | {f(r['llm'], 2)} | {f(r['total'], 2)} | "
                     f"{f(r['anchor_vision'])}{dev(r['vision'], r['anchor_vision'])} | "
                     f"{f(r['anchor_total'], 2)}{dev(r['total'], r['anchor_total'])} |")
    by = {(r["model"], r["res"]): r for r in rs}
    lines.append("")
    lines.append("Ratios of total FLOPs (paper §3.1: ViT -> ConvNeXt 'almost 8x'; ConvNeXt -> ConvNeXt† '6x'):")
    for res in RESOLUTIONS:
        vit, c4, c5 = (by[(m, res)]["total"] for m in ("ViT-L/14 one tile", "ConvNeXt-L (4 stages)",
                                                        "ConvLLaVA ConvNeXt† (5 stages)"))
        lines.append(f"- {res}: ViT/ConvNeXt {vit / c4:.1f}x, ConvNeXt/ConvNeXt† {c4 / c5:.1f}x")
    return "\n".join(lines)


def plot(rs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    styles = {"ViT-L/14 one tile": "tab:red", "ConvNeXt-L (4 stages)": "tab:blue",
              "ConvLLaVA ConvNeXt† (5 stages)": "tab:green"}
    labels = ("vision encoder TFLOPs", "visual tokens", "LLM prefill TFLOPs (dashed: total)")
    for ax, key, label in zip(axes, ("vision", "tokens", "llm"), labels):
        for name, colour in styles.items():
            pts = [(r["res"], r[key]) for r in rs if r["model"] == name]
            ax.plot(*zip(*pts), "o-", color=colour, label=name)
            if key == "llm":
                ax.plot(*zip(*[(r["res"], r["total"]) for r in rs if r["model"] == name]), "--", color=colour)
        for r, marker in zip(rs[:2], ("s", "^")):
            ax.plot(r["res"], r[key], marker, color="black", label=f"{r['model']} ({r['res']}, {r['tiles']} tile(s))")
        ax.set_xlabel("image resolution (px)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("ConvLLaVA Fig. 2 trend: FLOPs and tokens vs resolution (meta-device FlopCounterMode, Vicuna-7B)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default="out/convllava_flops", help="folder for flops.md, flops.json, flops.png")
    args = ap.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rs = rows()
    md = table(rs)
    print(md)
    (out / "flops.md").write_text("# Vision-encoder, projector and LLM prefill FLOPs (TFLOPs, C2, 0 text tokens)\n\n"
                                  + md + "\n")
    (out / "flops.json").write_text(json.dumps(rs, indent=1))
    plot(rs, out / "flops.png")
    print(f"\nwrote {out / 'flops.md'}, {out / 'flops.json'}, {out / 'flops.png'}")


if __name__ == "__main__":
    main()
