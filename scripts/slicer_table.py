"""Markdown table of tiles and visual tokens per slicer, under each paper's default configuration.

Rows: LLaVA-1.5 (``pad`` 336), LLaVA-NeXT (``anyres``, llava-1.6 pinpoints), LLaVA-UHD v2 (``uhd``, max 9
slices = official evaluation), INF-LLaVA (``dcm``, 1008 canvas), ConvLLaVA at 1536 as released (pad to square)
and with the paper's any-aspect input (``aspect``; through the ``convllava-7b-1536`` preset's ConvNeXt
geometry when that preset exists, else the formula). Columns: image sizes (W x H). A cell is ``tiles / tokens``
where tiles are the images the vision encoder sees.

Token counts come from Loupe's own geometry (``ImageGeometry``: slicer plan + encoder grid + connector count)
where the connector exists (``mlp``, ``llava_next``). Where it does not exist yet, they come from the spec's
formula in the clearly labelled ``SPEC_FORMULA_*`` helpers below; the tiles always come from the slicer.

Usage: ``python scripts/slicer_table.py`` (prints the table; paste it into the README).
"""

from __future__ import annotations

from loupe import slicers
from loupe.errors import LoupeError
from loupe.geometry import ImageGeometry
from loupe.presets import get_preset

SIZES = [(336, 336), (672, 672), (1008, 672), (1344, 1344), (1536, 1536), (2048, 512)]


# --- spec formulas for connectors Loupe does not have yet --------------------------------------------------
def SPEC_FORMULA_uhd_v2_tokens(layout) -> int:
    """Spec §3.5: 144 tokens per slice and for the overview (Hiwin, 12x12 windows) + one separator per slice."""
    return 144 * layout.num_tiles + len(layout.meta.get("separators", []))


def SPEC_FORMULA_inf_llava_tokens(layout) -> int:
    """Spec §1.2: DEM fuses the 18 tiles to one 24x24 map, averaged with the overview's: 576 tokens."""
    return 576


def SPEC_FORMULA_convllava_tokens(layout) -> int:
    """Spec §2.1: five-stage ConvNeXt, total stride 64: (H/64) * (W/64) tokens."""
    w, h = layout.tile_sizes[0]
    return (w // 64) * (h // 64)


def rows():
    """(label, [(tiles, tokens) per size])."""

    def geometry(preset, slicer=None):
        c = get_preset(preset)["config"]
        g = ImageGeometry(slicer or c["slicer"], c["vision"], c["connector"])
        return lambda size: (g.layout(size).num_tiles, g.num_tokens(size))

    def formula(slicer_spec, fn):
        s = slicers.build(slicer_spec)
        return lambda size: (s.plan(size).num_tiles, fn(s.plan(size)))

    methods = [
        ("LLaVA-1.5 (`pad` 336, `mlp`)", geometry("llava15-7b")),
        ("LLaVA-NeXT (`anyres`, `llava_next`)", geometry("llava-next-7b")),
        ("LLaVA-UHD v2 (`uhd`, max 9 slices)*", formula({"name": "uhd"}, SPEC_FORMULA_uhd_v2_tokens)),
        ("INF-LLaVA (`dcm` 1008)*", formula({"name": "dcm"}, SPEC_FORMULA_inf_llava_tokens)),
    ]
    try:  # the ConvNeXt encoder + preset, when present: Loupe's own geometry
        methods += [("ConvLLaVA 1536, released (`pad` 1536, `convnext`)", geometry("convllava-7b-1536")),
                    ("ConvLLaVA 1536, any aspect (`aspect`, `convnext`)",
                     geometry("convllava-7b-1536", {"name": "aspect", "short_side": 1536}))]
    except LoupeError:
        methods += [("ConvLLaVA 1536, released (`aspect` square)*",
                     formula({"name": "aspect", "mode": "square"}, SPEC_FORMULA_convllava_tokens)),
                    ("ConvLLaVA 1536, any aspect (`aspect`)*",
                     formula({"name": "aspect"}, SPEC_FORMULA_convllava_tokens))]
    return [(label, [fn(s) for s in SIZES]) for label, fn in methods]


def table() -> str:
    head = "| method | " + " | ".join(f"{w}x{h}" for w, h in SIZES) + " |"
    sep = "|---|" + "---|" * len(SIZES)
    lines = [head, sep]
    for label, cells in rows():
        lines.append(f"| {label} | " + " | ".join(f"{t} / {n}" for t, n in cells) + " |")
    lines.append("")
    lines.append("Cells: tiles the vision encoder sees / visual tokens in the LLM sequence. "
                 "*Tokens from the spec's formula (connector not in Loupe yet): UHD v2 144 per image + one "
                 "separator per slice (§3.5); INF-LLaVA 576 (§1.2); ConvLLaVA (H/64)(W/64) (§2.1). "
                 "LLaVA-NeXT counts include one `image_newline` per feature row (672x672: 576 + 48x48 + 48).")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
