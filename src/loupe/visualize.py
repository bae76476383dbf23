"""Drawing what a high-resolution method does to an image: its tiles, boxes, padding and tokens per tile, and
where the LLM looked.

* :func:`tokens_per_tile` splits an image's visual-token count over its tiles where the connector keeps one block
  of tokens per tile (LLaVA-1.5's MLP, InternVL's pixel shuffle, Qwen2-VL's patch merger, UHD v2's 144 windows
  per slice, the LLaVA-NeXT / FILA overview); tokens shared between tiles (LLaVA-NeXT's unpadded stitched map
  and its newlines, INF-LLaVA's fused canvas map, UHD v2's separators) are reported as ``other`` so the total
  always equals the geometry's count.
* :func:`token_regions` gives every visual token of an image, in the order the connector emits them, its source
  box in image pixels — or ``None`` for a token with no spatial source (LLaVA-NeXT's ``image_newline``, UHD v2's
  slice separators). Grid-shaped connectors map a token to its cell in its tile's box; tokens of a stitched or
  fused map (LLaVA-NeXT ``spatial_unpad``, OneVision's ``anyres_max``, UHD v2 ``stitched``, INF-LLaVA's DEM)
  map through the canvas (the union of the local tiles' boxes), after the same unpadding / resizing the
  connector applies (:mod:`loupe.connectors.llava_next`, :mod:`loupe.connectors.anyres_max`,
  :mod:`loupe.connectors.hiwin`, :mod:`loupe.connectors.dem`).
* :func:`attention_map` answers a question greedily, runs prompt + answer once more with eager attention and
  ``output_attentions=True``, and averages the attention from the answer tokens to the visual tokens over
  layers, heads and answer tokens; the result sums to 1 over the visual tokens, and is spread onto the image
  through :func:`token_regions` (tokens without a region are dropped from the picture and reported).
* :func:`plan_figure` draws a layout (tiles, padding, tokens per tile) and optionally the heat map, with
  matplotlib; :func:`html_page` wraps the figure and a tile table in one self-contained HTML file.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np

from .errors import LoupeError

GRID_CONNECTORS = ("mlp", "pixel_shuffle", "patch_merge")


def _name(geom) -> str:
    return getattr(geom.connector_cls, "registry_name", "") or type(geom.connector_cls).__name__


def _out_grids(geom, layout) -> list[tuple[int, int]]:
    """(w, h) token grid of every tile for the per-tile grid connectors."""
    name, cfg, grids = _name(geom), geom.connector_cfg, geom.grids(layout)
    if name == "mlp":
        from .connectors.mlp import pooled_grid

        return [pooled_grid(g, cfg.pool) for g in grids]
    return [geom.connector_cls._out_grid(cfg, g) for g in grids]


def tokens_per_tile(geom, layout) -> tuple[list, int]:
    """(tokens per tile or None where tiles share tokens, tokens not attributed to one tile)."""
    total = geom.num_tokens(layout)
    grids = geom.grids(layout)
    name, cfg = _name(geom), geom.connector_cfg
    per: list = [None] * layout.num_tiles
    if name in GRID_CONNECTORS:
        per = [w * h for w, h in _out_grids(geom, layout)]
    elif name in ("llava_next", "anyres_max"):
        for i in layout.indices("overview"):
            per[i] = grids[i][0] * grids[i][1]
        if getattr(cfg, "merge", None) == "flat":
            for i in layout.indices("local"):
                per[i] = grids[i][0] * grids[i][1]
    elif name == "hiwin":
        for i in range(layout.num_tiles):
            if layout.roles[i] == "overview" or cfg.token_order == "official":
                per[i] = cfg.grid_size ** 2
    known = sum(v for v in per if v is not None)
    return per, total - known


# --- where each visual token comes from --------------------------------------------------------------------------

def _cells(box, cols: int, rows: int, crop=None) -> list:
    """Row-major cell boxes of a ``cols`` x ``rows`` grid laid over ``box``; ``crop`` = (x0, y0, w, h) keeps a
    sub-grid (in cells) of it."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cw, ch = (x1 - x0) / cols, (y1 - y0) / rows
    cx, cy, w, h = crop or (0, 0, cols, rows)
    return [(x0 + (cx + j) * cw, y0 + (cy + i) * ch, x0 + (cx + j + 1) * cw, y0 + (cy + i + 1) * ch)
            for i in range(h) for j in range(w)]


