"""PNG plots of profiler records: visual tokens, TFLOPs and memory vs resolution, one line per method (preset).

The x axis is the resolution as sqrt(W x H) in pixels (so 1008x672 sits between 672 and 1008), ticked with the
profiled sizes. Needs matplotlib (the ``plot`` extra); without it no plot is written.
"""

from __future__ import annotations

from pathlib import Path

PLOTS = (
    ("tokens_vs_resolution.png", "visual tokens per image", lambda r: [r["visual_tokens"]], ["tokens"]),
    ("tflops_vs_resolution.png", "TFLOPs per image", lambda r: [r["paper_tflops"], r["full_tflops"]],
     ["paper", "full"]),
    ("memory_vs_resolution.png", "memory (GiB)",
     lambda r: [r["memory"]["inference_bytes"] / 2**30, r["memory"]["training_bytes"] / 2**30],
     ["inference", "training step"]),
)
STYLES = ("-", "--")


def _x(r) -> float:
    w, h = r["image_size"]
    return (w * h) ** 0.5


def plot_all(records: list[dict], folder) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return []
    folder = Path(folder)
    by_preset: dict[str, list[dict]] = {}
    for r in records:
        by_preset.setdefault(r["preset"], []).append(r)
    ticks = {_x(r): f"{r['image_size'][0]}x{r['image_size'][1]}" for r in records}
    files = []
    for name, label, values, series in PLOTS:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, (preset, rs) in enumerate(by_preset.items()):
            rs = sorted(rs, key=_x)
            colour = f"C{i % 10}"
            for k, (style, what) in enumerate(zip(STYLES, series)):
                lbl = preset if len(series) == 1 else f"{preset} ({what})"
                ax.plot([_x(r) for r in rs], [values(r)[k] for r in rs], style, marker="o", color=colour, label=lbl)
        if "memory" in name:
            for g in (24, 40, 80):
                ax.axhline(g, color="grey", lw=0.6, ls=":")
                ax.annotate(f"{g} GB", (1, g), xycoords=("axes fraction", "data"), fontsize=7, ha="right")
        ax.set_xticks(sorted(ticks), [ticks[k] for k in sorted(ticks)], rotation=30, fontsize=7)
        ax.set_xlabel("image size (W x H), axis = sqrt(W H)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        ax.set_title(f"{label} vs resolution")
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        files.append(folder / name)
    return files
