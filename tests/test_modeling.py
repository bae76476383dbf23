"""The one model class: real-size accounting on meta, batching, generation, save/load, error paths."""

import numpy as np
import pytest
import torch
from PIL import Image

import loupe
from loupe import LoupeError


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_llava15_7b_meta_counts():
    with torch.device("meta"):
        model = loupe.build_model("llava15-7b")
    assert _count(model.vision_tower) == 303_507_456  # CLIP-ViT-L/14-336 (~304M)
    assert _count(model.connector) == 20_979_712  # mlp2x_gelu 1024 -> 4096 -> 4096 (~21M)
    assert _count(model.language_model) == 6_738_415_616  # Vicuna-7B (~6.74B)
    assert model.geometry.num_tokens((336, 336)) == 576
    assert model.geometry.num_tokens((1920, 1080)) == 576
    # the visual tokens actually produced, on meta
    feats = model.vision_tower(torch.empty(1, 3, 336, 336, device="meta"))
    assert feats.shape == (1, 24, 24, 1024)
    out = model.connector(feats, [model.geometry.layout((336, 336))])
    assert out[0].shape == (576, 4096)


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in [(90, 50), (40, 120), (64, 64)]]


def test_batched_mixed_images_equal_per_sample(tiny):
    model, proc = tiny
    imgs = _images()
    texts = ["USER: no image here ASSISTANT: ok", "USER: <image>\nwhat? ASSISTANT: red", "USER: <image> and <image> ASSISTANT: two"]
    per_sample = [[], [imgs[0]], [imgs[1], imgs[2]]]
    batch = proc(images=per_sample, text=texts, padding_side="right")
    with torch.no_grad():
        logits = model(**batch).logits
        for i, (t, ims) in enumerate(zip(texts, per_sample)):
            single = proc(images=ims or None, text=[t])
            li = model(**single).logits[0]
            n = single["input_ids"].shape[1]
            assert torch.allclose(logits[i, :n], li, atol=1e-5), i