def _canvas_box(layout, idx: list[int]):
    boxes = [layout.boxes[i] for i in idx]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _with_newlines(cells: list, w: int, h: int) -> list:
    out = []
    for r in range(h):
        out += cells[r * w:(r + 1) * w] + [None]
    return out


def token_regions(geom, layout) -> list:
    """One entry per visual token, in the connector's order: its source box (x0, y0, x1, y1) in image pixels, or
    None where the token has no spatial source (a newline or separator embedding). ``len`` equals
    ``geom.num_tokens(layout)``."""
    from .slicers.geometry import unpadded_size

    name, cfg, grids = _name(geom), geom.connector_cfg, geom.grids(layout)
    if len(layout.boxes) != layout.num_tiles:
        raise LoupeError(f"the layout has {layout.num_tiles} tiles but {len(layout.boxes)} boxes; cannot place tokens")
    out: list = []
    if name in GRID_CONNECTORS:
        for box, (w, h) in zip(layout.boxes, _out_grids(geom, layout)):
            out += _cells(box, w, h)
    elif name in ("llava_next", "anyres_max"):
        over, local, fmap = geom.connector_cls._split(layout, grids)
        for i in over:
            out += _cells(layout.boxes[i], *grids[i])
        if cfg.merge == "flat":
            for i in local:
                out += _cells(layout.boxes[i], *grids[i])
        elif fmap is None:
            out += [None] if cfg.merge == "spatial_unpad" else []
        else:
            canvas = _canvas_box(layout, local)
            if cfg.merge == "spatial":
                out += _cells(canvas, *fmap)
            else:
                w, h = unpadded_size(layout.image_size, fmap, cfg.unpad_rounding)
                crop = ((fmap[0] - w) // 2, (fmap[1] - h) // 2, w, h)
                kept = _cells(canvas, *fmap, crop=crop)
                if name == "anyres_max":
                    from .connectors.anyres_max import anyres_max_size

                    nw, nh = anyres_max_size((w, h), grids[local[0]], cfg.max_num_patches)
                    if (nw, nh) != (w, h):  # bilinear resize of the unpadded map: the same region, coarser cells
                        x0, y0 = kept[0][:2]
                        x1, y1 = kept[-1][2:]
                        kept, w, h = _cells((x0, y0, x1, y1), nw, nh), nw, nh
                out += _with_newlines(kept, w, h)
    elif name == "hiwin":
        g = cfg.grid_size
        local, over, _ = geom.connector_cls._roles(layout)
        if not local:
            for i in over:
                out += _cells(layout.boxes[i], g, g)
        elif cfg.token_order == "official":
            for i in local:
                out += _cells(layout.boxes[i], g, g) + [None]
            for i in over:
                out += _cells(layout.boxes[i], g, g)
        else:
            cols, rows = layout.grid
            out += _with_newlines(_cells(_canvas_box(layout, local), cols * g, rows * g), cols * g, rows * g)
            out.append(None)
            for i in over:
                out += _cells(layout.boxes[i], g, g)
    elif name == "dem":
        loc, _, _, (gw, gh) = geom.connector_cls._plan(cfg, layout, grids)
        s = cfg.out_scale
        out += _cells(_canvas_box(layout, loc), gw * s, gh * s)
    else:
        raise LoupeError(f"token_regions does not know the {name!r} connector's token order")
    total = geom.num_tokens(layout)
    if len(out) != total:  # a mapping bug, never a user error
        raise LoupeError(f"token_regions placed {len(out)} tokens for {name}, the geometry counts {total}")
    return out


def density(regions: list, weights, image_size) -> np.ndarray:
    """Spread ``weights`` (one per token) over the image: each token's weight uniformly over its box, pixels
    weighted by the fraction of them the box covers (exact for fractional boxes); the part of a box over the
    canvas padding (outside the image) is lost. Returns an (H, W) array of weight per pixel."""
    w, h = (int(v) for v in image_size)
    keep = [(b, float(v)) for b, v in zip(regions, weights) if b is not None and v != 0]
    if not keep:
        return np.zeros((h, w))
    boxes = np.array([b for b, _ in keep], dtype=np.float64)
    vals = np.array([v for _, v in keep]) / np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
                                                      1e-12)

    def overlap(lo, hi, n):  # (T, n): length of [lo, hi) inside each pixel [k, k + 1)
        k = np.arange(n, dtype=np.float64)
        return np.clip(np.minimum(hi[:, None], k + 1) - np.maximum(lo[:, None], k), 0, None)

    xs, ys = overlap(boxes[:, 0], boxes[:, 2], w), overlap(boxes[:, 1], boxes[:, 3], h)
    return (ys * vals[:, None]).T @ xs


