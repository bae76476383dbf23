"""``loupe demo``: benchmark -> encoder pretraining -> each method trained by the same recipe -> table.

Arms (:mod:`loupe.presets.demo`): the LLaVA-1.5-style baseline and each high-resolution method at demo scale. Stage 1
pretrains every distinct vision encoder once (a stand-in for CLIP / ConvNeXt pretraining, gated on held-out accuracy,
:mod:`loupe.demo.pretrain`), on the views of every arm that uses it; arms with equal encoder configs (the ``tinyconv``
of the baseline, anyres, INF-LLaVA, UHD v2) start from the same weights. Stage 2 trains each arm with Loupe's recipe
runner. [LOUPE] choice: one instruct stage with every part trained at the same learning rate, for every arm, rather
than each paper's freezing schedule: the papers freeze towers pretrained on millions of images, and from-scratch
tiny parts only learn here when trained together (measured: a feasibility probe on 2 cores); one recipe for all
arms also keeps the comparison about the image pathway alone. One exception, the paper's own: ConvLLaVA's instruction
stage trains the projector and the LLM with the ConvNeXt frozen (ConvLLaVA §4.1, stage 3), and so does its arm here
(``DemoConfig.frozen_vision``). Measured, seeds 0/1/2, default settings, detail %: its deep-supervised encoder
(~92 % tag accuracy after stage 1) trained on at 1e-3 with the rest forgot the tag on two seeds (92 / 14 / 8);
frozen, 94.7 / 97.3 / 96.7 (and ~2x faster); trained at 1e-4, 99 on seed 1. The papers' own stage layouts run in
``tests/training/test_method_recipes.py``.

Budgets (2 CPU cores): step budgets with a wall-time report, not time budgets, so a slower machine gives the same
table (reproducible from the seed). ``quick`` trains the baseline and anyres only, at shorter budgets (CI).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.synth import SynthConfig, generate
from ..presets.demo import DEMO_SIZES

#: (label, preset) of each arm, in table order
ARMS = [
    ("LLaVA-1.5 (pad, 1 view)", "demo-lowres"),
    ("LLaVA-NeXT (anyres tiles)", "demo-anyres"),
    ("INF-LLaVA (DCM + DEM)", "demo-inf-llava"),
    ("ConvLLaVA (5-stage ConvNeXt)", "demo-convllava"),
    ("LLaVA-UHD v2 (slices + Hiwin, 1x)", "demo-uhd-v2"),
    ("FILA (ConvNeXt + CVFM)", "demo-fila"),
]
QUICK_ARMS = ["demo-lowres", "demo-anyres"]


@dataclass
class DemoConfig:
    output: str = "out/demo"
    seed: int = 0
    n_train: int = 2000
    n_test: int = 300
    pretrain_steps: int = 400
    deep_pretrain_steps: int = 1000  # encoders pretrained with deep supervision (pretrain.py): ConvLLaVA's ConvNeXt
    train_steps: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    threads: int | None = None  # torch threads (None: leave as is)
    # arms whose instruct stage keeps the pretrained vision tower frozen, as their paper's own instruction stage does
    # (ConvLLaVA stage 3: projector + LLM, ConvNeXt frozen); see the module docstring for the measurements
    frozen_vision: list = field(default_factory=lambda: ["demo-convllava"])
    arms: list = field(default_factory=lambda: [a[1] for a in ARMS])

    def __post_init__(self):
        from ..errors import LoupeError

        for name in ("n_train", "n_test", "pretrain_steps", "deep_pretrain_steps", "train_steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise LoupeError(f"demo {name} must be >= 1, got {getattr(self, name)}")
        if self.n_train < 65:  # stage 1 holds out 64 images
            raise LoupeError(f"demo n_train must be > 64 (stage 1 holds 64 images out), got {self.n_train}")
        known = [p for _, p in ARMS]
        bad = [a for a in self.arms if a not in known]
        if bad or not self.arms:
            raise LoupeError(f"unknown demo arm(s) {bad or self.arms}; choose from {known}")
        bad = [a for a in self.frozen_vision if a not in known]
        if bad:
            raise LoupeError(f"demo frozen_vision: unknown arm(s) {bad}; choose from {known}")

    @classmethod
    def quick(cls, **kw) -> "DemoConfig":
        return cls(**{"n_train": 1200, "n_test": 150, "pretrain_steps": 300, "deep_pretrain_steps": 800,
                      "train_steps": 120, "arms": list(QUICK_ARMS), **kw})


def encoder_groups(built: dict) -> list[list[str]]:
    """Arms grouped by vision-encoder config (equal configs share one pretrained encoder), in arm order."""
    groups: dict[str, list[str]] = {}
    for preset, (model, _) in built.items():
        key = json.dumps(model.config.vision, sort_keys=True, default=str)
        groups.setdefault(key, []).append(preset)
    return list(groups.values())


def config_key(cfg: DemoConfig) -> str:
    """The settings that decide an arm's result (not the output folder, threads or the arm list)."""
    return json.dumps({k: v for k, v in cfg.__dict__.items() if k not in ("output", "threads", "arms")}, sort_keys=True)


