"""``loupe convert --from llava-hf`` / ``--to llava-hf``: logit parity with transformers on tiny random models saved
by transformers itself, the three key layouts, and the round trip."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import loupe
from loupe.cli.main import main as cli
from loupe.convert import llava_hf
from loupe.serving.chat import load

from convert_helpers import hf_llava, random_image

#: squares, extreme aspects, sizes below one tile, and sizes that tie between pinpoint canvases (56 px tiles:
#: both sides <= 56 tie between 56x112 and 112x56; 112x112 and 168x56 tie on effective area for some sizes), and
#: two where transformers' round(H * scale, 7) and LLaVA's int(H * scale) unpad differently (188x47, 343x392)
SIZES = [(56, 56), (57, 57), (112, 112), (300, 300), (30, 30), (40, 50), (56, 30), (13, 300), (301, 7), (2000, 20),
         (20, 1000), (100, 60), (60, 130), (112, 56), (56, 112), (168, 56), (56, 168), (200, 90), (123, 45),
         (150, 150), (40, 170), (111, 113), (224, 223), (188, 47), (343, 392)]
PROMPT = "USER: <image> what is the digit ASSISTANT:"


def _folder_tensors(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.parametrize("kind", ["llava", "llava_next"])
def test_import_gives_transformers_logits(kind, llava_hf_folders, tmp_path):
    """All sizes in one right-padded batch (one forward per model; causal attention keeps every real token's logits
    those of the unpadded prompt), compared on the real tokens; the first size also alone."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    src = llava_hf_folders[kind]
    assert cli([ "convert", str(src), str(tmp_path / "dst"), "--from", "llava-hf"]) == 0
    ours, our_proc = load(str(tmp_path / "dst"))
    assert our_proc.tokenizer.padding_side == "left" and our_proc.tokenizer.chat_template
    theirs, their_proc = AutoModelForImageTextToText.from_pretrained(str(src)).eval(), AutoProcessor.from_pretrained(
        str(src))
    images = [random_image(w, h, seed=w * 7 + h) for w, h in SIZES]
    a = their_proc(images=images, text=[PROMPT] * len(SIZES), return_tensors="pt", padding=True,
                   padding_side="right")
    b = our_proc(images=images, text=[PROMPT] * len(SIZES), padding_side="right")
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["attention_mask"], b["attention_mask"])
    with torch.no_grad():
        diff = (theirs(**a).logits - ours(**b).logits).abs().amax(-1)  # (sizes, tokens)
    per_size = diff.masked_fill(a["attention_mask"] == 0, 0).amax(-1)
    bad = {SIZES[i]: d for i, d in enumerate(per_size.tolist()) if not d <= 1e-4}
    assert len(SIZES) >= 20 and not bad, bad
    one_a, one_b = their_proc(images=images[0], text=PROMPT, return_tensors="pt"), our_proc(images=images[0],
                                                                                             text=PROMPT)
    assert torch.equal(one_a["input_ids"], one_b["input_ids"])
    with torch.no_grad():
        assert (theirs(**one_a).logits - ours(**one_b).logits).abs().max().item() <= 1e-4


def test_llava15_reads_the_crop_preprocessing(llava_hf_folders, tmp_path):
    """llava-hf LLaVA-1.5 ships a CLIPImageProcessor: shortest-edge resize + centre crop, not expand2square."""
    loupe_folder = tmp_path / "dst"
    llava_hf.import_folder(llava_hf_folders["llava"], loupe_folder)
    cfg = json.loads((loupe_folder / "config.json").read_text())
    assert cfg["slicer"]["name"] == "pad" and cfg["slicer"]["mode"] == "crop"
    next_cfg = llava_hf.plan_import(llava_hf_folders["llava_next"])[0]
    assert next_cfg.slicer["pinpoint_order"] == "hw" and next_cfg.connector["merge"] == "spatial_unpad"


@pytest.mark.parametrize("layout", ["saved", "hub", "memory"])
def test_reads_all_three_key_layouts(layout, llava_hf_folders, tmp_path):
    src = llava_hf_folders["llava_next"]
    saved = _folder_tensors(src)
    assert any(k.startswith("vision_tower.embeddings.") for k in saved)  # what transformers 5.23 writes
    hub = llava_hf.canonical(saved)
    assert any(k.startswith("vision_tower.vision_model.embeddings.") for k in hub)
    if layout == "saved":
        tensors = saved
    elif layout == "hub":
        tensors = hub
    else:
        model, _ = hf_llava("llava_next")
        model.load_state_dict({k: hub[llava_hf.to_hub(k)] for k in model.state_dict()})
        tensors = model.state_dict()
        assert any(k.startswith("model.language_model.") for k in tensors)
    folder = tmp_path / "src"
    folder.mkdir()
    for f in src.iterdir():
        if not f.name.endswith(".safetensors"):
            (folder / f.name).write_bytes(f.read_bytes())
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    report = llava_hf.import_folder(folder, tmp_path / "dst")
    assert report.ok and len(report.loaded) == len(hub)
    got = _folder_tensors(tmp_path / "dst")
    for k, v in hub.items():
        assert torch.equal(got[llava_hf.first_rule(llava_hf.HUB_TO_LOUPE, k)], v), k


