"""Images/s of LLaVA-NeXT ``anyres`` preprocessing: Loupe vs transformers, side by side in one process.

Loupe: ``LoupeImageProcessor`` with the ``llava-next-7b`` preset (336 tiles, llava-1.6 pinpoints, CLIP
mean/std). Peer: transformers' ``LlavaNextImageProcessorPil`` (the usable one without torchvision, errata
and performance-anchors §6) with ``size={"shortest_edge": 336}``, ``crop_size`` 336x336 and the same
pinpoints. Both get the same random 1000x700 RGB PIL images and return torch tensors; runs are interleaved
(HF, Loupe, HF, Loupe, ...) and the median per side is reported, because this machine's throughput varies
by ~20% between runs. Outputs are checked equal first (max |diff| < 1e-4, same shapes).

[IMPORTANT] transformers reads each pinpoint as (H, W), the official LLaVA code as (W, H): the peer is given
the transposed list so both choose the same canvases even on ties (see ``loupe.slicers.geometry``).

Where Loupe's time goes: two PIL bicubic resizes per image (canvas content and overview, ~85%; PIL's own
resize is the floor), a numpy paste/cut, and one vectorised normalise (``x * scale + offset`` in float32).
By default the two resizes run concurrently (``parallel_resize``, one helper thread; PIL releases the GIL);
a third arm reports Loupe on one thread (``parallel_resize=False``), whose outputs are checked identical.

Usage: ``python benchmarks/bench_anyres_preprocess.py [--images 20] [--runs 7] [--size 1000x700]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

from loupe.presets import get_preset
from loupe.processing import LoupeImageProcessor


def build():
    cfg = get_preset("llava-next-7b")["config"]
    loupe_proc = LoupeImageProcessor(slicer=cfg["slicer"], vision=cfg["vision"], connector=cfg["connector"])
    pins = [[h, w] for w, h in cfg["slicer"]["pinpoints"]]  # (W, H) -> transformers' (H, W)
    t = cfg["slicer"]["tile_size"]
    hf_proc = LlavaNextImageProcessorPil(
        size={"shortest_edge": t}, crop_size={"height": t, "width": t}, image_grid_pinpoints=pins
    )
    serial = LoupeImageProcessor(slicer={**cfg["slicer"], "parallel_resize": False}, vision=cfg["vision"],
                                 connector=cfg["connector"])
    return loupe_proc, hf_proc, serial


def rate(fn, images) -> float:
    start = time.perf_counter()
    for im in images:
        fn(im)
    return len(images) / (time.perf_counter() - start)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--size", default="1000x700", help="WxH of the random test images")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(args.images)]
    loupe_proc, hf_proc, serial_proc = build()

    def run_loupe(im):
        return loupe_proc(im, return_tensors="pt")["pixel_values"]

    def run_serial(im):
        return serial_proc(im, return_tensors="pt")["pixel_values"]

    def run_hf(im):
        return hf_proc(im, return_tensors="pt")["pixel_values"][0]

    for im in images[:3]:  # same outputs first
        a, b = run_loupe(im).numpy(), run_hf(im).numpy()
        assert np.array_equal(a, run_serial(im).numpy())
        assert a.shape == b.shape, f"shapes differ: loupe {a.shape}, transformers {b.shape}"
        diff = float(np.abs(a - b).max())
        assert diff < 1e-4, f"outputs differ by {diff}"
    print(f"outputs equal: pixel_values {tuple(a.shape)}, max |diff| {diff:.2e}")

    rate(run_hf, images[:2]), rate(run_loupe, images[:2]), rate(run_serial, images[:2])  # warm-up
    hf_rates, loupe_rates, serial_rates = [], [], []
    for _ in range(args.runs):
        hf_rates.append(rate(run_hf, images))
        loupe_rates.append(rate(run_loupe, images))
        serial_rates.append(rate(run_serial, images))
    hf_med, lp_med, se_med = (statistics.median(r) for r in (hf_rates, loupe_rates, serial_rates))
    print(f"{args.images} images of {w}x{h}, {args.runs} interleaved runs, median images/s")
    for label, med, runs in [("transformers LlavaNextImageProcessorPil", hf_med, hf_rates),
                             ("Loupe anyres (LoupeImageProcessor)", lp_med, loupe_rates),
                             ("Loupe, parallel_resize=False", se_med, serial_rates)]:
        print(f"  {label + ':':41s} {med:7.1f}   (runs: {', '.join(f'{r:.1f}' for r in runs)})")
    print(f"  ratio Loupe / transformers: {lp_med / hf_med:.2f}x (goal >= 2x); one thread: {se_med / hf_med:.2f}x")
    return {"transformers": hf_med, "loupe": lp_med, "loupe_serial": se_med, "ratio": lp_med / hf_med}


if __name__ == "__main__":
    main()