def test_generate_batched_left_pad_equals_one_by_one_and_cache(tiny):
    model, proc = tiny
    imgs = _images()[:2]
    texts = ["USER: <image>\nWhat is it? ASSISTANT:", "USER: a longer question about <image> here ASSISTANT:"]
    batch = proc(images=imgs, text=texts, padding_side="left")
    out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    no_cache = model.generate(**batch, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(out, no_cache)
    for i in range(2):
        single = proc(images=[imgs[i]], text=[texts[i]])
        oi = model.generate(**single, max_new_tokens=6, do_sample=False)
        assert torch.equal(out[i, -6:], oi[0, -6:])


def test_save_load_roundtrip_and_auto_classes(tiny, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, proc = tiny
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    m2 = AutoModelForImageTextToText.from_pretrained(tmp_path)
    p2 = AutoProcessor.from_pretrained(tmp_path)
    assert type(m2) is loupe.LoupeForConditionalGeneration and type(p2) is loupe.LoupeProcessor
    batch = proc(images=_images()[:1], text=["USER: <image>\nhi ASSISTANT:"])
    batch2 = p2(images=_images()[:1], text=["USER: <image>\nhi ASSISTANT:"])
    assert torch.equal(batch["input_ids"], batch2["input_ids"])
    assert torch.equal(batch["pixel_values"], batch2["pixel_values"])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, m2.eval()(**batch2).logits)


def test_labels_at_image_positions_are_ignored(tiny):
    model, proc = tiny
    batch = proc(images=_images()[:1], text=["USER: <image>\nwhat? ASSISTANT: red"])
    labels = batch["input_ids"].clone()
    with torch.no_grad():
        loss_all = model(**batch, labels=labels).loss
        masked = labels.masked_fill(batch["input_ids"] == model.config.image_token_id, -100)
        loss_masked = model(**batch, labels=masked).loss
    assert torch.allclose(loss_all, loss_masked)


def test_placeholder_image_count_mismatch(tiny):
    _, proc = tiny
    img = _images()[0]
    with pytest.raises(LoupeError, match="2 <image> placeholder"):
        proc(images=[img], text=["<image> <image>"])
    with pytest.raises(LoupeError, match="0 <image> placeholder"):
        proc(images=[img], text=["no slot"])
    with pytest.raises(LoupeError, match="sample 1 has 1"):
        proc(images=[[img], []], text=["<image>", "<image>"])


def test_model_reports_token_feature_mismatch(tiny):
    model, proc = tiny
    batch = proc(images=_images()[:1], text=["USER: <image>\nwhat? ASSISTANT:"])
    cut = {**batch, "input_ids": batch["input_ids"][:, 5:], "attention_mask": batch["attention_mask"][:, 5:]}
    with pytest.raises(LoupeError, match="do not match"):
        model(**cut)


def test_processor_predicts_token_count(tiny):
    model, proc = tiny
    for w, h in [(56, 56), (1000, 30), (7, 900)]:
        img = Image.new("RGB", (w, h), "white")
        n = proc.num_image_tokens(img)
        batch = proc(images=[img], text=["<image>"])
        assert int((batch["input_ids"] == model.config.image_token_id).sum()) == n
        with torch.no_grad():
            assert model.get_image_features(batch["pixel_values"], batch["image_sizes"])[0].shape[0] == n


def test_bad_image_files_through_processor(tiny, tmp_path):
    _, proc = tiny
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(LoupeError, match="bad.jpg"):
        proc(images=[bad], text=["<image>"])
    big = tmp_path / "big.png"
    Image.new("L", (5000, 5000)).save(big)
    proc.image_processor.max_image_pixels = 10_000_000
    try:
        with pytest.raises(LoupeError, match="over the cap"):
            proc(images=[big], text=["<image>"])
        with pytest.raises(LoupeError, match="over the cap"):
            proc.num_image_tokens(big)
    finally:
        proc.image_processor.max_image_pixels = loupe.images.DEFAULT_MAX_PIXELS


def test_unknown_part_and_option_errors():
    with pytest.raises(LoupeError, match="registered: .*pad"):
        loupe.build_config("llava15-tiny", slicer={"name": "nope"})
    with pytest.raises(LoupeError, match="unknown option"):
        loupe.build_config("llava15-tiny", connector={"bogus": 1})
    with pytest.raises(LoupeError, match="unknown preset"):
        loupe.build_model("nope")
    assert loupe.slicers.get("pad").registry_name == "pad"
    assert loupe.encoders.get("clip") and loupe.connectors.get("mlp")


def test_missing_or_wrong_local_folders(tmp_path):
    with pytest.raises(LoupeError, match="not found"):
        loupe.build_model("llava15-tiny", vision_tower=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoupeError, match="no config.json"):
        loupe.build_model("llava15-tiny", vision_tower=str(tmp_path / "empty"))
    with pytest.raises(LoupeError, match="language model|model folder"):
        loupe.build_model("llava15-tiny", language_model=str(tmp_path / "empty"))


def test_vision_tower_loads_from_local_clip_folder(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from loupe.presets import TINY_CLIP

    torch.manual_seed(3)
    src = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP))
    src.save_pretrained(tmp_path / "clip")
    model = loupe.build_model("llava15-tiny", vision_tower=str(tmp_path / "clip"))
    for k, v in src.state_dict().items():
        assert torch.equal(model.vision_tower.vision_model.state_dict()[k], v), k
    # features = hidden_states[-2] without CLS, as LLaVA
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        ref = src(x, output_hidden_states=True).hidden_states[-2][:, 1:]
        ours = model.vision_tower(x).reshape(1, -1, ref.shape[-1])
    assert torch.allclose(ref, ours, atol=1e-6)
    wrong = CLIPVisionModel(CLIPVisionConfig(**{**TINY_CLIP, "hidden_size": 32, "intermediate_size": 64}))
    wrong.save_pretrained(tmp_path / "wrong")
    with pytest.raises(LoupeError, match="do not match"):
        loupe.build_model("llava15-tiny", vision_tower=str(tmp_path / "wrong"))


