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


# --- LLaVA-1.6 (anyres + spatial_unpad): the official llava/mm_utils.py and llava_arch.py, segment by segment -------

def select_best_resolution(original_size, possible_resolutions):
    original_width, original_height = original_size
    best_fit, max_effective, min_wasted = None, 0, float("inf")
    for width, height in possible_resolutions:
        scale = min(width / original_width, height / original_height)
        dw, dh = int(original_width * scale), int(original_height * scale)
        effective = min(dw * dh, original_width * original_height)
        wasted = width * height - effective
        if effective > max_effective or (effective == max_effective and wasted < min_wasted):
            max_effective, min_wasted, best_fit = effective, wasted, (width, height)
    return best_fit


def resize_and_pad_image(image, target_resolution):
    import math

    original_width, original_height = image.size
    target_width, target_height = target_resolution
    scale_w, scale_h = target_width / original_width, target_height / original_height
    if scale_w < scale_h:
        new_width, new_height = target_width, min(math.ceil(original_height * scale_w), target_height)
    else:
        new_height, new_width = target_height, min(math.ceil(original_width * scale_h), target_width)
    resized = image.resize((new_width, new_height))
    out = Image.new("RGB", (target_width, target_height), (0, 0, 0))
    out.paste(resized, ((target_width - new_width) // 2, (target_height - new_height) // 2))
    return out


def process_anyres_image(image, processor, pinpoints):
    best = select_best_resolution(image.size, pinpoints)
    padded = resize_and_pad_image(image, best)
    side = processor.crop_size["height"]
    patches = [padded.crop((j, i, j + side, i + side)) for i in range(0, padded.size[1], side)
               for j in range(0, padded.size[0], side)]  # divide_to_patches: row-major
    crops = [image.resize((processor.size["shortest_edge"],) * 2)] + patches
    return torch.stack([processor.preprocess(c, return_tensors="pt")["pixel_values"][0] for c in crops])


def unpad_image(tensor, original_size):
    original_width, original_height = original_size
    current_height, current_width = tensor.shape[1:]
    if original_width / original_height > current_width / current_height:
        new_height = int(original_height * (current_width / original_width))
        padding = (current_height - new_height) // 2
        return tensor[:, padding:current_height - padding, :]
    new_width = int(original_width * (current_height / original_height))
    padding = (current_width - new_width) // 2
    return tensor[:, :, padding:current_width - padding]


@torch.no_grad()
def official_next_logits(llm, projector, clip, newline, image, input_ids, image_token_id, pinpoints, merge):
    """``process_anyres_image`` then ``prepare_inputs_labels_for_multimodal``'s spatial / unpad branch."""
    from transformers.models.clip import CLIPImageProcessorPil

    proc = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    pixels = process_anyres_image(image.convert("RGB"), proc, pinpoints)
    feats = projector(clip(pixels, output_hidden_states=True).hidden_states[-2][:, 1:])
    base, tiles = feats[0], feats[1:]
    side = 56 // 14
    if merge == "flat":
        feature = feats.flatten(0, 1)
    else:
        w, h = select_best_resolution(image.size, pinpoints)  # get_anyres_image_grid_shape(..., image_size)
        tiles = tiles.view(h // 56, w // 56, side, side, -1)
        if merge == "spatial_unpad":
            t = tiles.permute(4, 0, 2, 1, 3).contiguous().flatten(1, 2).flatten(2, 3)
            t = unpad_image(t, image.size)
            t = torch.cat((t, newline[:, None, None].expand(*t.shape[:-1], 1)), dim=-1)
            tiles = t.flatten(1, 2).transpose(0, 1)
        else:
            tiles = tiles.permute(0, 2, 1, 3, 4).contiguous().flatten(0, 3)
        feature = torch.cat((base, tiles), dim=0)
    ids = input_ids[0].tolist()
    first, n = ids.index(image_token_id), ids.count(image_token_id)
    assert n == feature.shape[0], (n, feature.shape)
    embed = llm.get_input_embeddings()
    pieces = [embed(torch.tensor(ids[:first])), feature, embed(torch.tensor(ids[first + n:]))]
    return llm(inputs_embeds=torch.cat(pieces)[None]).logits


#: squares, extreme aspects, pinpoint ties, and sizes where LLaVA's int(H * scale) and transformers' rounding of
#: the unpadded height differ (188x47, 343x392: the float product falls just below an integer)
NEXT_SIZES = [(56, 56), (57, 57), (112, 112), (30, 30), (40, 50), (13, 300), (301, 7), (100, 60), (60, 130),
              (112, 56), (56, 112), (168, 56), (200, 90), (111, 113), (224, 223), (188, 47), (343, 392)]


@pytest.mark.parametrize("merge", ["spatial_unpad", "spatial", "flat"])
def test_original_llava16_anyres_matches_the_official_forward(tmp_path, merge):
    """A LLaVA-1.6 folder (tower and ``model.image_newline`` saved in the checkpoint, ``image_aspect_ratio``
    anyres with (W, H) pinpoints): the converted model gives the official logits on squares, extreme aspects and
    sizes that tie between pinpoints."""
    from safetensors.torch import load_file

    from loupe.presets.llava_next import TINY_PINPOINTS

    src, _, llm, projector, clip = official_checkpoint(tmp_path, with_tower_in_checkpoint=True)
    newline = torch.randn(64) / 8
    sd = load_file(str(src / "model.safetensors"))
    save_file({**sd, "model.image_newline": newline}, str(src / "model.safetensors"))
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(image_aspect_ratio="anyres", image_grid_pinpoints=TINY_PINPOINTS, mm_patch_merge_type=merge,
               mm_vision_tower="openai/clip-vit-large-patch14-336-tiny-not-local")
    (src / "config.json").write_text(json.dumps(cfg))
    assert cli(["convert", str(src), str(tmp_path / "dst"), "--from", "llava", "--vision-tower",
                str(tmp_path / "clip")]) == 0
    ours, proc = load(str(tmp_path / "dst"))
    sizes = NEXT_SIZES if merge == "spatial_unpad" else [(56, 56), (13, 300), (301, 7), (100, 60), (224, 223)]
    for w, h in sizes:  # (spatial / flat: the grid order and the base crop; the rounding is unpad's alone)
        image = random_image(w, h, seed=w * 3 + h)
        enc = proc(images=image, text="USER: <image> what is the digit ASSISTANT:")
        with torch.no_grad():
            got = ours(**enc).logits
        want = official_next_logits(llm, projector, clip, newline, image, enc["input_ids"],
                                    ours.config.image_token_id, TINY_PINPOINTS, merge)
        assert got.shape == want.shape and (got - want).abs().max().item() <= 1e-4, (w, h)
