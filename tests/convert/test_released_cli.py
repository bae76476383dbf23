"""``loupe convert --from inf-llava | llava-uhd-v2 --preset P``: tiny checkpoints written with the releases' key names
(INF-LLaVA: ``model.spatial_embed.*``, ``model.mm_projector.*``, the LLM, CLIP in its own folder; LLaVA-UHD v2:
``model.mm_projector.*`` with FeatUp's CLIP copy, the v1 query path and all four levels, the fine-tuned CLIP under
``model.vision_tower.vision_tower.*``) convert through the CLI with zero missing / unexpected keys after the
documented drops, into a folder that gives the logits of the library path (``build_model`` + ``load_official``,
itself checked against the official computation in tests/connectors/test_dem.py and tests/uhd)."""

import json

import pytest
import torch
from convert_helpers import random_image
from safetensors.torch import save_file

import loupe
from loupe.cli.main import main as cli
from loupe.convert import inf_llava, llava_uhd_v2
from loupe.presets import TINY_CLIP, TINY_LLAMA
from loupe.serving.chat import load

PROMPT = "USER: <image> what is the digit ASSISTANT:"
C = TINY_CLIP["hidden_size"]


def _llm_and_clip():
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    llm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in TINY_LLAMA.items() if k != "model_type"}))
    return llm, CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP))


def _write(src, sd, cfg, mm_fields):
    from loupe.tokenizer import build_tiny_tokenizer

    src.mkdir()
    keys = sorted(sd)  # two shards, as a released folder
    gen = torch.Generator().manual_seed(3)
    sd = {k: (torch.randn(v.shape, generator=gen) * 0.3 if v.is_floating_point() else v) for k, v in sd.items()}
    save_file({k: sd[k].contiguous() for k in keys[::2]}, str(src / "model-00001-of-00002.safetensors"))
    save_file({k: sd[k].contiguous() for k in keys[1::2]}, str(src / "model-00002-of-00002.safetensors"))
    (src / "config.json").write_text(json.dumps({**cfg, **mm_fields}))
    build_tiny_tokenizer(1024, "tiny").save_pretrained(src)
    return sd