# --- attention ---------------------------------------------------------------------------------------------------

@dataclass
class AttentionMap:
    """Attention from the answer to one image's visual tokens.

    ``weights``: one per visual token (connector order), summing to 1; ``regions``: their source boxes
    (:func:`token_regions`, None = no spatial source); ``heat``: (H, W) weight per image pixel of the tokens that
    have a region (renormalised to sum to 1 over them); ``dropped``: indices of the visual tokens without a region
    and ``dropped_mass`` their share of ``weights``."""

    question: str
    answer: str
    layout: object
    weights: np.ndarray
    regions: list
    heat: np.ndarray
    dropped: list = field(default_factory=list)
    dropped_mass: float = 0.0
    answer_tokens: int = 0

    def note(self) -> str:
        if not self.dropped:
            return "every visual token has a source region"
        return (f"{len(self.dropped)} visual tokens with no spatial source (newlines/separators) dropped from the "
                f"map: {self.dropped_mass:.1%} of the attention")


def attention_map(model, processor, image, question: str, max_new_tokens: int = 16, answer: str | None = None,
                  slicer: dict | None = None) -> AttentionMap:
    """Greedy answer to ``question`` about ``image`` and the LLM's attention from the answer to the image.

    The prompt is the chat template of one user turn (image, then question), as ``loupe chat`` builds it. The
    answer's tokens are appended and the whole sequence runs once with ``attn_implementation="eager"`` and
    ``output_attentions=True``; the queries are the positions that predicted the answer tokens (the last prompt
    token and every answer token but the last), averaged over them, over layers and heads. Pass ``answer`` to
    explain a given answer instead of generating one, and ``slicer`` (a config from
    :func:`loupe.budget.choose_slicer`) to run the image under a token budget."""
    import torch

    from .geometry import ImageGeometry
    from .images import load_image
    from .serving.chat import user_message

    img = load_image(image)
    tok = processor.tokenizer
    prompt = tok.apply_chat_template([user_message(question, 1)], tokenize=False, add_generation_prompt=True)
    extra = {"image_slicers": [slicer]} if slicer is not None else {}
    enc = processor(images=[img], text=[prompt], add_special_tokens=False, **extra)
    gen_extra = {"image_layouts": enc["image_layouts"]} if enc.get("image_layouts") is not None else {}
    lm = model.language_model
    old = lm.config._attn_implementation
    with torch.no_grad():
        ids = enc["input_ids"]
        if answer is None:
            out = model.generate(**{k: v for k, v in enc.items() if k != "image_layouts"}, **gen_extra,
                                 max_new_tokens=max_new_tokens, do_sample=False)
            new = out[0, ids.shape[1]:]
            answer = tok.decode(new, skip_special_tokens=True).strip()
        else:
            new = torch.tensor(tok(answer, add_special_tokens=False)["input_ids"], dtype=torch.long)
        if new.numel() == 0:
            raise LoupeError("the answer is empty: there is no answer token to take attention from")
        full = torch.cat([ids[0], new.to(ids.device)])[None]
        try:
            lm.set_attn_implementation("eager")
            res = model(input_ids=full, attention_mask=torch.ones_like(full), pixel_values=enc["pixel_values"],
                        image_sizes=enc["image_sizes"], image_layouts=enc.get("image_layouts"),
                        output_attentions=True, use_cache=False, logits_to_keep=1)
        finally:
            lm.set_attn_implementation(old)
    if not res.attentions:
        raise LoupeError("the language model returned no attentions (eager attention unsupported?)")
    att = torch.stack([a[0].float() for a in res.attentions]).mean((0, 1))  # (L, L) over layers and heads
    n = ids.shape[1]
    rows = att[n - 1: n - 1 + new.numel()].mean(0)  # queries that predicted each answer token
    layouts = enc.get("image_layouts") or model.layouts(enc["image_sizes"])
    layout = layouts[0]
    ip = processor.image_processor
    geom = ip.geometry if slicer is None else ImageGeometry(slicer, ip.vision, ip.connector)
    regions = token_regions(geom, layout)
    # the image's positions: its whole token-plan run (visual slots and text spans such as UHD v2's separators)
    start = int((full[0] == processor.image_token_id).nonzero().flatten()[0])
    slots = torch.arange(start, start + geom.num_tokens(layout), device=rows.device)
    w = rows[slots].double().cpu().numpy()
    if w.sum() <= 0:
        raise LoupeError("the answer gave no attention to the visual tokens")
    w = w / w.sum()
    if len(regions) != len(w):
        raise LoupeError(f"{len(w)} image slots in the prompt but the layout places {len(regions)} tokens")
    dropped = [i for i, r in enumerate(regions) if r is None]
    mass = float(w[dropped].sum()) if dropped else 0.0
    kept = w.copy()
    kept[dropped] = 0
    heat = density(regions, kept / max(kept.sum(), 1e-12), img.size)
    return AttentionMap(question, answer, layout, w, regions, heat, dropped, mass, int(new.numel()))


