"""``loupe convert --from conv-llava``: a checkpoint in ConvLLaVA's release layout (the LLM folder without the tower,
``vision_tower/`` with a five-stage ``ConvNextModel`` config, ``CLIPImageProcessor`` and ``pytorch_model.bin``
without the final ``layernorm.*``, as ``safe_save_model_for_hf_trainer`` writes them) converts with zero missing /
unexpected keys and reproduces the official forward, the ConvNeXt written out block by block from the raw
tensors."""

import json

import pytest
import torch
import torch.nn.functional as F
from convert_helpers import random_image
from safetensors.torch import save_file
from test_llava_original import expand2square
from torch import nn

from loupe.cli.main import main as cli
from loupe.presets import TINY_LLAMA
from loupe.serving.chat import load

DEPTHS, WIDTHS, TILE = [1, 1, 1, 1, 2], [8, 16, 24, 32, 48], 128  # stride 64: 2 x 2 tokens


def official_checkpoint(tmp_path, select_layer=-1, tower_in_src=True):
    """(sft folder, tower folder, llm, projector, tower state dict) with random weights and the official names."""
    from transformers import ConvNextConfig, ConvNextModel, LlamaConfig, LlamaForCausalLM
    from transformers.models.clip import CLIPImageProcessorPil

    from loupe.tokenizer import build_tiny_tokenizer

    torch.manual_seed(0)
    src = tmp_path / "sft"
    src.mkdir()
    tower = src / "vision_tower" if tower_in_src else tmp_path / "ConvLLaVA-ConvNeXt-128"
    convnext = ConvNextModel(ConvNextConfig(num_stages=5, depths=DEPTHS, hidden_sizes=WIDTHS, image_size=TILE,
                                            out_features=["stage5"]))
    with torch.no_grad():  # layer scale 1e-6 would make every block an identity: give it weight
        for name, p in convnext.named_parameters():
            p.copy_(torch.rand_like(p) * 0.5 + 0.25 if name.endswith("layer_scale_parameter") else p)
            if p.dim() == 1 and not name.endswith("layer_scale_parameter"):
                p.add_(torch.randn_like(p) * 0.1)
    tower_sd = {k: v.clone() for k, v in convnext.state_dict().items() if not k.startswith("layernorm")}
    convnext.config.save_pretrained(tower)
    torch.save(tower_sd, tower / "pytorch_model.bin")
    CLIPImageProcessorPil(size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE}).save_pretrained(
        tower)
    llm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in TINY_LLAMA.items() if k != "model_type"})).eval()
    d = llm.config.hidden_size
    projector = nn.Sequential(nn.Linear(WIDTHS[-1], d), nn.GELU(), nn.Linear(d, d))  # mlp2x_gelu
    sd = {**llm.state_dict(), **{f"model.mm_projector.{k}": v for k, v in projector.state_dict().items()}}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src / "model.safetensors"))
    cfg = llm.config.to_dict()
    cfg.update(model_type="llava", architectures=["LlavaLlamaForCausalLM"],
               mm_vision_tower="ConvLLaVA/ConvLLaVA-ConvNeXt-1536", mm_hidden_size=WIDTHS[-1],
               mm_vision_select_layer=select_layer, mm_vision_select_feature="patch", mm_projector_type="mlp2x_gelu",
               image_aspect_ratio="pad", image_grid_pinpoints=None, mm_patch_merge_type="flat",
               mm_use_im_start_end=False, mm_use_im_patch_token=False, tune_vision_tower=True,
               tune_entire_model=False, tokenizer_model_max_length=2048, tokenizer_padding_side="right",
               vision_tower_lr=None, mm_projector_lr=None)
    (src / "config.json").write_text(json.dumps(cfg))
    build_tiny_tokenizer(1024, "tiny").save_pretrained(src)
    return src, tower, llm, projector, tower_sd


def ln_channels_first(x, sd, name):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + 1e-6)
    return sd[name + ".weight"][:, None, None] * x + sd[name + ".bias"][:, None, None]


def official_convnext(pixels, sd, select_layer):
    """``ConvNeXtCLIPVisionTower.forward``: ``embeddings`` then ``encoder(...).hidden_states[-1]`` (no final LN),
    every block written out: dwconv 7x7, LN, Linear 4C, GELU, Linear C, layer scale, residual; -2 pops the last
    block of the last stage."""
    x = F.conv2d(pixels, sd["embeddings.patch_embeddings.weight"], sd["embeddings.patch_embeddings.bias"], stride=4)
    x = ln_channels_first(x, sd, "embeddings.layernorm")
    for s, depth in enumerate(DEPTHS):
        if s > 0:
            x = ln_channels_first(x, sd, f"encoder.stages.{s}.downsampling_layer.0")
            x = F.conv2d(x, sd[f"encoder.stages.{s}.downsampling_layer.1.weight"],
                         sd[f"encoder.stages.{s}.downsampling_layer.1.bias"], stride=2)
        blocks = depth - (select_layer == -2 and s == len(DEPTHS) - 1)
        for b in range(blocks):
            p = f"encoder.stages.{s}.layers.{b}."
            y = F.conv2d(x, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=x.shape[1])
            y = y.permute(0, 2, 3, 1)
            y = F.layer_norm(y, (y.shape[-1],), sd[p + "layernorm.weight"], sd[p + "layernorm.bias"], eps=1e-6)
            y = F.linear(F.gelu(F.linear(y, sd[p + "pwconv1.weight"], sd[p + "pwconv1.bias"])),
                         sd[p + "pwconv2.weight"], sd[p + "pwconv2.bias"])
            x = x + (sd[p + "layer_scale_parameter"] * y).permute(0, 3, 1, 2)
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


