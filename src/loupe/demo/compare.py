"""``loupe compare``: every method at equal visual-token budgets, on the demo's fine-detail benchmark.

At each budget, each method (by default the demo arms, :data:`loupe.demo.run.ARMS`) is fitted to the budget by
:func:`loupe.budget.fit_config` over the benchmark's image sizes (its slicer's knob and its connector's pooling knob:
the largest configuration whose token count for every size is <= the budget), then trained and evaluated exactly as
``loupe demo`` trains an arm (:func:`loupe.demo.run.train_arm`): the same generated data per seed, the same stage-1
encoder pretraining (each distinct encoder once per seed, on the views of the methods' own presets, shared by every
budget), the same recipe and steps, and the same starting language model (the first arm's initialisation of the
seed, copied into every cell). A method whose minimum exceeds a budget gets no row at that budget (the table says
so, with the minimum); one whose fitted configuration at a budget equals that of a smaller budget (its ceiling is
reached) is trained once and its row repeated.

Outputs (``--output``, default ``out/compare``): ``results.json`` (every cell, the per-(method, budget) summary and the
real-size costs), ``results.md`` (the table: fitted tokens mean/max and how far below the budget, GFLOPs/image,
detail and layout accuracy mean ± std over seeds, the real-size cost), ``accuracy_vs_tokens.png`` and
``accuracy_vs_gflops.png`` (detail accuracy with error bars over seeds and the Pareto front). Finished
(method, budget, seed) cells are kept when a run is repeated with the same settings (``row.json``, written
atomically).

Real-size cost: each method's released 7B-class preset (:data:`REAL_SIZE`) is fitted by the same chooser to 576,
1024 and 2880 visual tokens on a 1008x672 image and profiled on the meta device (:func:`loupe.profiling.profile`,
``paper_tflops``: the prefill of one image with no text, every ViT block on every crop, the papers' count).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import LoupeError
from ..presets.demo import DEMO_SIZES
from .run import (ARMS, QUICK_ARMS, DemoConfig, _finished, prepare_benchmark, pretrain_connectors, pretrain_groups,
                  train_arm, write_atomic)

#: the released 7B-class preset of each method, for the real-size cost (demo arm -> preset; then today's methods)
REAL_SIZE = {
    "demo-lowres": "llava15-7b",
    "demo-anyres": "llava-next-7b",
    "demo-inf-llava": "inf-llava-8b",
    "demo-convllava": "convllava-7b-1536",  # the largest release: the budget shrinks it, never grows it
    "demo-uhd-v2": "llava-uhd-v2-7b",
    "demo-fila": "fila-7b",
}
MODERN_REAL_SIZE = ["internvl3-8b", "llava-onevision-qwen2-7b", "qwen2-vl-7b"]
REAL_SIZE_BUDGETS = (576, 1024, 2880)
REAL_SIZE_IMAGE = (1008, 672)
LABELS = dict((p, lab) for lab, p in ARMS)


@dataclass
class CompareConfig:
    output: str = "out/compare"
    budgets: list = field(default_factory=lambda: [16, 64, 256])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    arms: list = field(default_factory=lambda: [a[1] for a in ARMS])
    # the default run: the demo's --quick data, 100 steps a cell (every cell of 6 methods x 3 budgets x 3 seeds in
    # <= 60 min on 2 cores; measured at 120 steps: ~20.4 min a seed, ~61 min in all, UHD v2's 254-token cell alone
    # 232 s); the demo's own default budgets are for `loupe demo`
    n_train: int = 1200
    n_test: int = 150
    pretrain_steps: int = 300
    deep_pretrain_steps: int = 800
    train_steps: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    threads: int | None = None
    real_size: list | None = None  # real-size presets to profile (None: those of the arms + today's methods)

    def __post_init__(self):
        for name in ("budgets", "seeds", "arms"):
            if not isinstance(getattr(self, name), (list, tuple)) or not getattr(self, name):
                raise LoupeError(f"compare {name} must be a non-empty list, got {getattr(self, name)!r}")
        bad = [b for b in self.budgets if isinstance(b, bool) or not isinstance(b, int) or b < 1]
        if bad:
            raise LoupeError(f"compare budgets must be positive whole numbers of visual tokens, got {bad}")
        bad = [s for s in self.seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if bad:
            raise LoupeError(f"compare seeds must be whole numbers >= 0, got {bad}")
        known = [p for _, p in ARMS]
        bad = [a for a in self.arms if a not in known]
        if bad:
            raise LoupeError(f"unknown compare preset(s) {bad}; choose from the demo arms {known}")
        for name in ("budgets", "seeds", "arms"):
            vals = list(getattr(self, name))
            if len(set(vals)) != len(vals):
                raise LoupeError(f"compare {name} lists a value twice: {vals}")
        self.demo(self.seeds[0])  # the demo's own checks (counts, steps)
        if self.real_size is None:
            self.real_size = [REAL_SIZE[a] for a in self.arms if a in REAL_SIZE] + list(MODERN_REAL_SIZE)

    @classmethod
    def quick(cls, **kw) -> "CompareConfig":
        """The demo's ``--quick`` data and steps, its two quick arms, one seed, budgets 16 and 64; real-size cost
        for those two methods only."""
        base = {"n_train": 1200, "n_test": 150, "pretrain_steps": 300, "train_steps": 120, "arms": list(QUICK_ARMS),
                "seeds": [0], "budgets": [16, 64]}
        base.update(kw)
        if "real_size" not in kw:
            base["real_size"] = [REAL_SIZE[a] for a in base["arms"] if a in REAL_SIZE]
        return cls(**base)

    def demo(self, seed: int) -> DemoConfig:
        """The demo settings of one seed (data, steps, recipe)."""
        return DemoConfig(output=self.output, seed=seed, n_train=self.n_train, n_test=self.n_test,
                          pretrain_steps=self.pretrain_steps, deep_pretrain_steps=self.deep_pretrain_steps,
                          train_steps=self.train_steps,
                          batch_size=self.batch_size, lr=self.lr, arms=list(self.arms))


def cell_key(dcfg: DemoConfig, budget: int, fit: dict | None) -> str:
    """What decides one cell's result: the demo settings of its seed, the budget and the fitted configuration."""
    base = {k: v for k, v in dcfg.__dict__.items() if k not in ("output", "threads", "arms")}
    return json.dumps({"demo": base, "budget": budget, "fit": fit}, sort_keys=True, default=str)


