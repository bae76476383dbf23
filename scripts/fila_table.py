"""FILA-7B (``fila-7b`` preset: the FILA/HyViLM paper's design, its unreleased details inferred
from the official LLaVA-NeXT code it extends) on the meta device: parameters per part, visual tokens per image size,
and vision FLOPs per image — beside LLaVA-NeXT-7B, which FILA extends (same slicer, ViT, connector and LLM).

Parameters are counted on modules built under ``torch.device("meta")`` (no weights), split by module: the CLIP ViT
(``vision_tower.vision_model``, all 24 blocks kept), the ConvNeXt branch (``vision_tower.conv_branch``, LAION
ConvNeXt-L 4 stages, no final LN), each CVFM (``vision_tower.cvfm.{i}``), the connector (mlp2x_gelu +
``image_newline``) and the LLM (Vicuna-7B). Tokens come from the processor's geometry (the same pure functions the
model checks against): FILA's token layout is LLaVA-NeXT's, so 672x672 -> 576 + 48*48 + 48 = 2928 (official LLaVA-NeXT
``llava_arch.py``, ``prepare_inputs_labels_for_multimodal``: unpad + one ``image_newline`` per row).
Vision FLOPs are the encoders' own analytic counts (2 x MACs, :meth:`HybridEncoder.flops`: ViT blocks run, the
ConvNeXt over every tile's share of the canvas at 32/14 x and the overview at 768, CVFMs; resizing not counted).

Usage: ``python scripts/fila_table.py [--json out/fila_table.json]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import loupe
from loupe.encoders.hybrid import HybridEncoder
from loupe.geometry import ImageGeometry

SIZES = [(336, 336), (672, 672), (1008, 336), (336, 1008), (672, 336), (336, 672), (1000, 700), (800, 600),
         (1920, 1080), (224, 224)]


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameters(preset: str) -> dict[str, int]:
    with torch.device("meta"):
        m = loupe.build_model(preset)
    vt = m.vision_tower
    out = {"vision: CLIP ViT-L/14-336": count(vt.vision_model)}
    if getattr(vt, "conv_branch", None) is not None:
        out["vision: ConvNeXt-L branch"] = count(vt.conv_branch)
        for (block, stage), cvfm in zip(vt.interactions, vt.cvfm):
            out[f"vision: CVFM stage {stage} -> after ViT block {block}"] = count(cvfm)
    out["connector (mlp2x_gelu + image_newline)"] = count(m.connector)
    out["LLM (Vicuna-7B)"] = count(m.language_model)
    out["total"] = count(m)
    assert out["total"] == sum(v for k, v in out.items() if k != "total")
    return out


def tokens(preset: str) -> dict[str, tuple[int, int]]:
    """{"WxH": (tiles, visual tokens)} from the processor geometry."""
    geo = ImageGeometry.from_config(loupe.build_config(preset))
    return {f"{w}x{h}": (geo.layout((w, h)).num_tiles, geo.num_tokens((w, h))) for w, h in SIZES}


def vision_flops(preset: str) -> dict[str, dict[str, float]]:
    """{"WxH": {"vit", "convnext", "cvfm", "total"} in TFLOPs} for the hybrid encoder, per image."""
    cfg = loupe.build_config(preset)
    geo = ImageGeometry.from_config(cfg)
    out = {}
    for w, h in SIZES:
        lay = geo.layout((w, h))
        acc: dict[str, float] = {}
        for size in lay.tile_sizes:
            for k, v in HybridEncoder.flops(geo.encoder_cfg, size).items():
                acc[k] = acc.get(k, 0) + v / 1e12
        out[f"{w}x{h}"] = acc
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    fila, next7 = parameters("fila-7b"), parameters("llava-next-7b")
    print("## fila-7b parameters (meta device)\n")
    print("| part | parameters | M |\n|---|---:|---:|")
    for k, v in fila.items():
        print(f"| {k} | {v:,} | {v / 1e6:.1f} |")
    extra = fila["total"] - next7["total"]
    print(f"\nllava-next-7b total {next7['total']:,}; FILA adds {extra:,} ({extra / 1e6:.1f} M: ConvNeXt-L "
          f"{fila['vision: ConvNeXt-L branch'] / 1e6:.1f} M + CVFM "
          f"{sum(v for k, v in fila.items() if 'CVFM' in k) / 1e6:.1f} M)\n")
    tf, tn = tokens("fila-7b"), tokens("llava-next-7b")
    fl = vision_flops("fila-7b")
    print("## visual tokens and vision TFLOPs per image (fila-7b; tokens equal llava-next-7b's)\n")
    print("| image WxH | tiles | tokens | llava-next-7b tokens | ViT TF | ConvNeXt TF | CVFM TF | vision TF |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for size, (tiles, n) in tf.items():
        f = fl[size]
        print(f"| {size} | {tiles} | {n} | {tn[size][1]} | {f['vit']:.3f} | {f['convnext']:.3f} | {f['cvfm']:.3f} "
              f"| {f['total']:.3f} |")
    assert tf == tn and tf["672x672"] == (5, 2928)
    result = {"parameters": fila, "llava_next_7b_parameters": next7, "tokens": tf, "vision_tflops": fl}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
