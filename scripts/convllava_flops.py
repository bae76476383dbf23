"""Vision-encoder FLOPs, visual tokens and LLM prefill FLOPs vs resolution: ViT-L vs ConvNeXt vs ConvNeXt†.

Reproduces the trend of ConvLLaVA's Figure 2 ("Estimated FLOPs v.s. image resolution", paper §3.1) with real
counts from Loupe's profiler (:func:`loupe.profiling.profile`): every model is a preset (tile size overridden per
resolution) built on ``torch.device("meta")`` (no weights) and counted with FlopCounterMode, reported in the
profiler's ``paper`` convention (C2, defined in :mod:`loupe.profiling.profiler`): FLOPs = 2 x MACs; the vision
encoder on every tile with every block, the projector, then a Vicuna-7B prefill over the visual tokens with 0 text tokens and
logits for the last position only; attention counted in full (non-causal T^2).

Rows: CLIP-ViT-L/14 at 336 (LLaVA-1.5, 576 tokens) and 672 via anyres (LLaVA-NeXT: 5 crops of 336 -> 2880
projected features, 2928 LLM tokens with unpad + newline, as the official count); ViT-L on one tile with
interpolated positions at 512-1536 (the figure's ViT line); four-stage ConvNeXt-L (stride 32) and five-stage
ConvNeXt† (stride 64) at 512-1536. Printed beside Loupe's pinned C2 counts (no paper gives these numbers).

[IMPORTANT] CLIP is counted with all 24 blocks (the profiler's ``paper`` total, the anchors' convention); Loupe's
``clip`` encoder skips the 24th block for ``select_layer=-2`` (1/24 less ViT compute at run time: the ``full`` total).

Usage: ``python scripts/convllava_flops.py [--output out/convllava_flops]`` -> stdout table, ``flops.md``,
``flops.json``, ``flops.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import loupe
from loupe.profiling import profile

RESOLUTIONS = (512, 768, 1024, 1280, 1536)
#: Loupe's pinned C2 counts, (encoder TFLOPs or None, total C2 TFLOPs)
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


def measure(name: str, preset: str, res: int, **overrides) -> dict:
    """One row from the profiler's ``paper`` total (C2) of ``preset`` (with config overrides) at res x res."""
    config = loupe.build_config(preset, **overrides)
    config.preset = f"{preset}@{res}"  # a modified preset: keeps the profiler from attaching the preset's anchor
    (r,) = profile(config, [(res, res)])
    p = {k: v / 1e12 for k, v in r["flops"]["paper"].items()}
    return dict(model=name, res=res, tiles=r["tiles"], tokens=r["visual_tokens"], vision=p["vision"],
                projector=p["connector"], llm=p["llm_layers"] + p["lm_head"], total=p["total"])


def rows() -> list[dict]:
    out = [measure("LLaVA-1.5 CLIP-L/336", "llava15-7b", 336), measure("LLaVA-NeXT anyres", "llava-next-7b", 672)]
    for name, preset in [("ViT-L/14 one tile", "llava15-7b"), ("ConvNeXt-L (4 stages)", "convnext-l-768"),
                         ("ConvLLaVA ConvNeXt† (5 stages)", "convllava-7b-1536")]:
        out += [measure(name, preset, r, slicer={"name": "pad", "tile_size": r}) for r in RESOLUTIONS]
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
