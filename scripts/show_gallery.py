"""Write ``docs/show/<preset>.png``: ``loupe show``'s tile/token figure for every method's tiny preset on one
photo-like generated image (a landscape: sky gradient, sun, hills, a house, trees, film grain), so the figures
show the same picture cut by each method. Layouts only (presets carry no trained weights, so no attention panel).

Usage: ``python scripts/show_gallery.py [--out docs/show] [--size 640x400] [--presets P ...]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PRESETS = ["llava15-tiny", "llava-next-tiny", "fila-tiny", "llava-uhd-v2-tiny", "inf-llava-tiny", "convllava-tiny",
           "internvl-tiny", "llava-onevision-tiny", "qwen2-vl-tiny"]


def photo(w: int = 640, h: int = 400, seed: int = 0) -> Image.Image:
    """A deterministic photo-like scene (no external data)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h)[:, None, None]
    sky = (1 - y) * np.array([90, 150, 230]) + y * np.array([200, 220, 245])
    img = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8).copy())
    d = ImageDraw.Draw(img)
    d.ellipse([w * 0.75, h * 0.08, w * 0.87, h * 0.08 + w * 0.12], fill=(255, 225, 120))
    for k, (base, amp, col) in enumerate([(0.55, 0.08, (95, 140, 90)), (0.68, 0.06, (60, 115, 60))]):
        xs = np.arange(w + 1)
        ys = h * base + h * amp * np.sin(xs / w * (3 + 2 * k) * np.pi + k)
        d.polygon([(0, h)] + list(zip(xs.tolist(), ys.tolist())) + [(w, h)], fill=col)
    hx, hy, hw = w * 0.22, h * 0.58, w * 0.16  # a house
    d.rectangle([hx, hy, hx + hw, hy + hw * 0.7], fill=(200, 70, 60))
    d.polygon([(hx - 8, hy), (hx + hw / 2, hy - hw * 0.45), (hx + hw + 8, hy)], fill=(110, 60, 50))
    d.rectangle([hx + hw * 0.4, hy + hw * 0.35, hx + hw * 0.6, hy + hw * 0.7], fill=(70, 45, 30))
    d.rectangle([hx + hw * 0.1, hy + hw * 0.15, hx + hw * 0.3, hy + hw * 0.32], fill=(230, 240, 255))
    for tx in (0.55, 0.63, 0.7, 0.08):  # trees
        x, top = w * tx, h * (0.5 + 0.05 * rng.random())
        d.rectangle([x - 4, top + 40, x + 4, top + 75], fill=(90, 60, 35))
        d.ellipse([x - 26, top - 10, x + 26, top + 50], fill=(40, 100 + int(40 * rng.random()), 45))
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    arr = np.asarray(img).astype(np.int16) + rng.normal(0, 6, (h, w, 3)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/show")
    ap.add_argument("--size", default="640x400")
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import loupe
    from loupe.visualize import plan_figure

    w, h = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    img = photo(w, h)
    for name in args.presets:
        proc = loupe.build_processor(name)
        geom = proc.image_processor.geometry
        layout = geom.layout(img.size)
        fig = plan_figure(img, layout, geom, title=name)
        fig.savefig(out / f"{name}.png")
        plt.close(fig)
        print(f"{out / (name + '.png')}: {layout.num_tiles} tiles, {geom.num_tokens(layout)} visual tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
