"""Markdown table of tiles and visual tokens per slicer, under each paper's default configuration.

Rows: LLaVA-1.5 (``pad`` 336), LLaVA-NeXT (``anyres``, llava-1.6 pinpoints), LLaVA-UHD v2 (``uhd``, max 9
slices = official evaluation), INF-LLaVA (``dcm``, 1008 canvas), ConvLLaVA at 1536 as released (pad to square)
and with the paper's any-aspect input (``aspect``), FILA (LLaVA-NeXT's layout). Columns: image sizes (W x H). A cell is ``tiles / tokens``
where tiles are the images the vision encoder sees.

Token counts come from Loupe's own geometry (``ImageGeometry``: slicer plan + encoder grid + connector count), the
same pure functions the processor, the model and the profiler call.

Usage: ``python scripts/slicer_table.py`` (prints the table; paste it into the README).
"""

from __future__ import annotations

from loupe.geometry import ImageGeometry
from loupe.presets import get_preset

SIZES = [(336, 336), (672, 672), (1008, 672), (1344, 1344), (1536, 1536), (2048, 512)]


def rows():
    """(label, [(tiles, tokens) per size])."""

    def geometry(preset, slicer=None):
        c = get_preset(preset)["config"]
        g = ImageGeometry(slicer or c["slicer"], c["vision"], c["connector"])
        return lambda size: (g.layout(size).num_tiles, g.num_tokens(size))

    methods = [
        ("LLaVA-1.5 (`pad` 336, `mlp`)", geometry("llava15-7b")),
        ("LLaVA-NeXT (`anyres`, `llava_next`)", geometry("llava-next-7b")),
        ("LLaVA-UHD v2 (`uhd` max 9 slices, `hiwin`)", geometry("llava-uhd-v2-7b")),
        ("INF-LLaVA (`dcm` 1008, `dem`)", geometry("inf-llava-8b")),
        ("ConvLLaVA 1536, released (`pad` 1536, `convnext`)", geometry("convllava-7b-1536")),
        ("ConvLLaVA 1536, any aspect (`aspect`, `convnext`)",
         geometry("convllava-7b-1536", {"name": "aspect", "short_side": 1536})),
        ("FILA (`anyres`, `hybrid`, `llava_next`)", geometry("fila-7b")),
    ]
    return [(label, [fn(s) for s in SIZES]) for label, fn in methods]


def table() -> str:
    head = "| method | " + " | ".join(f"{w}x{h}" for w, h in SIZES) + " |"
    sep = "|---|" + "---|" * len(SIZES)
    lines = [head, sep]
    for label, cells in rows():
        lines.append(f"| {label} | " + " | ".join(f"{t} / {n}" for t, n in cells) + " |")
    lines.append("")
    lines.append("Cells: tiles the vision encoder sees / visual tokens in the LLM sequence. "
                 "UHD v2: 144 per slice and overview + one separator per slice (§3.5); INF-LLaVA 576 (§1.2); "
                 "ConvLLaVA (H/64)(W/64) (§2.1). LLaVA-NeXT and FILA counts include one `image_newline` per feature row (672x672: 576 + 48x48 + 48).")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
