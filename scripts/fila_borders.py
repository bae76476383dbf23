"""Tile borders: does FILA's ConvNeXt branch read what the crops cut in half? ``demo-fila`` vs itself without it.

FILA's abstract claims cropping "truncates objects ... causing semantic breaks" and that its Hybrid Encoder, which
lets the crops interact with global high-resolution features, fixes it (Fig. 1(b)/(c): answers lost when they
touch a crop line). This script measures that claim at CPU scale on Loupe's generated benchmark
(:mod:`loupe.data.synth`) with ``straddle=1.0``: every digit tag sits across a vertical tile boundary, 4 px in each
32 px tile, so no single tile holds the whole glyph and the 32 px overview shows a grey blob.

Arms (same preset, same data, same budgets, same seeds; only the ConvNeXt branch differs):

* ``fila``     — ``demo-fila``: anyres 32 px tiles (+ overview) through a small CLIP ViT, a 2-stage ConvNeXt over the
  whole canvas, CVFM after ViT blocks 1 and 2 (zero-initialised).
* ``no-conv``  — ``demo-fila`` with ``vision.fusion="none"``: exactly the CLIP ViT on the anyres tiles (LLaVA-NeXT).

Protocol ([LOUPE] stand-ins at demo scale, ``../shared/specs/demo-learning-facts.md``; identical for both arms):

1. Stand-ins for the pretrained towers (FILA starts from CLIP and a LAION ConvNeXt, both pretrained on whole
   images), on a separate pretraining set (another seed than the task) whose tags are never cut by a tile border
   but sit at both patch phases: ``pretrain_shift=0.5`` puts half of them half a patch off the 8 px grid, inside
   one tile — the phase the straddling tags have (CLIP sees objects at every position, but never a crop line):
   a. the ViT, on every view: a linear head on the view's mean-pooled features names the digit the view shows
      (or "none") and, on the overview, the big shape's side; the same weights go into both arms;
   b. the ConvNeXt (fila arm only; the baseline has no such part), on the whole canvas: the digit from the
      max-pooled last-stage map and the side from the mean.
   Both stop once held-out accuracy >= ``gate`` (after ``min_steps``) or at ``*_steps``.
2. Instruction training per arm with Loupe's recipe runner, the connector and LLM starting from the **same**
   weights in both arms (a paired comparison: only the branch differs): each image a two-turn conversation
   (digit, side), ``train_steps`` steps of batch ``batch`` at lr 1e-3. ``recipe="fila"`` (default) trains FILA's
   stage-2 set: CVFM + connector + LLM with both towers frozen (as the released CLIP and ConvNeXt are; the baseline
   then trains connector + LLM, LLaVA-NeXT's stage 1 set); ``recipe="all"`` trains every part (the demo's stage 2).
3. Greedy answers on the straddle test set (another seed), exact match per question kind.

Variants measured on the way (``--summarize`` tabulates them; all in the #8 notes): pretraining with half the
tags straddling and every view that shows any part of a tag labelled with its digit (``--pretrain-straddle 0.5
--pretrain-shift 0``: the ViT is taught to read half glyphs, both arms ~95 %); grid-aligned pretraining only
(``--pretrain-shift 0``: the tags of the task then sit at a patch phase neither tower has seen, both arms at
chance); per-token / per-cell pretraining (``--dense``: both at chance); tags on tile corners (``--corner``); one
token per view (``--pool 4``).

Images are 96x96 (3x3 tiles + overview = 10 views; pinpoint [96, 96]) rather than the demo's 128 px to halve CPU
time. Usage: ``python scripts/fila_borders.py [--quick] [--seed N] [--output out/fila_borders]`` -> stdout lines,
``results.json``, ``results.md``; ``--summarize out/fila_borders*`` tabulates finished runs. One run at the default
budget takes about 2 min on 2 free cores.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import loupe
from loupe.data.synth import SynthConfig, generate
from loupe.images import load_image

PRESET = "demo-fila"
SIZE = [96, 96]
NONE = 10
ARMS = {"fila": {}, "no-conv": {"vision": {"name": "hybrid", "fusion": "none"}}}


@dataclass
class BorderConfig:
    output: str = "out/fila_borders"
    seed: int = 0
    n_pretrain: int = 1500
    n_train: int = 2000
    n_test: int = 300
    vit_steps: int = 400
    conv_steps: int = 300
    min_steps: int = 150
    gate: float = 0.9
    pre_batch: int = 8
    pre_lr: float = 2e-3
    train_steps: int = 300
    batch: int = 16
    lr: float = 1e-3
    threads: int = 2
    corner: bool = False  # tags on tile corners (a quarter in each of 4 tiles) instead of vertical borders
    pool: int | None = None  # connector pooling (None: the preset's 2x2, 4 tokens per 32 px view; 4: one token)
    recipe: str = "fila"  # "fila": towers frozen, CVFM + connector + LLM train; "all": every part trains
    straddle: float = 1.0  # share of task tags across a tile border (0: a control where every tag fits one tile)
    dense: bool = False  # stand-in pretraining per token / cell (every token names the digit it overlaps) not pooled
    pretrain_shift: float = 0.5  # share of pretraining tags half a patch off the grid, wholly inside one tile
    pretrain_straddle: float = 0.0  # share of pretraining tags across a tile border (0: whole objects, like CLIP's)
    arms: list = field(default_factory=lambda: list(ARMS))

    @classmethod
    def quick(cls, **kw):
        return cls(**{"n_pretrain": 1000, "n_train": 1200, "n_test": 150, "vit_steps": 300, "conv_steps": 200,
                      "train_steps": 150, **kw})


def overrides(arm: str, pool: int | None = None) -> dict:
    over = {"slicer": {"name": "anyres", "pinpoints": [SIZE]}, **ARMS[arm]}
    if pool:
        over["connector"] = {"pool": pool}
    return over


def build(arm: str, pool: int | None = None):
    """(model, processor) of an arm: ``loupe.build`` gives the processor the same overrides as the model."""
    return loupe.build(PRESET, **overrides(arm, pool))


# --- stage 1: stand-ins for the pretrained towers ----------------------------------------------------------------
def _overlaps(a, b) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 0 and min(a[3], b[3]) - max(a[1], b[1]) > 0


def view_labels(layout, rec) -> list[tuple[int, int, bool]]:
    """Per view: (digit shown in any part, else NONE; side on the overview else -100; tag wholly inside)."""
    tag, out = rec["tag_box"], []
    for role, box in zip(layout.roles, layout.boxes):
        inside = box[0] <= tag[0] and box[1] <= tag[1] and tag[2] <= box[2] and tag[3] <= box[3]
        digit = int(rec["digit"]) if _overlaps(box, tag) else NONE
        out.append((digit, (0 if rec["side"] == "left" else 1) if role == "overview" else -100, inside))
    return out


def cell_labels(box, grid: tuple[int, int], tag, digit: int) -> torch.Tensor:
    """(gh, gw) labels of the cells of ``box`` (image coordinates): the digit where a cell overlaps the tag, else
    NONE."""
    (gh, gw), (x0, y0, x1, y1) = grid, box
    cw, ch = (x1 - x0) / gw, (y1 - y0) / gh
    return torch.tensor([[digit if _overlaps((x0 + j * cw, y0 + i * ch, x0 + (j + 1) * cw, y0 + (i + 1) * ch), tag)
                          else NONE for j in range(gw)] for i in range(gh)])


class Views:
    """Pixel views of the pretraining images, processed once (10 views of 32 px per 96 px image)."""

    def __init__(self, records, root: Path, image_processor):
        self.items = []
        for rec in records:
            feats, (layout,) = image_processor.process([load_image(root / rec["image"])])
            self.items.append((feats["pixel_values"], layout, view_labels(layout, rec), rec))
        self.size = load_image(root / records[0]["image"]).size  # (W, H); every image here has one size

    def dense(self, idx, grid: tuple[int, int], canvas: bool = False) -> torch.Tensor:
        """Per-cell digit labels: (B, gh, gw) over each image's canvas, or (views, gh, gw) over each view
        (local tiles only; the overview's cells are ignored, -100)."""
        out = []
        for i in idx:
            _, layout, _, rec = self.items[i]
            tag, digit = rec["tag_box"], int(rec["digit"])
            if canvas:
                out.append(cell_labels((0, 0, *self.size), grid, tag, digit))
                continue
            out += [cell_labels(box, grid, tag, digit) if role == "local" else torch.full(grid, -100)
                    for role, box in zip(layout.roles, layout.boxes)]
        return torch.stack(out)

    def batch(self, idx):
        items = [self.items[i] for i in idx]
        labels = [lab for it in items for lab in it[2]]
        return (torch.cat([it[0] for it in items]), [it[1] for it in items], torch.tensor([d for d, _, _ in labels]),
                torch.tensor([s for _, s, _ in labels]), torch.tensor([w for _, _, w in labels]),
                torch.tensor([int(it[3]["digit"]) for it in items]),
                torch.tensor([0 if it[3]["side"] == "left" else 1 for it in items]))


def _train_loop(params, loss_fn, eval_fn, n_items, cfg: BorderConfig, max_steps: int, name: str, log) -> dict:
    opt = torch.optim.AdamW(params, lr=cfg.pre_lr, weight_decay=0.01)
    warm = 30
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (
        1 + torch.cos(torch.tensor(torch.pi * min(s, max_steps) / max_steps)).item()))
    rng, held, gate_log, t0 = random.Random(cfg.seed), list(range(64)), [], time.time()
    train = list(range(64, n_items))
    for step in range(1, max_steps + 1):
        loss = loss_fn(rng.sample(train, cfg.pre_batch))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0:
            acc = eval_fn(held)
            gate_log.append({"step": step, "loss": round(loss.item(), 4), "accuracy": round(acc, 3)})
            log(f"[{name}] step {step}: loss {loss.item():.3f}, held-out accuracy {acc:.3f} ({time.time() - t0:.0f}s)")
            if step >= cfg.min_steps and acc >= cfg.gate:
                break
    return {"steps": step, "accuracy": gate_log[-1]["accuracy"] if gate_log else None, "log": gate_log,
            "seconds": round(time.time() - t0, 1)}


