"""A generated fine-grained benchmark: questions whose answers need detail lost at the 336-style base view.

Each image (light noisy background) holds one **big shape** (circle or square) in the left or right third,
a few small distractor shapes, and one **tag**: a 5x7 bitmap digit in dark ink on an 8x8 light label.
Questions, single-word answers scored by exact match:

* ``detail`` — "What is the digit on the tag?" (chance 10%): the tag is 8 px wide, so a 4x downscaled
  whole-image view turns it into a grey 2x2 blob, while a native-resolution tile shows it.
* ``layout`` — "Is the big shape on the left or the right?" (chance 50%): needs the whole image, and
  survives downscaling, so a low-resolution baseline can answer it (the task is fair, not broken for it).

Tags sit on the 8-px patch grid and wholly inside one ``tile``-px tile by default (measured: tags placed anywhere
learn far slower on a CPU budget, in a feasibility probe with tiny from-scratch models on 2 cores); ``straddle`` > 0
moves that share of tags across a tile boundary (for methods that fuse across crops), half a patch off the grid, and
``shift`` > 0 puts that share of the others half a patch off the grid too but wholly inside one tile (whole tags at
the straddling tags' patch phase: pretraining data for the tile-border test). Sizes are drawn from ``sizes``
(multiples of ``tile``), so images of several aspect ratios appear. Deterministic from ``seed``; train and test come
from different seeds. Written as LLaVA-format JSON (``id``, ``image``, ``conversations``): train records are one
two-turn conversation per image (both questions, random order); test records are one question each, with ``category``
and ``answer`` fields for scoring.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# 5x7 bitmap digits, rows top to bottom, '#' = ink
_FONT = {
    "0": [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
    "1": ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
    "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
    "3": ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."],
    "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
    "5": ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
    "6": ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],
    "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
    "8": [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
    "9": [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."],
}
GLYPHS = {d: np.array([[c == "#" for c in row] for row in rows], dtype=bool) for d, rows in _FONT.items()}

QUESTIONS = {
    "detail": "What is the digit on the tag? Answer with a single word.",
    "layout": "Is the big shape on the left or the right? Answer with a single word.",
}
COLOURS = [(200, 40, 40), (40, 150, 60), (40, 70, 200), (200, 160, 30), (140, 60, 170), (30, 150, 160)]


@dataclass
class SynthConfig:
    n_train: int = 2000
    n_test: int = 500
    seed: int = 0
    test_seed: int = 1
    sizes: list = field(default_factory=lambda: [[128, 128]])  # (width, height) choices, multiples of tile
    tile: int = 32
    patch: int = 8
    straddle: float = 0.0
    straddle_corner: bool = False  # a straddling tag sits on a tile corner (a quarter in each of 4 tiles)
    shift: float = 0.0  # share of the other tags moved half a patch right, still wholly inside their tile
    distractors: tuple = (2, 5)

    def __post_init__(self):
        from ..errors import LoupeError

        if self.n_train < 0 or self.n_test < 0:
            raise LoupeError(f"n_train and n_test must be >= 0, got {self.n_train} and {self.n_test}")
        if not 0.0 <= self.straddle <= 1.0:
            raise LoupeError(f"straddle is a share of the tags, 0..1; got {self.straddle}")
        if not 0.0 <= self.shift <= 1.0:
            raise LoupeError(f"shift is a share of the tags, 0..1; got {self.shift}")


def _draw_shape(a: np.ndarray, kind: str, cx: int, cy: int, r: int, colour) -> None:
    h, w, _ = a.shape
    yy, xx = np.ogrid[:h, :w]
    if kind == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    else:
        mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    a[mask] = colour


def render(rng: np.random.Generator, width: int, height: int, cfg: SynthConfig) -> tuple[np.ndarray, dict]:
    """One image and its facts: {"digit", "side", "tag_box"}."""
    a = (235 + rng.integers(-12, 13, size=(height, width, 3))).clip(0, 255).astype(np.uint8)
    side = "left" if rng.random() < 0.5 else "right"
    r = int(min(width, height) * rng.uniform(0.12, 0.18))
    third = width // 3
    cx = int(rng.integers(r, max(r + 1, third - r))) + (0 if side == "left" else width - third)
    cy = int(rng.integers(r, height - r))
    _draw_shape(a, "circle" if rng.random() < 0.5 else "square", cx, cy, r, COLOURS[rng.integers(len(COLOURS))])
    for _ in range(int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))):
        _draw_shape(a, "circle" if rng.random() < 0.5 else "square", int(rng.integers(4, width - 4)),
                    int(rng.integers(4, height - 4)), int(rng.integers(2, 4)), COLOURS[rng.integers(len(COLOURS))])
    digit = str(int(rng.integers(10)))
    t, p = cfg.tile, cfg.patch
    if rng.random() < cfg.straddle:  # across a vertical tile boundary
        bx = int(rng.integers(1, width // t)) * t - p // 2
        by = (int(rng.integers(1, height // t)) * t - p // 2 if cfg.straddle_corner
              else int(rng.integers(0, height // p)) * p)
    else:
        tx, ty = int(rng.integers(width // t)), int(rng.integers(height // t))
        bx = tx * t + int(rng.integers(t // p)) * p
        by = ty * t + int(rng.integers(t // p)) * p
        if cfg.shift and rng.random() < cfg.shift:  # the straddling tags' patch phase, inside one tile
            bx = tx * t + int(rng.integers(t // p - 1)) * p + p // 2
    label = np.full((p, p, 3), 250, dtype=np.uint8)
    glyph = GLYPHS[digit]
    label[(p - 7) // 2 : (p - 7) // 2 + 7, (p - 5) // 2 : (p - 5) // 2 + 5][glyph] = (20, 20, 20)
    a[by : by + p, bx : bx + p] = label
    return a, {"digit": digit, "side": side, "tag_box": [bx, by, bx + p, by + p]}


def generate(out_dir: str | Path, cfg: SynthConfig | None = None) -> dict:
    """Write ``images/``, ``train.json``, ``test.json`` and ``synth_config.json``; returns paths and counts."""
    cfg = cfg or SynthConfig()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    result = {}
    for split, n, seed in (("train", cfg.n_train, cfg.seed), ("test", cfg.n_test, cfg.test_seed)):
        rng = np.random.default_rng(seed)
        records = []
        for i in range(n):
            w, h = cfg.sizes[int(rng.integers(len(cfg.sizes)))]
            img, facts = render(rng, int(w), int(h), cfg)
            name = f"{split}_{i:05d}.png"
            Image.fromarray(img).save(out / "images" / name, optimize=False, compress_level=1)
            answers = {"detail": facts["digit"], "layout": facts["side"]}
            common = {"image": name, "image_size": [int(w), int(h)], "tag_box": facts["tag_box"],
                      "digit": facts["digit"], "side": facts["side"]}
            if split == "train":  # one two-turn conversation per image, questions in random order
                cats = ["detail", "layout"] if rng.random() < 0.5 else ["layout", "detail"]
                conv = []
                for k, cat in enumerate(cats):
                    conv += [{"from": "human", "value": ("<image>\n" if k == 0 else "") + QUESTIONS[cat]},
                             {"from": "gpt", "value": answers[cat]}]
                records.append({"id": f"{split}-{i:05d}", "conversations": conv, "category": "both", **common})
                continue
            for cat in ("detail", "layout"):
                records.append({
                    "id": f"{split}-{i:05d}-{cat}",
                    "conversations": [
                        {"from": "human", "value": "<image>\n" + QUESTIONS[cat]},
                        {"from": "gpt", "value": answers[cat]},
                    ],
                    "category": cat,
                    "answer": answers[cat],
                    **common,
                })
        path = out / f"{split}.json"
        path.write_text(json.dumps(records, indent=0))
        result[split] = {"path": str(path), "records": len(records), "images": n}
    (out / "synth_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    result["image_root"] = str(out / "images")
    return result