def _fit(preset: str, budget: int, sizes):
    from ..budget import fit_preset

    try:
        return fit_preset(preset, budget, sizes), None
    except LoupeError as e:
        return None, str(e)


def _knobs_text(knobs: dict) -> str:
    parts = []
    for d in (knobs.get("slicer", {}), knobs.get("connector", {})):
        for k, v in d.items():
            if k == "pinpoints":
                v = " ".join(f"{a}x{b}" for a, b in v) if len(v) <= 4 else f"{len(v)} canvases"
            elif isinstance(v, float):
                v = f"{v:g}" if v >= 0.1 else f"1/{round(1 / v)}"
            parts.append(f"{k}={v}")
    return ", ".join(parts) or "fixed"


# --- real-size cost ----------------------------------------------------------------------------------------------------
def real_size_costs(presets, out: Path | None = None, log=print) -> list[dict]:
    """Each preset fitted to :data:`REAL_SIZE_BUDGETS` on a 1008x672 image and profiled on the meta device; one
    record per (preset, budget). Cached in ``out / "real_size.json"`` by fitted configuration."""
    from ..builder import build_config
    from ..profiling import profile

    cache_path = out / "real_size.json" if out is not None else None
    cache = {}
    if cache_path is not None and cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except ValueError:
            cache = {}
    recs = []
    for preset in presets:
        for budget in REAL_SIZE_BUDGETS:
            fit, err = _fit(preset, budget, [REAL_SIZE_IMAGE])
            rec = {"preset": preset, "budget": budget, "image_size": list(REAL_SIZE_IMAGE)}
            if fit is None:
                rec["error"] = err
                rec["minimum"] = _minimum(err)
                recs.append(rec)
                continue
            fj = fit.to_json()
            rec.update(tokens=fit.max_tokens, below_budget=fit.below_budget, knobs=fit.knobs)
            key = json.dumps({"preset": preset, **fit.overrides()}, sort_keys=True, default=str)
            if key not in cache:
                t = time.time()
                try:
                    r = profile(build_config(preset, **fit.overrides()), [REAL_SIZE_IMAGE])[0]
                    cache[key] = {"paper_tflops": r["paper_tflops"], "full_tflops": r["full_tflops"],
                                  "visual_tokens": r["visual_tokens"], "params": r["params"]}
                except Exception as e:  # noqa: BLE001 - a profiler failure is reported in the table, not fatal
                    cache[key] = {"error": f"profiler: {type(e).__name__}: {e}"}
                cache[key]["seconds"] = round(time.time() - t, 1)
                if cache_path is not None:
                    write_atomic(cache_path, json.dumps(cache, indent=1))
            rec.update(cache[key])
            rec["fit"] = {k: fj[k] for k in ("slicer", "connector")}
            recs.append(rec)
        log("[compare] real size " + preset + ": " + "; ".join(_real_text(r) for r in recs if r["preset"] == preset))
    return recs


