"""``loupe demo``: benchmark -> shared encoder pretraining -> each method trained by its recipe -> table.

Budgets (2 CPU cores): default about 3 x 300 steps; ``quick`` about 120 steps per arm. Step budgets with a
wall-time report, not time budgets, so a slower machine gives the same table (reproducible from the seed).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.synth import SynthConfig, generate
from ..presets.demo import DEMO_SIZES

#: (label, preset) of each arm; methods add theirs as they land
ARMS = [
    ("LLaVA-1.5 (pad, 1 view)", "demo-lowres"),
    ("LLaVA-NeXT (anyres tiles)", "demo-anyres"),
]


@dataclass
class DemoConfig:
    output: str = "out/demo"
    seed: int = 0
    n_train: int = 2000
    n_test: int = 300
    pretrain_steps: int = 400
    train_steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    arms: list = field(default_factory=lambda: [a[1] for a in ARMS])

    @classmethod
    def quick(cls, **kw) -> "DemoConfig":
        return cls(**{"n_train": 1200, "n_test": 150, "pretrain_steps": 300, "train_steps": 120, **kw})


def _norm(s: str) -> str:
    return s.strip().lower().rstrip(".").strip()


def flops_per_image(preset: str, size=(128, 128)) -> float:
    """GFLOPs (2 x MACs) of one forward pass on one image with a 16-token prompt: the profiler's ``full`` total
    (:func:`loupe.profiling.profile`, counted on the meta device)."""
    from ..profiling import profile

    return profile(preset, [tuple(size)], text_tokens=16)[0]["full_tflops"] * 1e3


def run_demo(cfg: DemoConfig, log=print) -> dict:
    import loupe
    from ..evaluation.predict import predict
    from ..training import recipe_from_dict, run_recipe
    from .pretrain import pretrain_encoder

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    data = generate(out / "data", SynthConfig(n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                                              test_seed=cfg.seed + 1000, sizes=[list(s) for s in DEMO_SIZES]))
    log(f"[demo] benchmark: {data['train']['images']} train / {data['test']['images']} test images "
        f"({time.time() - t0:.0f}s)")
    train_recs = json.loads(Path(data["train"]["path"]).read_text())
    test_recs = json.loads(Path(data["test"]["path"]).read_text())
    root = Path(data["image_root"])

    # stage 1: one encoder, pretrained on the views of every arm
    built = {p: loupe.build(p) for p in cfg.arms}
    encoder = built[cfg.arms[-1]][0].vision_tower
    t1 = time.time()
    torch.manual_seed(cfg.seed)
    pre = pretrain_encoder(encoder, train_recs, root, [built[p][1].image_processor for p in cfg.arms],
                           out / "pretrain", max_steps=cfg.pretrain_steps, seed=cfg.seed)
    pre_time = time.time() - t1
    log(f"[demo] encoder pretraining: {pre['steps']} steps, tag-view accuracy {pre['tag_view_accuracy']:.2f} "
        f"({pre_time:.0f}s)")
    enc_state = {k: v.clone() for k, v in encoder.state_dict().items()}

    rows = []
    labels = dict((p, lab) for lab, p in ARMS)
    for preset in cfg.arms:
        model, proc = built[preset]
        model.vision_tower.load_state_dict(enc_state)
        init = out / preset / "init"
        model.save_pretrained(init)
        proc.save_pretrained(init)
        recipe = recipe_from_dict({
            "name": f"demo-{preset}", "model": preset, "seed": cfg.seed, "data_root": str(out / "data"),
            "stages": [{
                "name": "instruct", "init_from": str(init),
                "data": {"path": "train.json", "image_root": "images", "template": "tiny"},
                "parts": {"vision_tower": cfg.lr, "connector": cfg.lr, "language_model": cfg.lr},
                "global_batch_size": cfg.batch_size, "per_device_batch_size": cfg.batch_size,
                "max_steps": cfg.train_steps, "max_length": 512, "schedule": "cosine", "warmup_ratio": 0.05,
                "weight_decay": 0.01, "max_grad_norm": 1.0, "save_steps": max(cfg.train_steps, 1),
                "save_total_limit": 1, "logging_steps": 20, "group_by_length": False,
            }],
        })
        t2 = time.time()
        final = run_recipe(recipe, output=out / preset / "train")[-1]
        train_time = time.time() - t2
        trained = loupe.LoupeForConditionalGeneration.from_pretrained(str(final))
        tproc = loupe.build_processor(str(final))
        preds = dict(predict(trained, tproc, test_recs, root, batch_size=32, max_new_tokens=4))
        by_cat: dict[str, list[int]] = {}
        for r in test_recs:
            by_cat.setdefault(r["category"], []).append(int(_norm(preds[r["id"]]) == _norm(r["answer"])))
        tokens = [tproc.num_image_tokens(tuple(r["image_size"])) for r in test_recs]
        row = {
            "method": labels.get(preset, preset), "preset": preset,
            "visual_tokens": round(sum(tokens) / len(tokens), 1),
            "visual_tokens_by_size": {f"{w}x{h}": tproc.num_image_tokens((w, h)) for w, h in DEMO_SIZES},
            "gflops_per_image": round(flops_per_image(preset, (128, 128)), 3),
            "train_seconds": round(train_time, 1),
            "accuracy": {c: round(100 * sum(v) / len(v), 1) for c, v in sorted(by_cat.items())},
        }
        row["accuracy"]["overall"] = round(100 * sum(sum(v) for v in by_cat.values()) /
                                           sum(len(v) for v in by_cat.values()), 1)
        rows.append(row)
        log(f"[demo] {row['method']}: detail {row['accuracy'].get('detail')}%, layout {row['accuracy'].get('layout')}% "
            f"({train_time:.0f}s)")
        (out / preset / "predictions.json").write_text(json.dumps(preds, indent=0))

    result = {"config": cfg.__dict__, "pretrain": {**pre, "seconds": round(pre_time, 1)}, "rows": rows,
              "total_seconds": round(time.time() - t0, 1)}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(markdown_table(rows))
    plot(rows, out / "accuracy_vs_tokens.png")
    return result


def markdown_table(rows: list[dict]) -> str:
    head = "| method | preset | visual tokens / image | GFLOPs / image | train s | detail % | layout % | overall % |\n"
    head += "|---|---|---|---|---|---|---|---|\n"
    for r in rows:
        a = r["accuracy"]
        head += (f"| {r['method']} | `{r['preset']}` | {r['visual_tokens']} | {r['gflops_per_image']} | "
                 f"{r['train_seconds']} | {a.get('detail')} | {a.get('layout')} | {a.get('overall')} |\n")
    return head


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in rows:
        ax.scatter(r["visual_tokens"], r["accuracy"].get("detail", 0), s=60)
        ax.annotate(r["method"], (r["visual_tokens"], r["accuracy"].get("detail", 0)), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("visual tokens per image")
    ax.set_ylabel("detail accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Loupe demo: fine detail vs visual tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