def pretrain_vit(encoder, views: Views, cfg, log) -> dict:
    """The ViT alone (``fusion="none"`` encoder): digit per view (any part of the tag), side on the overview."""
    dim = encoder.out_dim
    heads = nn.ModuleDict({"digit": nn.Linear(dim, 11), "side": nn.Linear(dim, 2)})
    weight = torch.tensor([1.0] * 10 + [0.2])
    encoder.train()

    def logits(idx):
        pix, lays, digit, side, whole, _, _ = views.batch(idx)
        tokens = encoder(pix, layouts=lays)  # (views, gh, gw, C)
        f = tokens.mean(dim=(1, 2))
        if cfg.dense:  # every token names the digit it overlaps (local tiles)
            labels = views.dense(idx, tokens.shape[1:3]).flatten()
            return heads["digit"](tokens).flatten(0, 2), heads["side"](f), labels, side, None, lays
        return heads["digit"](f), heads["side"](f), digit, side, whole, lays

    def loss_fn(idx):
        d, s, digit, side, _, _ = logits(idx)
        return F.cross_entropy(d, digit, weight=weight, ignore_index=-100) + F.cross_entropy(s, side, ignore_index=-100)

    @torch.no_grad()
    def eval_fn(idx):  # tags wholly inside a local tile (the views a ViT can read)
        d, _, digit, _, whole, lays = logits(idx)
        if cfg.dense:  # the tokens on a tag
            m = (digit >= 0) & (digit < NONE)
            return float((d.argmax(-1)[m] == digit[m]).float().mean()) if m.any() else 0.0
        local = torch.tensor([r == "local" for lay in lays for r in lay.roles])
        m = whole & local
        return float((d.argmax(-1)[m] == digit[m]).float().mean()) if m.any() else 0.0

    params = list(encoder.parameters()) + list(heads.parameters())
    return _train_loop(params, loss_fn, eval_fn, len(views.items), cfg, cfg.vit_steps, "pretrain ViT", log)