def inf_llava_checkpoint(tmp_path):
    """The INF-LLaVA release layout (spec §1.4): DEM (``spatial_embed``), projector, LLM; CLIP in its own folder."""
    llm, clip = _llm_and_clip()
    clip.save_pretrained(tmp_path / "clip")
    d = TINY_LLAMA["hidden_size"]
    sd = {f"model.spatial_embed.attention.linears.{i}.{p}": torch.empty((C, C) if p == "weight" else (C,))
          for i in range(4) for p in ("weight", "bias")}
    for name in ("attention.ln", "ln_fuse"):
        sd.update({f"model.spatial_embed.{name}.weight": torch.empty(C), f"model.spatial_embed.{name}.bias":
                   torch.empty(C)})
    for f in ("ffn_crop", "ffn_stride"):
        sd.update({f"model.spatial_embed.{f}.0.weight": torch.empty(C // 16, C),
                   f"model.spatial_embed.{f}.0.bias": torch.empty(C // 16),
                   f"model.spatial_embed.{f}.2.weight": torch.empty(C // 2, C // 16),
                   f"model.spatial_embed.{f}.2.bias": torch.empty(C // 2)})
    sd.update({"model.mm_projector.0.weight": torch.empty(d, C), "model.mm_projector.0.bias": torch.empty(d),
               "model.mm_projector.2.weight": torch.empty(d, d), "model.mm_projector.2.bias": torch.empty(d)})
    sd.update(llm.state_dict())
    mm = dict(model_type="llava_llama", architectures=["LlavaLlamaForCausalLM"],
              mm_vision_tower="openai/clip-vit-large-patch14-336", mm_projector_type="mlp2x_gelu",
              mm_hidden_size=C, mm_vision_select_layer=-2, image_aspect_ratio="pad", tune_mm_mlp_adapter=False)
    return _write(tmp_path / "inf", sd, llm.config.to_dict(), mm), tmp_path / "clip"


def uhd_v2_checkpoint(tmp_path):
    """The LLaVA-UHD v2 release layout (spec §3.7), from the official module tree: AdaptSpatialResampler with all
    four levels, the v1 ``query`` / ``kv_proj``, FeatUp's JBU and its own CLIP copy + ChannelNorm; the fine-tuned
    CLIP; the LLM."""
    llm, clip = _llm_and_clip()
    d, g2, P, U = TINY_LLAMA["hidden_size"], 16, "model.mm_projector.", "model.mm_projector.upsampler.upsampler."
    shapes = {P + "pos_embed": (g2, d), P + "query": (g2, d), P + "kv_proj.weight": (d, C), P + "proj": (d, d),
              P + "attn.in_proj_weight": (3 * d, d), P + "attn.in_proj_bias": (3 * d,),
              P + "attn.out_proj.weight": (d, d), P + "attn.out_proj.bias": (d,), P + "cat_proj.weight": (d, 4 * d),
              P + "cat_proj.bias": (d,), U + "fixup_proj.1.weight": (C, C, 1, 1), U + "fixup_proj.1.bias": (C,),
              P + "upsampler.model.0.vision_tower.vision_model.embeddings.class_embedding": (C,),
              P + "upsampler.model.1.norm.weight": (C,), P + "upsampler.model.1.norm.bias": (C,)}
    shapes.update({P + f"query_{k}": (g2, d) for k in range(1, 5)})
    for lv in (1, 2, 4, 8):
        shapes.update({P + f"feature_{lv}x_embedding": (1, 1, d), P + f"features_{lv}x_projector.weight": (d, C),
                       P + f"features_{lv}x_projector.bias": (d,)})
    for ln in ("ln_q", "ln_kv", "ln_proj", "ln_post"):
        shapes.update({P + f"{ln}.weight": (d,), P + f"{ln}.bias": (d,)})
    for up in ("up1", "up2"):
        shapes.update({U + f"{up}.range_temp": (), U + f"{up}.sigma_spatial": (),
                       U + f"{up}.range_proj.0.weight": (32, 3, 1, 1), U + f"{up}.range_proj.0.bias": (32,),
                       U + f"{up}.range_proj.3.weight": (32, 32, 1, 1), U + f"{up}.range_proj.3.bias": (32,),
                       U + f"{up}.fixup_proj.0.weight": (49, 52, 1, 1), U + f"{up}.fixup_proj.0.bias": (49,),
                       U + f"{up}.fixup_proj.3.weight": (49, 49, 1, 1), U + f"{up}.fixup_proj.3.bias": (49,)})
    sd = {k: torch.empty(s) for k, s in shapes.items()}
    # the release's CLIP under transformers 4 names (transformers 5's CLIPVisionModel drops "vision_model.")
    sd.update({"model.vision_tower.vision_tower.vision_model." + k.removeprefix("vision_model."): v
               for k, v in clip.state_dict().items()})
    sd.update(llm.state_dict())
    mm = dict(model_type="llava_llama", architectures=["LlavaLlamaForCausalLM"], model_mode="uhd_v2",
              mm_vision_tower="openai/clip-vit-large-patch14-336", mm_projector_type="adapt_spatial_resampler_v2",
              mm_hidden_size=C, mm_vision_select_layer=-2, feature_scale_mask=5, jbu_vdim=True,
              mm_tunable_parts="mm_vision_tower,mm_mlp_adapter,mm_language_model")
    sd = _write(tmp_path / "uhd", sd, llm.config.to_dict(), mm)
    for up in ("up1", "up2"):  # a sane FeatUp range: temperature exp(0) = 1, spatial sigma 1
        sd[U + f"{up}.range_temp"], sd[U + f"{up}.sigma_spatial"] = torch.tensor(0.0), torch.tensor(1.0)
    keys = sorted(sd)
    save_file({k: sd[k].contiguous() for k in keys[::2]}, str(tmp_path / "uhd" / "model-00001-of-00002.safetensors"))
    save_file({k: sd[k].contiguous() for k in keys[1::2]}, str(tmp_path / "uhd" / "model-00002-of-00002.safetensors"))
    return sd, None


CASES = {"inf-llava": ("inf-llava-tiny", inf_llava_checkpoint, inf_llava, 0),
         "llava-uhd-v2": ("llava-uhd-v2-tiny", uhd_v2_checkpoint, llava_uhd_v2, 3 + 2 + 2 * 3)}


@pytest.mark.parametrize("fmt", list(CASES))
def test_released_folder_converts_through_the_cli(fmt, tmp_path, capsys):
    preset, write, module, n_dropped = CASES[fmt]
    sd, tower = write(tmp_path)
    src, dst = tmp_path / ("inf" if fmt == "inf-llava" else "uhd"), tmp_path / "dst"
    extra = ["--vision-tower", str(tower)] if tower else []
    argv = ["convert", str(src), str(dst), "--from", fmt, "--preset", preset, *extra]
    assert cli(argv[:2] + argv[3:] + ["--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert f"{len(sd) - n_dropped} tensors loaded" in plan or tower  # (+ the CLIP folder's for INF-LLaVA)
    assert "0 missing, 0 unexpected" in plan, plan[-500:]
    assert f"{n_dropped} dropped on purpose" in plan and "0 left as they were" in plan
    if fmt == "llava-uhd-v2":
        assert "model.mm_projector.query dropped: the v1 single query set" in plan
        assert "model.mm_projector.features_2x_projector.weight dropped: the 2x level's" in plan
    assert cli(argv) == 0
    ours, proc = load(str(dst))
    assert proc.tokenizer.padding_side == "left" and proc.tokenizer.chat_template
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["text_config"]["model_type"] == "llama"
    assert not any(k.startswith(("mm_", "tune_", "model_mode", "feature_scale", "jbu")) for k in cfg["text_config"])

    ref = loupe.build_model(preset, vision_tower=str(tower) if tower else None).eval()  # the library path
    report = module.load_official(ref, src)
    assert not report.missing and not report.unexpected and len(report.ignored) == n_dropped
    got = ours.state_dict()
    assert sorted(got) == sorted(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(got[k], v), k
    for w, h in [(56, 56), (100, 60), (60, 130)]:
        enc = proc(images=random_image(w, h, seed=w + h), text=PROMPT)
        with torch.no_grad():
            assert torch.equal(ours(**enc).logits, ref(**enc).logits), (w, h)


def test_released_layouts_refuse_bad_input_by_name(tmp_path, capsys):
    inf_llava_checkpoint(tmp_path)
    src, dst = tmp_path / "inf", tmp_path / "dst"
    cases = [
        ([], "needs --preset"),
        (["--preset", "llava15-tiny"], "needs a preset with 'dem'"),
        (["--preset", "inf-llava-tiny"], "--vision-tower"),  # CLIP not saved, mm_vision_tower a hub name
    ]
    for extra, message in cases:
        assert cli(["convert", str(src), str(dst), "--from", "inf-llava", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not dst.exists()
    # another architecture: a plain LLaVA-1.5 folder fed to --from llava-uhd-v2
    cfg = json.loads((src / "config.json").read_text())
    assert cli(["convert", str(src), str(dst), "--from", "llava-uhd-v2", "--preset", "llava-uhd-v2-tiny"]) == 2
    assert "adapt_spatial_resampler_v2" in capsys.readouterr().err and cfg["mm_projector_type"] == "mlp2x_gelu"
    # the DEM's keys with a preset whose shapes differ: the full plan names them
    assert cli(["convert", str(src), str(dst), "--from", "inf-llava", "--preset", "inf-llava-8b", "--vision-tower",
                str(tmp_path / "clip")]) == 2
    err = capsys.readouterr().err
    assert "SHAPE model.spatial_embed" in err and not dst.exists()
