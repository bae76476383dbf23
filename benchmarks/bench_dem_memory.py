"""Peak memory and time of INF-LLaVA's DEM vs full cross-attention between the two mosaics, side by side.

The paper's reason for the DEM (§4.3.2): cross-attention between the whole local and global mosaics "can lead
to significant out-of-memory issues during training"; the DEM attends only within matching windows. Performance
anchors §4 predict, per sample at 1008 px (72 x 72 mosaics, width 1024, 8 heads): DEM 113.5 GFLOPs and 47.8M
attention-probability elements, full cross-attention 309 GFLOPs and 430M elements: **9x the attention memory
and 2.7x the FLOPs**. At 1344 px (n = 4 x 336 tiles, 96 x 96 mosaics, 16 windows) the memory ratio is 16x.

What runs: ``loupe.connectors.dem`` (the official DEM: one shared 8-head attention, both directions, FFN fusion,
bilinear down-sampling) on random CLIP-like tile features, batch 1, fp32, width 1024, 2 threads. "full" swaps
the windows for two whole-mosaic cross-attentions (q = G over kv = L, then q = L over kv = G) with the same
weights and the same fusion. Attention kernels:

* ``math`` — the official ``attention()``: ``softmax(QK^T / sqrt(d_k)) V`` with the probability matrix
  materialised (scores and probabilities both live at the softmax); this is what the paper ran.
* ``sdpa`` — ``F.scaled_dot_product_attention`` (a fused CPU kernel that never stores the matrix): the memory
  gap mostly disappears, the FLOPs gap stays (anchors §4);
* ``none`` — no attention (``V`` passed through): the baseline for the attention's share of memory.

Columns: analytic GFLOPs and attention-matrix MiB (:func:`loupe.connectors.dem.dem_cost`; bf16 as in the
official training, fp32 as run here); then measured:

* **time** of a forward pass (no_grad, ``sdpa``), DEM and full interleaved in this process, median of ``--reps``
  (this machine's throughput varies between runs and with other load; ratios are what to read);
* **peak memory of one training step** (forward + backward) in a fresh subprocess per cell: the growth of peak
  RSS (``VmHWM`` after minus ``VmRSS`` before). Kernels ``math`` (official), ``none`` (attention replaced by
  ``V``: every other activation of the step) and ``sdpa``; ``math - none`` is the memory the attention
  matrices add, the quantity behind the paper's out-of-memory claim. Both variants run their two directions
  one after the other (the official code's two loops); the DEM batches the n windows of a direction into one
  call. (Loupe's connector batches both directions into one call: the same stored matrices, plus one more
  direction's transient scores at the peak.) Stored for backward: the probabilities of both directions; at
  the peak of backward, also one direction's gradient of the probabilities and of the scores.

The ``math`` training step of the full variant at 1344 px needs ~10 GB and runs only with ``--train-1344``.

Usage: ``python benchmarks/bench_dem_memory.py [--reps 2] [--channels 1024] [--sizes 1008,1344] [--train-1344]``
Runtime: about 3-5 minutes on 2 cores with the defaults (``--channels 512`` roughly halves it; attention
memory does not depend on the width).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from loupe.connectors.dem import (DEMConnector, SpatialEmbed, crop_blocks, crop_phases, dem_cost, downsample,
                                  global_mosaic, local_mosaic)

SIZES = {1008: (3, 24), 1344: (4, 24)}  # canvas px -> (n per side, tile grid g) with 336 px CLIP-L/14 tiles


def attend(mha, q, kv, kernel: str):
    """The DEM's attention module (``linears.0..3``, ``ln``) with a chosen kernel; (N, Lq, C), (N, Lk, C)."""
    n, lq, c = q.shape
    h = mha.heads
    Q, K, V = (mha.linears[i](x).view(n, -1, h, c // h).transpose(1, 2) for i, x in enumerate((q, kv, kv)))
    if kernel == "sdpa":
        x = F.scaled_dot_product_attention(Q, K, V)
    elif kernel == "none":  # no attention at all: the rest of the step, for the math - none difference
        x = V
    else:  # official attention(): the probability matrix is materialised
        x = torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(c // h), dim=-1) @ V
    return mha.ln(mha.linears[3](x.transpose(1, 2).reshape(n, lq, c)) + q)


def forward(se, loc, glo, grid, kernel: str, full: bool):
    """(B, n, g, g, C) local / global tile features -> (B, g, g, C), as the DEM connector before the overview."""
    b, nt, gh, gw, c = loc.shape
    L, G = local_mosaic(loc, grid), global_mosaic(glo, grid)
    if full:
        a = attend(se.attention, G.reshape(b, -1, c), L.reshape(b, -1, c), kernel).reshape(L.shape)
        bm = attend(se.attention, L.reshape(b, -1, c), G.reshape(b, -1, c), kernel).reshape(L.shape)
    else:  # the DEM: per direction, all its windows batched (the connector batches both directions at once)
        def win(q, kv):
            return attend(se.attention, q.reshape(-1, gh * gw, c), kv.reshape(-1, gh * gw, c), kernel)

        a = local_mosaic(win(crop_blocks(G, grid), loc).reshape(b, nt, gh, gw, c), grid)
        bm = global_mosaic(win(crop_phases(L, grid), glo).reshape(b, nt, gh, gw, c), grid)
    return downsample(se.fuse(a, bm), (gh, gw), "bilinear")


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def worker(spec: dict) -> dict:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    n, g = SIZES[spec["size"]]
    c = spec["channels"]
    se = SpatialEmbed(DEMConnector.Config(), c)
    loc, glo = torch.randn(1, n * n, g, g, c), torch.randn(1, n * n, g, g, c)
    train = spec["mode"] == "train"
    se.requires_grad_(train)
    times = []
    rss0 = _status("VmRSS")
    for _ in range(spec["reps"]):
        t0 = time.perf_counter()
        with torch.set_grad_enabled(train):
            out = forward(se, loc, glo, (n, n), spec["kernel"], spec["full"])
            if train:
                out.float().square().mean().backward()
        times.append(time.perf_counter() - t0)
        del out
        se.zero_grad(set_to_none=True)
    return {"time": statistics.median(times), "peak": max(0, _status("VmHWM") - rss0)}


def run_cell(spec: dict) -> dict:
    r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["killed"])[-1][:60]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def self_check(channels: int) -> None:
    """The benchmark's DEM path equals the connector's module (SDPA and math kernels)."""
    torch.manual_seed(0)
    se = SpatialEmbed(DEMConnector.Config(), channels).eval()
    loc, glo = torch.randn(1, 9, 6, 6, channels), torch.randn(1, 9, 6, 6, channels)
    with torch.no_grad():
        ref = downsample(se(loc, glo, (3, 3)), (6, 6), "bilinear")
        for kernel in ("sdpa", "math"):
            assert torch.allclose(forward(se, loc, glo, (3, 3), kernel, False), ref, atol=1e-4), kernel


def time_forward(c: int, size: int, reps: int) -> tuple[float, float]:
    """Median forward seconds (no_grad, sdpa) of (DEM, full), interleaved in this process."""
    torch.manual_seed(0)
    n, g = SIZES[size]
    se = SpatialEmbed(DEMConnector.Config(), c).eval()
    loc, glo = torch.randn(1, n * n, g, g, c), torch.randn(1, n * n, g, g, c)
    times: dict[bool, list[float]] = {False: [], True: []}
    with torch.no_grad():
        for _ in range(reps):
            for full in (False, True):
                t0 = time.perf_counter()
                forward(se, loc, glo, (n, n), "sdpa", full)
                times[full].append(time.perf_counter() - t0)
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--sizes", default="1008,1344")
    ap.add_argument("--train-1344", action="store_true",
                    help="also measure the full variant's math training step at 1344 (~10 GB)")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    torch.set_num_threads(2)
    self_check(args.channels)
    c = args.channels
    mib = lambda x: x / 2**20  # noqa: E731
    print(f"DEM vs full cross-attention, width {c}, 8 heads, batch 1, fp32, 2 threads\n")
    for size in (int(s) for s in args.sizes.split(",")):
        n, g = SIZES[size]
        side = n * g
        dem, full = dem_cost(c, (g, g), (n, n)), dem_cost(c, (g, g), (n, n), attention="full")
        print(f"== {size} px: {n}x{n} tiles of {g}x{g} features -> {side}x{side} mosaics; DEM: 2 x {n * n} windows of "
              f"{g * g} tokens, full: 2 x {side * side} x {side * side} ==")
        rows = [("GFLOPs (analytic)", dem["total"] / 1e9, full["total"] / 1e9, "{:.1f}"),
                ("attention elements, M (analytic)", dem["attn_elements"] / 1e6, full["attn_elements"] / 1e6, "{:.1f}"),
                ("attention MiB bf16 (analytic)", *(mib(2 * x["attn_elements"]) for x in (dem, full)), "{:.0f}"),
                ("attention MiB fp32 (analytic)", *(mib(4 * x["attn_elements"]) for x in (dem, full)), "{:.0f}")]
        t_dem, t_full = time_forward(c, size, args.reps)
        rows.append(("forward time s, sdpa (measured)", t_dem, t_full, "{:.2f}"))
        rows.append(("  achieved GFLOP/s", dem["total"] / 1e9 / t_dem, full["total"] / 1e9 / t_full, "{:.0f}"))
        peaks = {}
        for kernel in ("math", "none", "sdpa"):
            cells = []
            for is_full in (False, True):
                if kernel == "math" and is_full and size != 1008 and not args.train_1344:
                    cells.append({"error": "skipped: needs ~10 GB, pass --train-1344"})
                    continue
                cells.append(run_cell({"size": size, "channels": c, "mode": "train", "kernel": kernel,
                                       "full": is_full, "reps": 1}))
            name = f"train step peak MiB, {kernel}"
            if any("error" in x for x in cells):
                rows.append((name, None, None, "; ".join(x.get("error", "ok") for x in cells)))
                continue
            peaks[kernel] = [mib(x["peak"]) for x in cells]
            rows.append((name + " (measured)", *peaks[kernel], "{:.0f}"))
        if "math" in peaks and "none" in peaks:
            rows.append(("  math - none: attention's share", peaks["math"][0] - peaks["none"][0],
                         peaks["math"][1] - peaks["none"][1], "{:.0f}"))
        print(f"{'':38}{'DEM':>10}{'full':>10}{'full/DEM':>10}")
        for name, a, b, fmt in rows:
            if a is None:
                print(f"{name:38}  {fmt}")
                continue
            ratio = f"{b / a:.2f}x" if a else "-"
            print(f"{name:38}{fmt.format(a):>10}{fmt.format(b):>10}{ratio:>10}")
        print()


if __name__ == "__main__":
    main()