# --- figures -----------------------------------------------------------------------------------------------------

COLOURS = {"overview": "tab:blue", "local": "tab:orange", "global": "tab:green"}


def _draw_layout(ax, img, layout, per, show_labels: bool = True):
    from matplotlib.patches import Rectangle

    w, h = img.size
    xs = [b[0] for b in layout.boxes] + [b[2] for b in layout.boxes] + [0, w]
    ys = [b[1] for b in layout.boxes] + [b[3] for b in layout.boxes] + [0, h]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:  # the canvas padding, hatched grey
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor="0.55", edgecolor="none", hatch="//",
                               zorder=0))
    ax.imshow(img, extent=(0, w, h, 0), zorder=1)
    order = [i for i, r in enumerate(layout.roles) if r == "local"] + \
            [i for i, r in enumerate(layout.roles) if r != "local"]
    nested = 0
    unit = max(x1 - x0, y1 - y0) / 150
    for i in order:
        role, (bx0, by0, bx1, by1) = layout.roles[i], layout.boxes[i]
        c = COLOURS.get(role, "tab:red")
        inset = 0 if role == "local" else unit * (1 + nested % 6)
        nested += role != "local"
        ax.add_patch(Rectangle((bx0 + inset, by0 + inset), bx1 - bx0 - 2 * inset, by1 - by0 - 2 * inset, fill=False,
                               edgecolor=c, linewidth=2 if role != "global" else 1.2, zorder=3,
                               linestyle="-" if role == "local" else "--"))
        if show_labels and (role != "global" or nested <= 1):
            label = f"{i}:{role}" + (f" {per[i]}t" if per[i] is not None else "")
            if role == "global":
                g = layout.indices("global")
                label = f"{g[0]}-{g[-1]}:global x{len(g)}"
            top = role == "local"  # local labels top-left, whole-image tiles bottom-left (no overlap)
            ax.text(bx0 + inset + unit, (by0 + inset + unit) if top else (by1 - inset - unit - 8 * unit * (role == "global")),
                    label, color="white", fontsize=7, va="top" if top else "bottom", zorder=4,
                    bbox=dict(facecolor=c, alpha=0.75, pad=1, linewidth=0))
    ax.set_xlim(x0 - unit, x1 + unit)
    ax.set_ylim(y1 + unit, y0 - unit)
    ax.axis("off")