def _minimum(err: str | None):
    import re

    m = re.search(r": (\d+) visual tokens", err or "")
    return int(m.group(1)) if m else None


def _real_text(r: dict) -> str:
    if "error" in r and "tokens" not in r:
        return f"{r['budget']}: below its minimum ({r.get('minimum')})"
    if "paper_tflops" not in r:
        return f"{r['budget']}: {r['tokens']} tokens ({_knobs_text(r['knobs'])}), {r.get('error')}"
    return f"{r['budget']}: {r['tokens']} tokens ({_knobs_text(r['knobs'])}) {r['paper_tflops']:.2f} TFLOPs"


# --- the run -----------------------------------------------------------------------------------------------------------
def run_compare(cfg: CompareConfig, log=print) -> dict:
    import loupe
    from ..budget import fit_preset  # noqa: F401  (fails early if the chooser is missing)

    out = Path(cfg.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LoupeError(f"cannot create the compare output folder {out}: {e.strerror}") from None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0, c0 = time.time(), time.process_time()
    sizes = [tuple(s) for s in DEMO_SIZES]

    # every (method, budget) fitted once: the configuration does not depend on the seed
    fits = {}
    for budget in cfg.budgets:
        for preset in cfg.arms:
            fit, err = _fit(preset, budget, sizes)
            fits[preset, budget] = (fit, err)
            text = (f"{_knobs_text(fit.knobs)} -> {'/'.join(map(str, fit.counts))} tokens on "
                    f"{', '.join(f'{w}x{h}' for w, h in sizes)} ({fit.below_budget} below)") if fit else err
            log(f"[compare] budget {budget}: {LABELS.get(preset, preset)}: {text}")
    real = real_size_costs(cfg.real_size, out, log)

    cells = []
    for seed in cfg.seeds:
        dcfg = cfg.demo(seed)
        sdir = out / f"seed{seed}"
        sdir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        _, train_recs, test_recs, root = prepare_benchmark(sdir, dcfg, log)
        done, todo = {}, []
        for budget in cfg.budgets:
            for preset in cfg.arms:
                fit, err = fits[preset, budget]
                cdir = sdir / f"budget{budget}" / preset
                key = cell_key(dcfg, budget, fit.to_json() if fit else None)
                r = _finished(cdir / "row.json", key)
                if fit is None:
                    done[preset, budget] = {"row": {"method": LABELS.get(preset, preset), "preset": preset,
                                                    "budget": budget, "seed": seed, "error": err,
                                                    "minimum": _minimum(err)}}
                elif r is not None:
                    done[preset, budget] = r
                    log(f"[compare] seed {seed}, budget {budget}, {preset}: kept from {cdir / 'row.json'}")
                else:
                    todo.append((preset, budget, cdir, key))

        enc_state, pre, llm_state, conn_state = {}, {}, None, {}
        if todo:
            built = {}
            for p in cfg.arms:
                torch.manual_seed(seed)
                built[p] = loupe.build(p)
            llm_state = {k: v.clone() for k, v in built[cfg.arms[0]][0].language_model.state_dict().items()}
            skip = {p for p in cfg.arms if all(q != p for q, *_ in todo)}
            pre, _, enc_state = pretrain_groups(built, skip, dcfg, sdir, train_recs, root, log)
            dem_reports, conn_state = pretrain_connectors(built, skip, dcfg, sdir, train_recs, root, enc_state, log)
            for p, rep in dem_reports.items():
                pre[p] = {**pre[p], "dem": rep}
            del built
        for preset, budget, cdir, key in todo:
            fit = fits[preset, budget][0]
            same = [b for (q, b), r in done.items() if q == preset and "error" not in r["row"]
                    and r["row"]["fit"]["slicer"] == fit.to_json()["slicer"]
                    and r["row"]["fit"]["connector"] == fit.to_json()["connector"]]
            if same:  # the same fitted configuration at another budget: the same model, trained once
                src = done[preset, same[0]]
                row = dict(src["row"], budget=budget, fit=fit.to_json(), same_as_budget=same[0])
                rec = {"config_key": key, "row": row, "pretrain": src["pretrain"]}
                cdir.mkdir(parents=True, exist_ok=True)
                write_atomic(cdir / "row.json", json.dumps(rec, indent=1))
                done[preset, budget] = rec
                log(f"[compare] seed {seed}, budget {budget}, {row['method']}: the configuration of budget {same[0]}")
                continue
            torch.manual_seed(seed)
            model, proc = loupe.build(preset, **fit.overrides())
            model.vision_tower.load_state_dict(enc_state[preset])
            if preset in conn_state:  # the DEM's stage 1 (its weights do not depend on the fitted out_scale)
                model.connector.load_state_dict(conn_state[preset], strict=False)
            model.language_model.load_state_dict(llm_state)
            cdir.mkdir(parents=True, exist_ok=True)
            row, preds, secs = train_arm(preset, model, proc, dcfg, cdir, sdir / "data", test_recs, root, pre[preset],
                                         overrides=fit.overrides(), method=LABELS.get(preset, preset))
            row.update(budget=budget, seed=seed, fit=fit.to_json())
            log(f"[compare] seed {seed}, budget {budget}, {row['method']}: {fit.max_tokens} tokens, detail "
                f"{row['accuracy'].get('detail')}%, layout {row['accuracy'].get('layout')}% ({secs:.0f}s)")
            (cdir / "predictions.json").write_text(json.dumps(preds, indent=0))
            rec = {"config_key": key, "row": row, "pretrain": pre[preset]}
            write_atomic(cdir / "row.json", json.dumps(rec, indent=1))
            done[preset, budget] = rec
        for budget in cfg.budgets:
            for preset in cfg.arms:
                cells.append(done[preset, budget]["row"])

    summary = summarize(cells, cfg, real)
    result = {"config": cfg.__dict__, "cells": cells, "summary": summary, "real_size": real,
              "total_seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}
    write_atomic(out / "results.json", json.dumps(result, indent=2, default=str))
    write_atomic(out / "results.md", markdown_tables(summary, real))
    plot(summary, "visual_tokens_mean", "visual tokens per image (fitted, mean over the benchmark's sizes, log scale)",
         out / "accuracy_vs_tokens.png")
    plot(summary, "gflops_per_image", "GFLOPs per image (profiler, 128x128, log scale)", out / "accuracy_vs_gflops.png")
    return result


def _mean_std(xs):
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return round(m, 1), round(sd, 1)


def summarize(cells: list[dict], cfg: CompareConfig, real: list[dict]) -> list[dict]:
    """One entry per (method, budget): fitted tokens, GFLOPs, accuracy mean ± sample std over seeds."""
    out = []
    for budget in cfg.budgets:
        for preset in cfg.arms:
            rows = [c for c in cells if c["preset"] == preset and c["budget"] == budget]
            ok = [r for r in rows if "error" not in r]
            s = {"method": LABELS.get(preset, preset), "preset": preset, "budget": budget, "seeds": len(ok)}
            if not ok:
                s.update(error=rows[0].get("error") if rows else None, minimum=rows[0].get("minimum") if rows else None)
            else:
                fit = ok[0]["fit"]
                s.update(knobs=fit["knobs"], visual_tokens_mean=fit["mean_tokens"], visual_tokens_max=fit["max_tokens"],
                         below_budget=fit["below_budget"], gflops_per_image=ok[0]["gflops_per_image"])
                for cat in ("detail", "layout", "overall"):
                    m, sd = _mean_std([r["accuracy"][cat] for r in ok if cat in r["accuracy"]])
                    s[cat], s[cat + "_std"] = m, sd
                s["train_seconds"] = round(sum(r["train_seconds"] for r in ok) / len(ok), 1)
            rs = REAL_SIZE.get(preset)
            s["real_size_preset"] = rs
            s["real_size_tflops"] = {str(r["budget"]): r.get("paper_tflops") for r in real if r["preset"] == rs}
            out.append(s)
    return out


def _tf(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def markdown_tables(summary: list[dict], real: list[dict]) -> str:
    head = ("| method | budget | fitted knobs | tokens mean / max (below budget) | GFLOPs / image | detail % "
            "| layout % | seeds | 7B-class TFLOPs at 1008x672, 576 / 1024 / 2880 tokens |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    for s in summary:
        rt = s.get("real_size_tflops") or {}
        tf = " / ".join(_tf(rt.get(str(b))) for b in REAL_SIZE_BUDGETS) + (f" (`{s['real_size_preset']}`)"
                                                                              if s.get("real_size_preset") else "")
        if "knobs" not in s:
            head += (f"| {s['method']} | {s['budget']} | below its minimum ({s.get('minimum')} tokens) | — | — | — | — "
                     f"| 0 | {tf} |\n")
            continue
        head += (f"| {s['method']} | {s['budget']} | {_knobs_text(s['knobs'])} | {s['visual_tokens_mean']:g} / "
                 f"{s['visual_tokens_max']} ({s['below_budget']}) | {s['gflops_per_image']} | "
                 f"{s['detail']} ± {s['detail_std']} | {s['layout']} ± {s['layout_std']} | {s['seeds']} | {tf} |\n")
    head += ("\nReal-size cost (the same chooser on each method's 7B-class preset, one 1008x672 image, meta-device "
             "profiler, `paper_tflops`):\n\n| preset | budget | fitted knobs | visual tokens | TFLOPs |\n"
             "|---|---|---|---|---|\n")
    for r in real:
        if "tokens" not in r:
            head += f"| `{r['preset']}` | {r['budget']} | below its minimum ({r.get('minimum')} tokens) | — | — |\n"
        else:
            head += (f"| `{r['preset']}` | {r['budget']} | {_knobs_text(r['knobs'])} | {r['tokens']} | "
                     f"{_tf(r.get('paper_tflops')) if 'paper_tflops' in r else r.get('error')} |\n")
    return head


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats (lower or equal x with higher y), in increasing x."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def plot(summary: list[dict], xkey: str, xlabel: str, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    pts = [s for s in summary if s.get("detail") is not None and s.get(xkey)]
    methods = list(dict.fromkeys(s["method"] for s in pts))
    markers = "osD^vP*X"
    budgets = sorted({s["budget"] for s in pts})
    for i, m in enumerate(methods):
        mine = sorted((s for s in pts if s["method"] == m), key=lambda s: s[xkey])
        color = f"C{i % 10}"
        ax.plot([s[xkey] for s in mine], [s["detail"] for s in mine], color=color, lw=0.8, alpha=0.5)
        for s in mine:
            ax.errorbar(s[xkey], s["detail"], yerr=s["detail_std"] or 0, color=color, capsize=3,
                        marker=markers[budgets.index(s["budget"]) % len(markers)], ms=6,
                        label=m if s is mine[0] else None)
    front = pareto([(s[xkey], s["detail"]) for s in pts])
    if front:
        xs = [p[0] for p in front]
        ys = [p[1] for p in front]
        ax.step(xs + [max(s[xkey] for s in pts) * 1.2], ys + [ys[-1]], where="post", color="k", lw=1.2, ls="--",
                label="Pareto front")
    if pts:
        ax.set_xscale("log")
    ax.axhline(10, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("detail accuracy (%), mean ± std over seeds")
    ax.set_ylim(0, 105)
    ax.set_title("Loupe compare: equal visual-token budgets " + ", ".join(map(str, budgets)) +
                 " (markers: " + ", ".join(f"{markers[i % len(markers)]}={b}" for i, b in enumerate(budgets)) + ")",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