def test_tiny_tokenizer_pads_left_and_saves_it(tiny, tmp_path):
    """Batched generation needs left padding by default (llava-hf saves ``padding_side="left"``): with the
    processor's default padding a batch continues every prompt from its own last token, as one by one."""
    from transformers import AutoProcessor

    model, proc = tiny
    assert proc.tokenizer.padding_side == "left"
    proc.save_pretrained(tmp_path)
    assert AutoProcessor.from_pretrained(tmp_path).tokenizer.padding_side == "left"
    imgs = _images()[:2]
    texts = ["USER: <image>\nWhat is it? ASSISTANT:", "USER: a longer question about <image> here ASSISTANT:"]
    batch = proc(images=imgs, text=texts)  # default padding
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    for i in range(2):
        oi = model.generate(**proc(images=[imgs[i]], text=[texts[i]]), max_new_tokens=4, do_sample=False)
        assert torch.equal(out[i, -4:], oi[0, -4:])


def test_llava_next_merge_compiled_with_inductor_matches_eager_across_image_sizes():
    """Regression: with inductor, the second image size made dynamo turn the image-size ints symbolic and the
    compiled unpad/newline merge gathered the wrong rows (0.05 on the connector, ~0.6 on logits). 90x50 and
    100x50 give the same tensor shapes, so only the geometry changes."""
    torch.manual_seed(0)
    model = loupe.build_model("llava-next-tiny").eval()
    torch._dynamo.reset()
    merge = torch.compile(lambda f, lays: model.connector(f, lays), backend="inductor")
    for size in [(90, 50), (100, 50)]:
        lay = model.geometry.layout(size)
        feats = torch.randn(lay.num_tiles, 4, 4, model.vision_tower.out_dim)
        with torch.no_grad():
            ref, got = model.connector(feats, [lay])[0], merge(feats, [lay])[0]
        assert ref.shape == got.shape and torch.allclose(ref, got, atol=1e-5), (size, (ref - got).abs().max())


def test_disk_offload_device_map_matches_plain_model(tmp_path):
    """UHD v2 under accelerate offload: native CLIP reads ``class_embedding``/position table directly, Hiwin's
    ``nn.MultiheadAttention`` reads ``out_proj`` directly, and the separators need LLM embeddings (computed by the
    model, not an embedding module passed as a connector kwarg, which the hooks would move)."""
    torch.manual_seed(0)
    model, proc = loupe.build("llava-uhd-v2-tiny")
    model.eval().save_pretrained(tmp_path / "m")
    assert {"HiwinConnector", "MultiheadAttention"} <= set(model._no_split_modules)
    batch = proc(images=[_images()[0]], text=["USER: <image>\nhi ASSISTANT:"])
    with torch.no_grad():
        ref = model(**batch).logits
    lm = "language_model.model."
    explicit = {"vision_tower": "disk", "connector": "disk", lm + "embed_tokens": "disk", lm + "layers": "cpu",
                lm + "norm": "cpu", lm + "rotary_emb": "cpu", "language_model.lm_head": "disk"}
    for i, kw in enumerate([dict(device_map="auto", max_memory={"cpu": 10_000}), dict(device_map=explicit)]):
        m = loupe.LoupeForConditionalGeneration.from_pretrained(tmp_path / "m", offload_folder=str(tmp_path / f"o{i}"),
                                                                **kw)
        assert "disk" in set(m.hf_device_map.values())
        with torch.no_grad():
            assert torch.allclose(m(**batch).logits, ref, atol=1e-5), kw


def test_connector_gets_tensors_only_and_separators_are_text_tokens():
    """The connector's inputs are tensors (features, layouts, pixel_values), never the LLM's embedding module: UHD v2's
    slice separators are text tokens of the token plan, written as ids by the processor, embedded by the LLM."""
    from loupe.tokens import Text

    torch.manual_seed(0)
    model, proc = loupe.build("llava-uhd-v2-tiny")
    import inspect

    assert list(inspect.signature(model.connector.forward).parameters) == ["features", "layouts", "pixel_values"]
    img = Image.new("RGB", (140, 84), "white")
    plan = proc.image_processor.geometry.token_plan(img.size)
    seps = [s.ids[0] for s in plan if isinstance(s, Text)]
    assert len(seps) == 4
    ids = proc(images=[img], text=["<image>"])["input_ids"][0].tolist()
    start = ids.index(model.config.image_token_id)
    written = [ids[start + k] for k in range(len(ids) - start)][: sum(s.n for s in plan)]
    expected = [t for s in plan for t in ([model.config.image_token_id] * s.n if not isinstance(s, Text) else s.ids)]
    assert written == expected and [t for t in written if t != model.config.image_token_id] == seps