def pretrain_conv(encoder, views: Views, cfg, log) -> dict:
    """The ConvNeXt branch alone on the whole canvas (built from the tiles, as the encoder does)."""
    branch = encoder.conv_branch
    last = len(branch.config.depths)
    dim = branch.config.hidden_sizes[-1]
    heads = nn.ModuleDict({"norm": nn.LayerNorm(dim), "digit": nn.Linear(dim, 11 if cfg.dense else 10),
                           "side": nn.Linear(dim, 2)})
    weight = torch.tensor([1.0] * 10 + [0.2])

    def logits(idx):
        pix, lays, _, _, _, digit, side = views.batch(idx)
        jobs = [j for j in encoder.conv_jobs(pix, lays) if len(j.tiles) > 1]  # the canvases, one per image
        m = encoder.conv_stage_maps(torch.stack([j.image for j in jobs]), last)[last]  # (B, C, h, w)
        grid = m.shape[2:]
        m = heads["norm"](m.flatten(2).transpose(1, 2))
        if cfg.dense:  # every cell names the digit it overlaps
            labels = views.dense(idx, grid, canvas=True).flatten()
            return heads["digit"](m).flatten(0, 1), heads["side"](m.mean(1)), labels, side
        return heads["digit"](m.amax(1)), heads["side"](m.mean(1)), digit, side

    def loss_fn(idx):
        d, s, digit, side = logits(idx)
        return F.cross_entropy(d, digit, weight=weight if cfg.dense else None) + F.cross_entropy(s, side)

    @torch.no_grad()
    def eval_fn(idx):
        d, _, digit, _ = logits(idx)
        m = digit < NONE  # dense: the cells on a tag
        return float((d.argmax(-1)[m] == digit[m]).float().mean())

    params = list(branch.parameters()) + list(heads.parameters())
    return _train_loop(params, loss_fn, eval_fn, len(views.items), cfg, cfg.conv_steps, "pretrain ConvNeXt", log)


