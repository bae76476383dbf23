"""Profiler outputs a person can read: a terminal table (rich), JSON, a Markdown report and a README table.

``write(records, folder)`` writes ``profile.json`` (one record per preset and image size), ``profile.md`` (the
tables, per-part FLOPs, the analytic/counted checks, the notes on what each paper's figure leaves out, the
conventions and memory assumptions), ``README_table.md`` (one compact table to paste into a README) and the
PNG plots of :mod:`loupe.profiling.plots`.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import memory as _memory
from .anchors import ANCHORS
from .profiler import __doc__ as CONVENTIONS

GB = 1e9


def _size(r) -> str:
    return f"{r['image_size'][0]}x{r['image_size'][1]}"


def _anchor(r) -> str:
    a = r.get("anchor")
    if not a:
        return ""
    tag = {"paper": "paper", "regression": "pinned", "inconsistent": "paper, inconsistent"}[a["kind"]]
    return f"{a['paper_tflops']:g} ({tag}) {100 * a['deviation']:+.1f}%"


def _gib(n: int) -> str:
    return _g(n / _memory.GIB)


def _g(x: float) -> str:
    """A readable number of any magnitude: 44.45, 0.382, 0.000431."""
    return f"{x:.2f}" if x >= 10 else f"{x:.3g}"


def rows(records: list[dict]) -> list[list[str]]:
    """Table rows shared by the terminal and Markdown tables."""
    out = []
    for r in records:
        p, f, m = r["flops"]["paper"], r["flops"]["full"], r["memory"]
        conn = _g(p["connector"] / 1e12) + (f" (+{_g(p['connector_left_out'] / 1e12)} left out)"
                                             if p["connector_left_out"] else "")
        out.append([
            r["preset"], _size(r), str(r["tiles"]), str(r["visual_tokens"]), _g(r["paper_tflops"]),
            _g(r["full_tflops"]), _anchor(r), _g(p["vision"] / 1e12), conn,
            f"{_g(p['llm_layers'] / 1e12)} ({_g(p['llm_attention'] / 1e12)})",
            f"{_g(p['lm_head'] / 1e9)} / {_g(f['lm_head'] / 1e9)}", _g(r["params"] / 1e9),
            _g(m["kv_cache_bytes"] / 2**20), f"{_gib(m['inference_bytes'])} ({_memory.fits_label(m['fits_inference'])})",
            f"{_gib(m['training_bytes'])} ({_memory.fits_label(m['fits_training'])})",
            f"{_gib(m['training_connector_only_bytes'])} ({_memory.fits_label(m['fits_training_connector_only'])})",
            "; ".join(r["flags"]) or "ok",
        ])
    return out


HEADER = ["preset", "image WxH", "tiles", "visual tokens", "paper TFLOPs", "full TFLOPs", "anchor (dev.)",
          "vision TF", "connector TF", "LLM layers TF (attn)", "lm_head GF paper/full", "params B", "KV MiB",
          "inference GiB (fits)", "train step GiB (fits)", "connector-only step GiB (fits)", "checks"]


def terminal(records: list[dict], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=240)
    r0 = records[0] if records else {}
    t = Table(title=f"loupe profile (FLOPs = 2 x MACs, per image; text tokens {r0.get('text_tokens', 0)}, "
                    f"memory at batch {r0.get('batch', 1)})", show_lines=False)
    for i, h in enumerate(HEADER):
        t.add_column(h, overflow="fold", no_wrap=i < 2)
    for row in rows(records):
        t.add_row(*row)
    console.print(t)
    for r in records:
        cmp = r.get("dem_vs_full_cross_attention")
        if cmp:
            console.print(dem_line(r, cmp))
        if r.get("latency"):
            console.print(latency_line(r))


def dem_line(r, cmp) -> str:
    d, f = cmp["dem"], cmp["full_cross_attention"]
    return (f"{r['preset']} {_size(r)}: DEM {d['gflops']:.1f} GFLOPs, {d['attention_mib']:.0f} MiB attention vs full "
            f"cross-attention {f['gflops']:.1f} GFLOPs, {f['attention_mib']:.0f} MiB: FLOPs x{cmp['flops_ratio']:.2f}, "
            f"attention memory x{cmp['attention_memory_ratio']:.1f} (bf16 probabilities per sample)")


def latency_line(r) -> str:
    lat = r["latency"]
    dec = "n/a" if lat["decode_tokens_per_s"] is None else f"{lat['decode_tokens_per_s']:.1f}"
    return (f"{r['preset']} {_size(r)} on {lat['device']} ({lat['dtype']}): prefill {1e3 * lat['latency_s']:.1f} ms, "
            f"{lat['images_per_s']:.2f} img/s, {lat['prefill_tokens_per_s']:.0f} prompt tok/s, decode {dec} tok/s, "
            f"{lat['achieved_tflops_per_s'] * 1e3:.1f} GFLOP/s achieved")


def _md_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
    return "\n".join(lines)


def readme_table(records: list[dict]) -> str:
    """The compact table for a README: tokens, both totals, parameters, memory and what fits. Sizes of one
    preset with identical figures (a fixed canvas) share a row."""
    head = ["Method (preset)", "Image", "Visual tokens", "TFLOPs (paper)", "TFLOPs (full)", "Params (B)",
            "KV cache (MiB)", "Inference (GiB)", "Train step full / connector-only (GiB)",
            "Fits: inference / full / connector-only (GB)"]
    rows_: dict[tuple, list[str]] = {}
    for r in records:
        m = r["memory"]
        cells = (f"`{r['preset']}`", str(r["visual_tokens"]), _g(r["paper_tflops"]), _g(r["full_tflops"]),
                 _g(r["params"] / 1e9), _g(m["kv_cache_bytes"] / 2**20), _gib(m["inference_bytes"]),
                 f"{_gib(m['training_bytes'])} / {_gib(m['training_connector_only_bytes'])}",
                 " / ".join(_memory.fits_label(m[k]) for k in ("fits_inference", "fits_training",
                                                                "fits_training_connector_only")))
        rows_.setdefault(cells, []).append(_size(r))
    body = [[c[0], ", ".join(sizes), *c[1:]] for c, sizes in rows_.items()]
    r0 = records[0] if records else {"text_tokens": 0, "batch": 1}
    note = (f"\n\nTFLOPs per image, FLOPs = 2 x MACs. *paper*: prefill, 0 text tokens, last-position logits, every "
            f"ViT block on every crop (LLaVA-UHD v2 Table 1 convention); *full*: one forward pass as Loupe runs it "
            f"with {r0['text_tokens']} text tokens. Memory at batch {r0['batch']}, bf16 weights: inference = weights + "
            f"the measured peak of the largest stage (KV cache included); training step = full fine-tuning with "
            f"AdamW (16 B/parameter) + measured activations, fused attention, no checkpointing; connector-only = "
            f"LLaVA stage 1 (encoder and LLM frozen). GB budgets are GiB. Generated by `loupe profile`.\n")
    return _md_table(head, body) + note


def markdown(records: list[dict]) -> str:
    parts = ["# Loupe profile\n", _md_table(HEADER, rows(records)), ""]
    parts.append("## Analytic (parts' own `flops`) vs counted (FlopCounterMode, meta device)\n")
    body = [[r["preset"], _size(r), c["part"], "-" if c["analytic"] is None else f"{c['analytic'] / 1e12:.4f}",
             f"{c['counted'] / 1e12:.4f}", "-" if c["gap"] is None else f"{100 * c['gap']:+.2f}%", c["flag"] or "ok"]
            for r in records for c in r["checks"]]
    parts += [_md_table(["preset", "image", "part", "analytic TF", "counted TF", "gap", "flag"], body), ""]
    extra = [dem_line(r, r["dem_vs_full_cross_attention"]) for r in records if r.get("dem_vs_full_cross_attention")]
    extra += [latency_line(r) for r in records if r.get("latency")]
    if extra:
        parts += ["## DEM vs full cross-attention, measured latency\n"] + [f"- {x}" for x in extra] + [""]
    notes = {n: None for r in records for n in r["notes"]}
    if notes:
        parts += ["## What the papers' figures leave out or count differently\n"] + [f"- {n}" for n in notes] + [""]
    incons = [a for a in ANCHORS if a.kind == "inconsistent"]
    parts += ["## Paper rows not used as anchors\n"]
    parts += [f"- {a.preset} {a.paper_tflops:g} T: {a.source}" for a in incons]
    parts += ["\n## Conventions\n", CONVENTIONS.strip(), "\n## Memory assumptions\n", _memory.__doc__.strip(), ""]
    return "\n".join(parts)


def write(records: list[dict], folder, plots: bool = True) -> list[Path]:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "profile.json", out / "profile.md", out / "README_table.md"]
    files[0].write_text(json.dumps(records, indent=1, default=str))
    files[1].write_text(markdown(records))
    files[2].write_text(readme_table(records))
    if plots:
        from .plots import plot_all

        files += plot_all(records, out)
    return files