def _finished(path: Path, key: str) -> dict | None:
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return r if r.get("config_key") == key else None


def _norm(s: str) -> str:
    return s.strip().lower().rstrip(".").strip()


def flops_per_image(preset, size=(128, 128)) -> float:
    """GFLOPs (2 x MACs) of one forward pass on one image with a 16-token prompt: the profiler's ``full`` total
    (:func:`loupe.profiling.profile`, counted on the meta device). ``preset``: a name or a
    :class:`~loupe.LoupeConfig` (a fitted configuration)."""
    from ..profiling import profile

    return profile(preset, [tuple(size)], text_tokens=16)[0]["full_tflops"] * 1e3


def prepare_benchmark(out: Path, cfg: DemoConfig, log=print):
    """Generate the benchmark of ``cfg.seed`` under ``out / "data"``: (data report, train records, test records,
    image root)."""
    t0 = time.time()
    data = generate(out / "data", SynthConfig(n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                                              test_seed=cfg.seed + 1000, sizes=[list(s) for s in DEMO_SIZES]))
    log(f"[demo] benchmark: {data['train']['images']} train / {data['test']['images']} test images "
        f"({time.time() - t0:.0f}s)")
    train_recs = json.loads(Path(data["train"]["path"]).read_text())
    test_recs = json.loads(Path(data["test"]["path"]).read_text())
    return data, train_recs, test_recs, Path(data["image_root"])


def pretrain_groups(built: dict, skip, cfg: DemoConfig, out: Path, train_recs, root, log=print):
    """Stage 1: each distinct encoder of ``built`` ({preset: (model, processor)}) pretrained once, on the views of
    every arm that uses it (groups whose arms are all in ``skip`` are left out). Returns ({preset: report},
    seconds, {preset: encoder state})."""
    from .pretrain import pretrain_encoder

    pre, pre_time, enc_state = {}, 0.0, {}
    for group in encoder_groups(built):
        if all(p in skip for p in group):
            continue
        t1 = time.time()
        encoder = built[group[0]][0].vision_tower
        torch.manual_seed(cfg.seed)
        pool = built[group[0]][0].config.connector.get("pool")  # deep supervision's last level: the mlp's pooling
        pool = pool if isinstance(pool, int) and not isinstance(pool, bool) else 1
        steps = cfg.deep_pretrain_steps if hasattr(encoder, "stage_outputs") else cfg.pretrain_steps
        report = pretrain_encoder(encoder, train_recs, root, [built[p][1].image_processor for p in group],
                                  out / "pretrain" / group[0], max_steps=steps, seed=cfg.seed, pool=pool)
        report["seconds"] = round(time.time() - t1, 1)
        pre_time += report["seconds"]
        state = {k: v.clone() for k, v in encoder.state_dict().items()}
        for p in group:
            pre[p], enc_state[p] = {**report, "group": group}, state
        log(f"[demo] encoder pretraining for {', '.join(group)}: {report['steps']} steps, tag-view accuracy "
            f"{report['tag_view_accuracy']:.2f} ({report['seconds']:.0f}s)")
    return pre, pre_time, enc_state