# --- stages 2-3: instruction training and scoring per arm ------------------------------------------------------------
def parts(arm: str, cfg: BorderConfig) -> dict:
    """Trainable parts per arm: FILA's stage-2 set (CVFM + projector + LLM; both towers frozen, as the released CLIP
    and ConvNeXt are) or, with ``recipe="all"``, every part (the demo's stage 2)."""
    if cfg.recipe == "all":
        return {"vision_tower": cfg.lr, "connector": cfg.lr, "language_model": cfg.lr}
    vision = {"vision_tower": {"lr": cfg.lr, "only": [r"vision_tower\.cvfm\."]}} if arm == "fila" else {}
    return {**vision, "connector": cfg.lr, "language_model": cfg.lr}


def train_and_score(arm: str, vit_state: dict, conv_state: dict | None, shared_state: dict, data: dict,
                    cfg: BorderConfig, out: Path, log) -> dict:
    from loupe.evaluation.predict import predict
    from loupe.training import recipe_from_dict, run_recipe

    torch.manual_seed(cfg.seed)
    model, proc = build(arm, cfg.pool)
    vt = model.vision_tower
    vt.vision_model.load_state_dict(vit_state)
    bad = model.load_state_dict(shared_state, strict=False).unexpected_keys
    assert not bad, f"shared weights the {arm} arm lacks: {bad[:3]}"
    if conv_state is not None:
        vt.conv_branch.load_state_dict(conv_state)
    init = out / arm / "init"
    model.save_pretrained(init)
    proc.save_pretrained(init)
    recipe = recipe_from_dict({
        "name": f"fila-borders-{arm}", "model": PRESET, "seed": cfg.seed,
        "data_root": str(Path(data["train"]["path"]).parent),
        "stages": [{
            "name": "instruct", "init_from": str(init),
            "data": {"path": "train.json", "image_root": "images", "template": "tiny"},
            "parts": parts(arm, cfg),
            "global_batch_size": cfg.batch, "per_device_batch_size": cfg.batch, "max_steps": cfg.train_steps,
            "max_length": 512, "schedule": "cosine", "warmup_ratio": 0.05, "weight_decay": 0.01, "max_grad_norm": 1.0,
            "save_steps": cfg.train_steps, "save_total_limit": 1, "logging_steps": 25, "group_by_length": False,
            "precision": "fp32",
        }],
    })
    t0 = time.time()
    final = run_recipe(recipe, output=out / arm / "train")[-1]
    train_s = time.time() - t0
    trained = loupe.LoupeForConditionalGeneration.from_pretrained(str(final))
    tproc = loupe.build_processor(str(final))
    test = json.loads(Path(data["test"]["path"]).read_text())
    preds = dict(predict(trained, tproc, test, data["image_root"], batch_size=32, max_new_tokens=4))
    by: dict[str, list[int]] = {}
    for r in test:
        by.setdefault(r["category"], []).append(int(preds[r["id"]].strip().lower().rstrip(".") == r["answer"].lower()))
    acc = {k: round(100 * sum(v) / len(v), 1) for k, v in sorted(by.items())}
    (out / arm / "predictions.json").write_text(json.dumps(preds, indent=0))
    row = {"arm": arm, "accuracy": acc, "train_seconds": round(train_s, 1),
           "parameters": sum(p.numel() for p in trained.parameters()),
           "visual_tokens": tproc.num_image_tokens(tuple(SIZE))}
    log(f"[{arm}] detail {acc.get('detail')}%, layout {acc.get('layout')}% ({train_s:.0f}s training)")
    return row