def _semantic(config_path):
    from transformers import AutoConfig

    d = AutoConfig.from_pretrained(str(config_path)).to_dict()
    for k in ("transformers_version", "_name_or_path", "dtype"):
        d.pop(k, None)
    return d


@pytest.mark.parametrize("kind", ["llava", "llava_next"])
def test_round_trip_is_bit_identical(kind, llava_hf_folders, tmp_path):
    src = llava_hf_folders[kind]
    assert cli(["convert", str(src), str(tmp_path / "loupe"), "--from", "llava-hf"]) == 0
    assert cli(["convert", str(tmp_path / "loupe"), str(tmp_path / "back"), "--to", "llava-hf"]) == 0
    a, b = llava_hf.canonical(_folder_tensors(src)), _folder_tensors(tmp_path / "back")
    assert sorted(a) == sorted(b)  # the hub layout, canonical names
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert _semantic(src / "config.json") == _semantic(tmp_path / "back" / "config.json")


FRESH = r"""
import sys, torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from PIL import Image
import numpy as np
out = {}
for folder in sys.stdin.read().split():  # the folders come once the parent has written them
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    proc = AutoProcessor.from_pretrained(folder)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 130, 3), dtype=np.uint8))
    enc = proc(images=image, text="USER: <image> what is the digit ASSISTANT:", return_tensors="pt")
    with torch.no_grad():
        out[folder] = (type(model).__name__, enc["input_ids"], model(**enc).logits)
assert not any(m == "loupe" or m.startswith("loupe.") for m in sys.modules), "loupe was imported"
torch.save(out, sys.argv[1])
"""


def test_loupe_model_exports_to_transformers_without_loupe(tmp_path):
    """A Loupe llava-next-tiny and llava15-tiny (expand2square) -> llava-hf; a fresh process without loupe loads
    them with AutoModelForImageTextToText + AutoProcessor and gives Loupe's logits. The child starts first (its
    imports overlap the export) and is given the folders on stdin."""
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, "-c", FRESH, str(tmp_path / "out.pt")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    folders, ours = [], {}
    for preset in ("llava-next-tiny", "llava15-tiny"):
        torch.manual_seed(1)
        model, proc = loupe.build(preset)
        with torch.no_grad():  # "trained": away from the initialisation
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        model.save_pretrained(tmp_path / preset)
        proc.save_pretrained(tmp_path / preset)
        dst = tmp_path / f"{preset}-hf"
        assert cli(["convert", str(tmp_path / preset), str(dst), "--to", "llava-hf"]) == 0
        folders.append(str(dst))
        enc = proc(images=random_image(130, 70), text=PROMPT)
        with torch.no_grad():
            ours[str(dst)] = (enc["input_ids"], model.eval()(**enc).logits)
    try:
        _, err = child.communicate("\n".join(folders), timeout=300)
    finally:
        child.kill()
    assert child.returncode == 0, err[-3000:]
    theirs = torch.load(tmp_path / "out.pt")
    assert theirs[folders[0]][0] == "LlavaNextForConditionalGeneration"
    assert theirs[folders[1]][0] == "LlavaForConditionalGeneration"
    for f in folders:
        assert torch.equal(theirs[f][1], ours[f][0]), f
        assert (theirs[f][2] - ours[f][1]).abs().max().item() <= 1e-4, f


def test_sharded_source_gives_sharded_output_and_dtype(tmp_path):
    """Shard by shard: one output shard per source shard, an index, and ``--dtype`` casting floating tensors."""
    model, proc = hf_llava("llava")
    model.save_pretrained(tmp_path / "src", max_shard_size="200KB")
    proc.save_pretrained(tmp_path / "src")
    n_src = len(list((tmp_path / "src").glob("*.safetensors")))
    assert n_src >= 3
    assert cli(["convert", str(tmp_path / "src"), str(tmp_path / "dst"), "--from", "llava-hf", "--dtype", "bf16"]) == 0
    index = json.loads((tmp_path / "dst" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == n_src == len(list((tmp_path / "dst").glob("*.safetensors")))
    got = _folder_tensors(tmp_path / "dst")
    assert sorted(got) == sorted(index["weight_map"]) and all(v.dtype == torch.bfloat16 for v in got.values())
    hub = llava_hf.canonical(model.state_dict())
    for k, v in hub.items():
        assert torch.equal(got[llava_hf.first_rule(llava_hf.HUB_TO_LOUPE, k)], v.to(torch.bfloat16)), k
    ours = loupe.LoupeForConditionalGeneration.from_pretrained(str(tmp_path / "dst"))
    assert ours.dtype == torch.bfloat16