def pretrain_connectors(built: dict, skip, cfg: DemoConfig, out: Path, train_recs, root, enc_state: dict,
                        log=print) -> tuple[dict, dict]:
    """Stage 1 for connectors that the paper trains before instruction tuning and that the demo pretrains: the DEM
    of INF-LLaVA (:func:`loupe.demo.pretrain.pretrain_dem`, on the arm's own pretrained encoder, frozen). Returns
    ({preset: report}, {preset: DEM state (``spatial_embed.*`` keys)})."""
    from .pretrain import pretrain_dem

    reports, states = {}, {}
    for preset, (model, proc) in built.items():
        if preset in skip or not hasattr(model.connector, "fused_maps"):
            continue
        t1 = time.time()
        model.vision_tower.load_state_dict(enc_state[preset])
        torch.manual_seed(cfg.seed)
        report = pretrain_dem(model.vision_tower, model.connector, train_recs, root, proc.image_processor,
                              out / "pretrain" / f"{preset}-dem", max_steps=cfg.pretrain_steps, seed=cfg.seed)
        report["seconds"] = round(time.time() - t1, 1)
        reports[preset] = report
        states[preset] = {k: v.clone() for k, v in model.connector.state_dict().items()
                          if k.startswith("spatial_embed.")}
        log(f"[demo] DEM pretraining for {preset}: {report['steps']} steps, tag-cell accuracy "
            f"{report['cell_accuracy']:.2f} ({report['seconds']:.0f}s)")
    return reports, states