def run(cfg: BorderConfig, log=print) -> dict:
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    sizes = [list(SIZE)]
    pre = generate(out / "pretrain_data", SynthConfig(n_train=cfg.n_pretrain, n_test=0, seed=cfg.seed + 500,
                                                      sizes=sizes, straddle=cfg.pretrain_straddle,
                                                      straddle_corner=cfg.corner,
                                                      shift=cfg.pretrain_shift))
    data = generate(out / "data", SynthConfig(n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                                              test_seed=cfg.seed + 1000, sizes=sizes, straddle=cfg.straddle,
                                              straddle_corner=cfg.corner))
    log(f"[data] {cfg.n_pretrain} pretraining images (straddle {cfg.pretrain_straddle}, shift {cfg.pretrain_shift}), "
        f"{cfg.n_train} train / {cfg.n_test} test images "
        f"(straddle {cfg.straddle}) ({time.time() - t0:.0f}s)")
    torch.manual_seed(cfg.seed)
    fila, proc = build("fila", cfg.pool)
    base, _ = build("no-conv", cfg.pool)
    base.vision_tower.vision_model.load_state_dict(fila.vision_tower.vision_model.state_dict())  # one ViT init
    views = Views(json.loads(Path(pre["train"]["path"]).read_text()), Path(pre["image_root"]), proc.image_processor)
    torch.manual_seed(cfg.seed)
    rep_vit = pretrain_vit(base.vision_tower, views, cfg, log)
    torch.manual_seed(cfg.seed)
    rep_conv = pretrain_conv(fila.vision_tower, views, cfg, log) if "fila" in cfg.arms else None
    vit_state = {k: v.detach().clone() for k, v in base.vision_tower.vision_model.state_dict().items()}
    conv_state = {k: v.detach().clone() for k, v in fila.vision_tower.conv_branch.state_dict().items()}
    # connector + LLM start from the same weights in both arms (a paired comparison: only the branch differs)
    shared_state = {k: v.detach().clone() for k, v in base.state_dict().items() if not k.startswith("vision_tower.")}
    rows = [train_and_score(arm, vit_state, conv_state if arm == "fila" else None, shared_state, data, cfg, out, log)
            for arm in cfg.arms]
    result = {"config": asdict(cfg), "pretrain": {"vit": rep_vit, "conv": rep_conv}, "rows": rows,
              "total_seconds": round(time.time() - t0, 1)}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    md = ["| arm | detail % (straddling tags) | layout % | visual tokens | params | train s |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['arm']} | {r['accuracy'].get('detail')} | {r['accuracy'].get('layout')} | {r['visual_tokens']} | "
           f"{r['parameters']:,} | {r['train_seconds']} |" for r in rows]
    (out / "results.md").write_text("\n".join(md) + "\n")
    log("\n".join(md))
    return result


