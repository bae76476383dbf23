"""Memory and time of ``loupe convert --from llava-hf`` on a synthetic checkpoint of >= 2 GB in >= 4 shards.

The checkpoint: a llava-hf LLaVA-1.5 folder in the hub layout whose language model is a Llama of hidden 2048,
intermediate 5504, 8 layers, vocabulary 32000 (~536 M parameters, ~2.1 GB in float32) with a tiny CLIP, written
shard by shard with random tensors (``--shards``, default 5), plus a tiny tokenizer and processor config.

The conversion runs in a child process, which reports its peak RSS (``VmHWM``) right after its imports (the
interpreter baseline) and after converting. Printed: the largest source shard, peak RSS minus the baseline, their
ratio (target <= 1.3: the converter holds one tensor at a time, plus the pages of the shard it is reading), and the
conversion time against a plain ``shutil.copytree`` of the same folder.

Usage: ``python benchmarks/bench_convert_memory.py [--dir /tmp/loupe-convert-bench] [--shards 5] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import sys, time
import loupe
from loupe.convert import convert
def hwm():  # this process's peak RSS since exec (ru_maxrss would carry the parent's over fork + exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
base = hwm()
t0 = time.perf_counter()
convert(sys.argv[1], sys.argv[2], from_format="llava-hf")
dt = time.perf_counter() - t0
print(base, hwm(), dt)
"""


def synthetic(folder: Path, shards: int) -> None:
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig

    from loupe.convert.common import write_sharded
    from loupe.presets import TINY_CLIP
    from loupe.tokenizer import build_tiny_tokenizer

    text = dict(model_type="llama", hidden_size=2048, intermediate_size=5504, num_hidden_layers=8,
                num_attention_heads=16, num_key_value_heads=16, vocab_size=32000, max_position_embeddings=4096,
                tie_word_embeddings=False)
    tok = build_tiny_tokenizer(1024, "tiny")
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**TINY_CLIP).to_dict(), text_config=text,
                      image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2)
    cfg.architectures = ["LlavaForConditionalGeneration"]
    from loupe.convert.llava_hf import LOUPE_TO_HUB, expected_state, first_rule, loupe_config
    from loupe.configuration import LoupeConfig

    pre = {"size": {"shortest_edge": 56}, "crop_size": {"height": 56, "width": 56}, "do_center_crop": True,
           "image_processor_type": "CLIPImageProcessor", "resample": 3}
    shapes = expected_state(LoupeConfig(**loupe_config(cfg.to_dict(), pre)))
    items = [(first_rule(LOUPE_TO_HUB, k), s) for k, s in shapes.items()]
    total = sum(torch.Size(s).numel() for _, s in items)
    groups, cur, size = [], [], 0
    for name, shape in items:  # greedy split into `shards` groups of about equal bytes
        cur.append((name, shape))
        size += torch.Size(shape).numel()
        if size >= total / shards and len(groups) < shards - 1:
            groups.append(cur)
            cur, size = [], 0
    groups.append(cur)

    def item(name, shape):
        return name, tuple(shape), torch.float32, lambda: torch.randn(shape) * 0.02

    folder.mkdir(parents=True)
    write_sharded(folder, [[item(n, s) for n, s in g] for g in groups])
    cfg.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    tok.save_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/loupe-convert-bench")
    ap.add_argument("--shards", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the synthetic checkpoint and the outputs")
    args = ap.parse_args()
    root = Path(args.dir)
    if root.exists():
        shutil.rmtree(root)
    src, dst, copy = root / "src", root / "dst", root / "copy"
    t0 = time.perf_counter()
    synthetic(src, args.shards)
    files = sorted(src.glob("*.safetensors"))
    sizes = [f.stat().st_size for f in files]
    print(f"synthetic checkpoint: {sum(sizes) / 1e9:.2f} GB in {len(files)} shards, largest {max(sizes) / 1e9:.3f} GB "
          f"(written in {time.perf_counter() - t0:.1f} s)")
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    base, peak, dt = (float(x) for x in out.stdout.split()[-3:])
    t1 = time.perf_counter()
    shutil.copytree(src, copy)
    dc = time.perf_counter() - t1
    over = peak - base
    print(f"peak RSS {peak / 1e9:.3f} GB, interpreter + imports baseline {base / 1e9:.3f} GB -> conversion adds "
          f"{over / 1e9:.3f} GB = {over / max(sizes):.2f} x the largest shard (target <= 1.3)")
    print(f"conversion {dt:.1f} s, plain file copy {dc:.1f} s -> ratio {dt / dc:.2f}")
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
