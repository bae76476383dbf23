"""``loupe convert --from llava``: a checkpoint in the original LLaVA repo layout (``LlavaLlamaForCausalLM``: module
names ``model.mm_projector``, ``model.embed_tokens``, ..., the CLIP tower in its own folder) converts with zero
missing/unexpected keys and reproduces the official LLaVA-1.5 forward, written out loop by loop."""

import json

import pytest
import torch
from convert_helpers import random_image
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from loupe.cli.main import main as cli
from loupe.presets import TINY_CLIP, TINY_LLAMA
from loupe.serving.chat import load


def official_checkpoint(tmp_path, with_tower_in_checkpoint=False):
    """(llava folder, clip folder, llm, projector, clip) with random weights and the official names."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM
    from transformers.models.clip import CLIPImageProcessorPil

    from loupe.tokenizer import build_tiny_tokenizer

    torch.manual_seed(0)
    tower = tmp_path / "clip"
    clip = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP)).eval()
    clip.save_pretrained(tower)
    CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}).save_pretrained(tower)
    llm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in TINY_LLAMA.items() if k != "model_type"})).eval()
    projector = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 64))  # build_vision_projector mlp2x_gelu
    sd = {**llm.state_dict(), **{f"model.mm_projector.{k}": v for k, v in projector.state_dict().items()}}
    if with_tower_in_checkpoint:
        sd.update({f"model.vision_tower.vision_tower.vision_model.{k}": v for k, v in clip.state_dict().items()})
    src = tmp_path / "llava"
    src.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src / "model.safetensors"))
    cfg = llm.config.to_dict()
    cfg.update(model_type="llava_llama", architectures=["LlavaLlamaForCausalLM"], mm_vision_tower=str(tower),
               mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_projector_type="mlp2x_gelu",
               mm_hidden_size=64, image_aspect_ratio="pad", mm_patch_merge_type="flat", mm_use_im_start_end=False,
               mm_use_im_patch_token=False, tokenizer_padding_side="right")
    (src / "config.json").write_text(json.dumps(cfg))
    build_tiny_tokenizer(1024, "tiny").save_pretrained(src)
    return src, tower, llm, projector, clip


def expand2square(img, background):
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(img.mode, (side, side), background)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


@torch.no_grad()
def official_logits(llm, projector, clip, image, input_ids, image_token_id):
    """LLaVA-1.5's forward (llava_arch.py): expand2square, CLIP layer -2 without CLS, mm_projector, then the text
    embeddings cut at the image and the features put in between, segment by segment."""
    from transformers.models.clip import CLIPImageProcessorPil

    proc = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    fill = tuple(int(x * 255) for x in proc.image_mean)
    pixels = proc(expand2square(image.convert("RGB"), fill), return_tensors="pt")["pixel_values"]
    feats = clip(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    feats = projector(feats)[0]
    ids = input_ids[0].tolist()
    first = ids.index(image_token_id)
    n = sum(1 for t in ids if t == image_token_id)
    assert n == feats.shape[0]
    embed = llm.get_input_embeddings()
    pieces = [embed(torch.tensor(ids[:first])), feats, embed(torch.tensor(ids[first + n:]))]
    return llm(inputs_embeds=torch.cat(pieces)[None]).logits


@pytest.mark.parametrize("in_checkpoint", [False, True])
def test_original_llava15_converts_and_matches_the_official_forward(tmp_path, capsys, in_checkpoint):
    src, tower, llm, projector, clip = official_checkpoint(tmp_path, in_checkpoint)
    argv = ["convert", str(src), str(tmp_path / "dst"), "--from", "llava"]
    assert cli(argv[:3] + ["--from", "llava", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "model.mm_projector.0.weight -> connector.proj.0.weight" in plan and "0 missing, 0 unexpected" in plan
    assert cli(argv) == 0
    ours, proc = load(str(tmp_path / "dst"))
    assert proc.tokenizer.padding_side == "left"
    for w, h in [(56, 56), (100, 60), (31, 90), (200, 201)]:
        image = random_image(w, h, seed=w + h)
        enc = proc(images=image, text="USER: <image> what is the digit ASSISTANT:")
        with torch.no_grad():
            got = ours(**enc).logits
        want = official_logits(llm, projector, clip, image, enc["input_ids"], ours.config.image_token_id)
        assert (got - want).abs().max().item() <= 1e-4, (w, h)


def test_missing_vision_tower_is_named(tmp_path, capsys):
    src, tower, *_ = official_checkpoint(tmp_path)
    cfg = json.loads((src / "config.json").read_text())
    cfg["mm_vision_tower"] = "someone/clip-somewhere"
    (src / "config.json").write_text(json.dumps(cfg))
    assert cli(["convert", str(src), str(tmp_path / "dst"), "--from", "llava"]) == 2
    err = capsys.readouterr().err
    assert "someone/clip-somewhere" in err and "--vision-tower" in err
    assert not (tmp_path / "dst").exists()
    assert cli(["convert", str(src), str(tmp_path / "dst"), "--from", "llava", "--vision-tower", str(tower)]) == 0