@torch.no_grad()
def official_logits(llm, projector, tower_sd, image, input_ids, image_token_id, select_layer):
    """``process_images`` (pad: expand2square with the processor's mean colour, CLIPImageProcessor), the tower,
    ``mm_projector``, then ``prepare_inputs_labels_for_multimodal``: text embeddings cut at the image, segment by
    segment."""
    from transformers.models.clip import CLIPImageProcessorPil

    proc = CLIPImageProcessorPil(size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE})
    square = expand2square(image.convert("RGB"), tuple(int(x * 255) for x in proc.image_mean))
    pixels = proc(square, return_tensors="pt")["pixel_values"]
    feats = projector(official_convnext(pixels, tower_sd, select_layer))[0]
    ids = input_ids[0].tolist()
    first, n = ids.index(image_token_id), ids.count(image_token_id)
    assert n == feats.shape[0] == (TILE // 64) ** 2
    embed = llm.get_input_embeddings()
    pieces = [embed(torch.tensor(ids[:first])), feats, embed(torch.tensor(ids[first + n:]))]
    return llm(inputs_embeds=torch.cat(pieces)[None]).logits


@pytest.mark.parametrize("select_layer,tower_in_src", [(-1, True), (-2, False)])
def test_convllava_converts_and_matches_the_official_forward(tmp_path, capsys, select_layer, tower_in_src):
    src, tower, llm, projector, tower_sd = official_checkpoint(tmp_path, select_layer, tower_in_src)
    extra = [] if tower_in_src else ["--vision-tower", str(tower)]
    argv = ["convert", str(src), str(tmp_path / "dst"), "--from", "conv-llava", *extra]
    assert cli(argv[:2] + argv[3:] + ["--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "model.mm_projector.0.weight -> connector.proj.0.weight" in plan
    assert "encoder.stages.4.layers.1.pwconv2.weight -> vision_tower.convnext.encoder.stages.4.layers.1." in plan
    assert "0 missing, 0 unexpected" in plan and "0 left as they were" in plan
    assert cli(argv) == 0
    ours, proc = load(str(tmp_path / "dst"))
    assert proc.tokenizer.padding_side == "left" and proc.tokenizer.chat_template
    cfg = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert cfg["vision"]["select_layer"] == select_layer and cfg["slicer"]["tile_size"] == TILE
    assert not any(k.startswith(("tune_", "mm_", "vision_tower_lr")) for k in cfg["text_config"])
    for w, h in [(128, 128), (100, 60), (31, 90), (200, 201), (300, 7)]:
        image = random_image(w, h, seed=w + h)
        enc = proc(images=image, text="USER: <image> what is the digit ASSISTANT:")
        with torch.no_grad():
            got = ours(**enc).logits
        want = official_logits(llm, projector, tower_sd, image, enc["input_ids"], ours.config.image_token_id,
                               select_layer)
        assert (got - want).abs().max().item() <= 1e-4, (w, h)


def test_final_layernorm_is_dropped_with_its_reason(tmp_path, capsys):
    """A hub ConvNeXt folder that still holds ``layernorm.*`` converts; the plan says why it is dropped."""
    src, tower, *_ = official_checkpoint(tmp_path)
    sd = torch.load(tower / "pytorch_model.bin", weights_only=True)
    sd.update({"layernorm.weight": torch.ones(WIDTHS[-1]), "layernorm.bias": torch.zeros(WIDTHS[-1])})
    torch.save(sd, tower / "pytorch_model.bin")
    assert cli(["convert", str(src), "--from", "conv-llava", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "layernorm.weight dropped: ConvNextModel's final pooled LayerNorm" in out


def test_missing_or_foreign_tower_is_named(tmp_path, capsys):
    src, tower, *_ = official_checkpoint(tmp_path, tower_in_src=False)
    dst = tmp_path / "dst"
    assert cli(["convert", str(src), str(dst), "--from", "conv-llava"]) == 2
    err = capsys.readouterr().err
    assert "ConvLLaVA/ConvLLaVA-ConvNeXt-1536" in err and "--vision-tower" in err and not dst.exists()
    cfg = json.loads((tower / "config.json").read_text())
    (tower / "config.json").write_text(json.dumps(dict(cfg, model_type="clip_vision_model")))
    assert cli(["convert", str(src), str(dst), "--from", "conv-llava", "--vision-tower", str(tower)]) == 2
    assert "not convnext" in capsys.readouterr().err and not dst.exists()
    (tower / "config.json").write_text(json.dumps(cfg))
    sft = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps(dict(sft, vision_add_five_stage=6)))
    assert cli(["convert", str(src), str(dst), "--from", "conv-llava", "--vision-tower", str(tower)]) == 2
    assert "vision_add_five_stage" in capsys.readouterr().err and not dst.exists()


def test_other_llava_formats_point_to_conv_llava(tmp_path, capsys):
    """ConvLLaVA's config says model_type "llava" too: --from llava-hf and --from llava name the right format."""
    src, *_ = official_checkpoint(tmp_path)
    for fmt in ("llava-hf", "llava"):
        assert cli(["convert", str(src), str(tmp_path / "dst"), "--from", fmt]) == 2
        err = capsys.readouterr().err
        assert "use --from conv-llava" in err and "Traceback" not in err, err
        assert not (tmp_path / "dst").exists()