def train_arm(preset: str, model, proc, cfg: DemoConfig, arm_dir: Path, data_root: Path, test_recs: list,
              image_root: Path, pretrain: dict, overrides: dict | None = None, method: str | None = None):
    """Stage 2 for one arm: ``model`` (its encoder already pretrained) saved as the init, trained by the demo recipe
    (one instruct stage, every part at ``cfg.lr``; the vision tower frozen for ``cfg.frozen_vision``), then evaluated
    by exact match on ``test_recs``. ``overrides``: the config overrides ``model`` was built with (a fitted
    configuration), recorded in the recipe. Returns (row, predictions, training seconds)."""
    import loupe
    from ..evaluation.predict import predict
    from ..training import recipe_from_dict, run_recipe

    init = arm_dir / "init"
    model.save_pretrained(init)
    proc.save_pretrained(init)
    recipe = recipe_from_dict({
        "name": f"demo-{preset}", "model": {"preset": preset, "config": overrides} if overrides else preset,
        "seed": cfg.seed, "data_root": str(data_root),
        "stages": [{
            "name": "instruct", "init_from": str(init),
            "data": {"path": "train.json", "image_root": "images", "template": "tiny"},
            "parts": {**({} if preset in cfg.frozen_vision else {"vision_tower": cfg.lr}),
                      "connector": cfg.lr, "language_model": cfg.lr},
            "global_batch_size": cfg.batch_size, "per_device_batch_size": cfg.batch_size,
            "max_steps": cfg.train_steps, "max_length": 512, "schedule": "cosine", "warmup_ratio": 0.05,
            "weight_decay": 0.01, "max_grad_norm": 1.0, "save_steps": max(cfg.train_steps, 1),
            "save_total_limit": 1, "logging_steps": 20, "group_by_length": False,
        }],
    })
    t2 = time.time()
    final = run_recipe(recipe, output=arm_dir / "train")[-1]
    train_time = time.time() - t2
    trained = loupe.LoupeForConditionalGeneration.from_pretrained(str(final))
    tproc = loupe.build_processor(str(final))
    preds = dict(predict(trained, tproc, test_recs, image_root, batch_size=32, max_new_tokens=4))
    by_cat: dict[str, list[int]] = {}
    for r in test_recs:
        by_cat.setdefault(r["category"], []).append(int(_norm(preds[r["id"]]) == _norm(r["answer"])))
    tokens = [tproc.num_image_tokens(tuple(r["image_size"])) for r in test_recs]
    labels = dict((p, lab) for lab, p in ARMS)
    row = {
        "method": method or labels.get(preset, preset), "preset": preset,
        "visual_tokens": round(sum(tokens) / len(tokens), 1),
        "visual_tokens_by_size": {f"{w}x{h}": tproc.num_image_tokens((w, h)) for w, h in DEMO_SIZES},
        "gflops_per_image": round(flops_per_image(trained.config if overrides else preset, (128, 128)), 3),
        "train_seconds": round(train_time, 1),
        "pretrain_seconds": round(pretrain["seconds"] + pretrain.get("dem", {}).get("seconds", 0), 1),
        "encoder_tag_accuracy": round(100 * pretrain["tag_view_accuracy"], 1),
        "accuracy": {c: round(100 * sum(v) / len(v), 1) for c, v in sorted(by_cat.items())},
    }
    row["accuracy"]["overall"] = round(100 * sum(sum(v) for v in by_cat.values()) /
                                       sum(len(v) for v in by_cat.values()), 1)
    return row, preds, train_time


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a killed run leaves no half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def run_demo(cfg: DemoConfig, log=print) -> dict:
    import loupe

    out = Path(cfg.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from ..errors import LoupeError

        raise LoupeError(f"cannot create the demo output folder {out}: {e.strerror}") from None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    _, train_recs, test_recs, root = prepare_benchmark(out, cfg, log)

    # finished arms of an earlier run with the same settings are kept (a long run never loses finished work)
    key = config_key(cfg)
    done = {p: r for p in cfg.arms if (r := _finished(out / p / "row.json", key)) is not None}

    # stage 1: each distinct encoder pretrained once, on the views of every arm that uses it
    built = {}
    for p in cfg.arms:
        torch.manual_seed(cfg.seed)
        built[p] = loupe.build(p)
    pre = {p: r["pretrain"] for p, r in done.items()}
    fresh, pre_time, enc_state = pretrain_groups(built, done, cfg, out, train_recs, root, log)
    dem_reports, conn_state = pretrain_connectors(built, done, cfg, out, train_recs, root, enc_state, log)
    for p, rep in dem_reports.items():
        fresh[p] = {**fresh[p], "dem": rep}
        pre_time += rep["seconds"]
    pre.update(fresh)

    rows = []
    for preset in cfg.arms:
        if preset in done:
            rows.append(done[preset]["row"])
            log(f"[demo] {done[preset]['row']['method']}: kept from {out / preset / 'row.json'} (same settings)")
            continue
        model, proc = built[preset]
        model.vision_tower.load_state_dict(enc_state[preset])
        if preset in conn_state:
            model.connector.load_state_dict(conn_state[preset], strict=False)
        row, preds, train_time = train_arm(preset, model, proc, cfg, out / preset, out / "data", test_recs, root,
                                           pre[preset])
        rows.append(row)
        log(f"[demo] {row['method']}: detail {row['accuracy'].get('detail')}%, layout {row['accuracy'].get('layout')}% "
            f"({train_time:.0f}s)")
        (out / preset / "predictions.json").write_text(json.dumps(preds, indent=0))
        write_atomic(out / preset / "row.json", json.dumps({"config_key": key, "row": row, "pretrain": pre[preset]},
                                                           indent=1))

    result = {"config": cfg.__dict__, "pretrain": pre, "pretrain_seconds": round(pre_time, 1), "rows": rows,
              "total_seconds": round(time.time() - t0, 1)}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(markdown_table(rows))
    plot(rows, out / "accuracy_vs_tokens.png")
    return result


def _mean_std(xs):
    """Mean and sample standard deviation (0 for one value), rounded to 0.1."""
    import math

    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return round(m, 1), round(sd, 1)


def aggregate(results: list[dict]) -> dict:
    """One demo result per seed -> per-arm mean ± sample std over the seeds, and each arm's margin over the
    baseline (the first arm, ``demo-lowres``) on mean detail accuracy."""
    seeds = [r["config"]["seed"] for r in results]
    rows = []
    for i, first in enumerate(results[0]["rows"]):
        per = [r["rows"][i] for r in results]
        row = {k: first[k] for k in ("method", "preset", "visual_tokens", "gflops_per_image")}
        for cat in ("detail", "layout", "overall"):
            row[cat], row[cat + "_std"] = _mean_std([p["accuracy"][cat] for p in per])
            row[cat + "_by_seed"] = [p["accuracy"][cat] for p in per]
        row["encoder_tag_accuracy"], _ = _mean_std([p["encoder_tag_accuracy"] for p in per])
        row["train_seconds"], _ = _mean_std([p["train_seconds"] for p in per])
        rows.append(row)
    base = next((r for r in rows if r["preset"] == "demo-lowres"), None)
    for r in rows:
        r["detail_over_baseline"] = round(r["detail"] - base["detail"], 1) if base else None
    return {"seeds": seeds, "rows": rows, "seconds_by_seed": [r["total_seconds"] for r in results],
            "config": {k: v for k, v in results[0]["config"].items() if k not in ("seed", "output")}}


def markdown_table_seeds(agg: dict) -> str:
    """The multi-seed table: mean ± sample std over the seeds, and the margin over the baseline on detail."""
    head = (f"| method | preset | visual tokens / image | GFLOPs / image | encoder % | detail % | layout % "
            f"| detail vs baseline | detail by seed ({', '.join(map(str, agg['seeds']))}) |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    for r in agg["rows"]:
        d = r["detail_over_baseline"]
        head += (f"| {r['method']} | `{r['preset']}` | {r['visual_tokens']} | {r['gflops_per_image']} | "
                 f"{r['encoder_tag_accuracy']} | {r['detail']} ± {r['detail_std']} | {r['layout']} ± "
                 f"{r['layout_std']} | {'—' if r['preset'] == 'demo-lowres' else f'{d:+.1f}'} | "
                 f"{' / '.join(str(x) for x in r['detail_by_seed'])} |\n")
    return head


def run_demo_seeds(cfg: DemoConfig, seeds: list[int], log=print) -> dict:
    """``loupe demo --seeds``: :func:`run_demo` once per seed into ``<output>/seed<N>`` (each resumable), then
    ``<output>/results.json`` / ``results.md`` / ``accuracy_vs_tokens.png`` with the mean ± std over the seeds."""
    from dataclasses import replace

    out = Path(cfg.output)
    results = []
    for seed in seeds:
        log(f"[demo] seed {seed}")
        results.append(run_demo(replace(cfg, seed=seed, output=str(out / f"seed{seed}")), log))
    agg = aggregate(results)
    write_atomic(out / "results.json", json.dumps(agg, indent=2))
    write_atomic(out / "results.md", markdown_table_seeds(agg))
    plot([{**r, "accuracy": {"detail": r["detail"]}} for r in agg["rows"]], out / "accuracy_vs_tokens.png",
         errors=[r["detail_std"] for r in agg["rows"]], title=f"seeds {', '.join(map(str, seeds))}")
    return agg


def markdown_table(rows: list[dict]) -> str:
    """The results table. "encoder %": the stage-1 stand-in pretraining's held-out accuracy at naming the digit on
    the views that hold it whole (the arm's encoder reads the tag before the LLM is trained on it)."""
    head = ("| method | preset | visual tokens / image | GFLOPs / image | encoder % | train s | detail % | layout % "
            "| overall % |\n|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        a = r["accuracy"]
        head += (f"| {r['method']} | `{r['preset']}` | {r['visual_tokens']} | {r['gflops_per_image']} | "
                 f"{r.get('encoder_tag_accuracy')} | {r['train_seconds']} | {a.get('detail')} | {a.get('layout')} | "
                 f"{a.get('overall')} |\n")
    return head


def plot(rows: list[dict], path: Path, errors: list | None = None, title: str | None = None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    import math

    placed: list[tuple[float, float]] = []
    for r in rows:
        x, y = r["visual_tokens"], r["accuracy"].get("detail", 0)
        # stagger the labels of points that nearly coincide (log-x within 1.6x, y within 6 points)
        k = sum(1 for px, py in placed if abs(math.log10(max(x, 1e-9) / max(px, 1e-9))) < 0.2 and abs(y - py) < 6)
        placed.append((x, y))
        ax.scatter(x, y, s=60)
        if errors:
            ax.errorbar(x, y, yerr=errors[rows.index(r)], fmt="none", capsize=3, color="k", lw=0.8)
        ax.annotate(r["method"], (x, y), fontsize=7, xytext=(5, 4 - 10 * k), textcoords="offset points")
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if t <= 2 * max(r["visual_tokens"] for r in rows)]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.axhline(10, color="grey", lw=0.8, ls="--")
    ax.text(ax.get_xlim()[0] * 1.05, 11, "chance (10%)", fontsize=7, color="grey", ha="left", va="bottom")
    ax.set_xlabel("visual tokens per image (mean over the test images, log scale)")
    ax.set_ylabel("detail accuracy (%)" + (", mean ± std" if errors else ""))
    ax.set_ylim(0, 105)
    ax.set_title("Loupe demo: fine detail vs visual tokens" + (f" ({title})" if title else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
