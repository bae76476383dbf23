"""Drawing what a high-resolution method does to an image: its tiles, boxes, padding and tokens per tile.

:func:`tokens_per_tile` splits an image's visual-token count over its tiles where the connector keeps one block
of tokens per tile (LLaVA-1.5's MLP: the tile's pooled feature grid; LLaVA-NeXT / FILA: the overview's grid);
tokens shared between tiles (LLaVA-NeXT's unpadded local map with its newline tokens, UHD v2's window tokens and
separators, INF-LLaVA's fused map) are reported as ``other`` so the total always equals the geometry's count.
:func:`plan_figure` draws a layout over the image with matplotlib.
"""

from __future__ import annotations

PER_TILE_CONNECTORS = ("mlp",)


def tokens_per_tile(geom, layout) -> tuple[list, int]:
    """(tokens per tile or None where tiles share tokens, tokens not attributed to one tile)."""
    total = geom.num_tokens(layout)
    grids = geom.grids(layout)
    name = getattr(geom.connector_cls, "registry_name", "") or type(geom.connector_cls).__name__
    cfg = geom.connector_cfg
    per: list = [None] * layout.num_tiles
    if name in PER_TILE_CONNECTORS:
        from .connectors.mlp import pooled_grid

        per = [w * h for w, h in (pooled_grid(g, cfg.pool) for g in grids)]
    elif name == "llava_next":
        for i in layout.indices("overview"):
            per[i] = grids[i][0] * grids[i][1]
    known = sum(v for v in per if v is not None)
    return per, total - known


def plan_figure(image, layout, geom=None, output: str | None = None, title: str | None = None):
    """Draw the layout's tile boxes (with role and tokens per tile) over ``image``; save to ``output`` if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .images import load_image

    img = load_image(image)
    per, other = tokens_per_tile(geom, layout) if geom is not None else ([None] * layout.num_tiles, 0)
    fig, ax = plt.subplots(figsize=(6, 6 * img.size[1] / max(img.size[0], 1) + 0.6), dpi=100)
    ax.imshow(img)
    colours = {"overview": "tab:blue", "local": "tab:orange", "global": "tab:green"}
    for i, (role, box) in enumerate(zip(layout.roles, layout.boxes)):
        x0, y0, x1, y1 = box
        c = colours.get(role, "tab:red")
        inset = 0 if role == "local" else 2 + 2 * i % 6
        ax.add_patch(Rectangle((x0 + inset, y0 + inset), x1 - x0 - 2 * inset, y1 - y0 - 2 * inset, fill=False,
                               edgecolor=c, linewidth=2, linestyle="-" if role == "local" else "--"))
        label = f"{i}:{role[0]}" + (f" {per[i]}t" if per[i] is not None else "")
        ax.text(x0 + inset + 2, y0 + inset + 2, label, color="white", fontsize=7, va="top",
                bbox=dict(facecolor=c, alpha=0.7, pad=1, linewidth=0))
    total = geom.num_tokens(layout) if geom is not None else None
    ax.set_title(title or (f"{layout.num_tiles} tiles, {total} visual tokens" + (f" ({other} shared)" if other else "")
                           if total is not None else f"{layout.num_tiles} tiles"), fontsize=9)
    w, h = img.size
    xs = [b[0] for b in layout.boxes] + [b[2] for b in layout.boxes] + [0, w]
    ys = [b[1] for b in layout.boxes] + [b[3] for b in layout.boxes] + [0, h]
    ax.set_xlim(min(xs) - 2, max(xs) + 2)
    ax.set_ylim(max(ys) + 2, min(ys) - 2)
    ax.axis("off")
    fig.tight_layout()
    if output:
        fig.savefig(output)
        plt.close(fig)
    return fig