def summarize(folders) -> str:
    """One markdown row per finished run folder (its ``results.json``) and the mean per budget."""
    import statistics

    rows, by_budget = [], {}
    for f in folders:
        p = Path(f) / "results.json"
        if not p.is_file():
            continue
        r = json.loads(p.read_text())
        acc = {row["arm"]: row["accuracy"] for row in r["rows"]}
        if not {"fila", "no-conv"} <= set(acc):
            continue
        c = r["config"]
        budget = (f"{c['train_steps']} steps x {c['batch']}, {c['n_train']} images, "
                  f"{'towers frozen' if c.get('recipe', 'all') == 'fila' else 'all parts train'}, pretraining "
                  f"shift {c.get('pretrain_shift', 0.0)} / straddle {c.get('pretrain_straddle', 0.5)}"
                  + (", dense" if c.get("dense") else "") + (", corners" if c.get("corner") else "")
                  + (f", pool {c['pool']}" if c.get("pool") else "")
                  + (f", task straddle {c['straddle']}" if c.get("straddle", 1.0) != 1.0 else ""))
        pair = (acc["fila"]["detail"], acc["no-conv"]["detail"])
        by_budget.setdefault(budget, []).append(pair)
        rows.append(f"| {budget} | {c['seed']} | {pair[0]} | {pair[1]} | {pair[0] - pair[1]:+.1f} | "
                    f"{acc['fila']['layout']} / {acc['no-conv']['layout']} |")
    out = ["| budget | seed | fila detail % | no-conv detail % | difference | layout % (fila / no-conv) |",
           "|---|---|---|---|---|---|", *rows, ""]
    for budget, pairs in by_budget.items():
        f, b = [p[0] for p in pairs], [p[1] for p in pairs]
        wins = sum(x > y for x, y in pairs)
        sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
        d = [x - y for x, y in pairs]
        out.append(f"- {budget}: {len(pairs)} seeds, fila {statistics.mean(f):.1f} +- {sd(f):.1f}, no-conv "
                   f"{statistics.mean(b):.1f} +- {sd(b):.1f}, paired difference {statistics.mean(d):+.1f} +- "
                   f"{sd(d):.1f}, fila ahead in {wins}/{len(pairs)}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default="out/fila_borders")
    ap.add_argument("--quick", action="store_true",
                    help="smaller budgets (about half the time; 150 steps is too short for the zero-initialised CVFM: "
                         "FILA trails there, see the README)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--corner", action="store_true", help="tags on tile corners (4 quarters) instead of borders")
    ap.add_argument("--pool", type=int, default=None, help="connector pooling (4: one token per 32 px view)")
    ap.add_argument("--recipe", choices=["fila", "all"], default="fila",
                    help="fila: towers frozen, CVFM + connector + LLM train (default); all: every part trains")
    ap.add_argument("--straddle", type=float, default=1.0,
                    help="share of task tags across a tile border (default 1; 0 = the control: tags inside tiles)")
    ap.add_argument("--dense", action="store_true",
                    help="stand-in pretraining per token / cell instead of per pooled view / canvas")
    ap.add_argument("--pretrain-shift", type=float, default=0.5,
                    help="share of pretraining tags half a patch off the grid but inside one tile (default 0.5)")
    ap.add_argument("--pretrain-straddle", type=float, default=0.0,
                    help="share of pretraining tags across a tile border (default 0: whole objects only)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--summarize", nargs="+", metavar="FOLDER", help="print a table of finished runs and exit")
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return None
    kw = {"output": args.output, "seed": args.seed, "arms": args.arms, "corner": args.corner, "pool": args.pool,
          "recipe": args.recipe, "straddle": args.straddle, "dense": args.dense,
          "pretrain_straddle": args.pretrain_straddle,
          "pretrain_shift": args.pretrain_shift}
    if args.train_steps:
        kw["train_steps"] = args.train_steps
    cfg = BorderConfig.quick(**kw) if args.quick else BorderConfig(**kw)
    return run(cfg, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