def plan_figure(image, layout, geom=None, output: str | None = None, title: str | None = None,
                attention: AttentionMap | None = None):
    """Draw the layout's tiles (boxes by role, tokens per tile, the padding hatched) over ``image``; with
    ``attention``, a second panel with the heat map and the answer. Saves to ``output`` (.png) if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .images import load_image

    img = load_image(image)
    per, other = tokens_per_tile(geom, layout) if geom is not None else ([None] * layout.num_tiles, 0)
    panels = 2 if attention is not None else 1
    aspect = img.size[1] / max(img.size[0], 1)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 5.2 * min(max(aspect, 0.5), 1.6) + 0.9), dpi=100,
                             squeeze=False)
    ax = axes[0][0]
    _draw_layout(ax, img, layout, per)
    total = geom.num_tokens(layout) if geom is not None else None
    head = f"{layout.num_tiles} tiles, {total} visual tokens" if total is not None else f"{layout.num_tiles} tiles"
    if other:
        head += f" ({other} shared)"
    ax.set_title(head if title is None else f"{title}\n{head}", fontsize=9)
    if attention is not None:
        ax2 = axes[0][1]
        w, h = img.size
        ax2.imshow(img, extent=(0, w, h, 0))
        heat = attention.heat
        lo, hi = float(heat.min()), float(heat.max())  # min-max stretched: the contrast is the information
        ax2.imshow((heat - lo) / max(hi - lo, 1e-12), extent=(0, w, h, 0), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
        ax2.set_xlim(0, w)
        ax2.set_ylim(h, 0)
        ax2.axis("off")
        ans = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in attention.answer)
        ans = ans if len(ans) <= 60 else ans[:57] + "..."
        ax2.set_title(f"Q: {attention.question}\nA: {ans}\n{attention.note()}", fontsize=7)
    fig.tight_layout()
    if output:
        fig.savefig(output)
        plt.close(fig)
    return fig


def html_page(fig, geom, layout, attention: AttentionMap | None = None, title: str = "loupe show") -> str:
    """One self-contained HTML page: the figure as an inline PNG and a table of the tiles."""
    import html

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    png = base64.b64encode(buf.getvalue()).decode()
    per, other = tokens_per_tile(geom, layout)
    rows = "".join(
        f"<tr><td>{i}</td><td>{r}</td><td>{s[0]}x{s[1]}</td><td>{', '.join(f'{v:.0f}' for v in b)}</td>"
        f"<td>{'shared' if t is None else t}</td></tr>"
        for i, (r, s, b, t) in enumerate(zip(layout.roles, layout.tile_sizes, layout.boxes, per)))
    extra = ""
    if attention is not None:
        extra = (f"<p><b>Q:</b> {html.escape(attention.question)}<br><b>A:</b> {html.escape(attention.answer)}<br>"
                 f"{html.escape(attention.note())}</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font:14px system-ui,sans-serif;margin:1em}td,th{border:1px solid #ccc;padding:2px 6px}"
            "table{border-collapse:collapse}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><img src='data:image/png;base64,{png}' alt='layout'>{extra}"
            f"<p>{layout.num_tiles} tiles, {geom.num_tokens(layout)} visual tokens"
            f"{f' ({other} shared between tiles)' if other else ''}; image {layout.image_size[0]}x"
            f"{layout.image_size[1]}</p><table><tr><th>#</th><th>role</th><th>size</th><th>box (image px)</th>"
            f"<th>tokens</th></tr>{rows}</table></body></html>")
