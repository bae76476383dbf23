"""Token counts (spec formula = processor = model output; 7B on meta) and the tiny preset end to end."""

import numpy as np
import pytest
import torch
from PIL import Image

import loupe
from loupe.tokenizer import build_tiny_tokenizer

# (W, H) -> slices: 336^2 is not sliced; 1008x672 is a 3x2 grid; 2048x512 an 8x1 grid (the float tie, spec §3.2)
SIZES = {(336, 336): 0, (1008, 672): 6, (2048, 512): 8}


def formula(n_slices: int, g2: int = 144) -> int:
    """Spec §3.5: n*144 + n separators + 144 (overview last); no slicing -> 144."""
    return g2 if n_slices == 0 else n_slices * g2 + n_slices + g2


def test_7b_token_counts_formula_processor_and_model_on_meta():
    proc = loupe.build_processor("llava-uhd-v2-7b", tokenizer=build_tiny_tokenizer(1024, "tiny"))
    with torch.device("meta"):
        model = loupe.build_model("llava-uhd-v2-7b").eval()
    assert formula(6) == 7 * 144 + 6 == 1014
    for size, n in SIZES.items():
        lay = model.geometry.layout(size)
        assert len(lay.indices("local")) == n
        assert proc.num_image_tokens(size) == model.geometry.num_tokens(lay) == formula(n)
        hmax, wmax = max(s[1] for s in lay.tile_sizes), max(s[0] for s in lay.tile_sizes)
        with torch.device("meta"):
            px = torch.empty(lay.num_tiles, 3, hmax, wmax)
            feats = model.vision_tower(px, layouts=[lay])
            out = model.connector(feats, [lay], pixel_values=px)
        # the connector returns the visual tokens; the n separators are text tokens of the plan
        assert out[0].shape == (formula(n) - n, 4096) and model.geometry.num_visual_tokens(lay) == formula(n) - n


def image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, proc = loupe.build("llava-uhd-v2-tiny")
    return model.eval(), proc


def test_tiny_end_to_end_forward_labels_generate(tiny):
    model, proc = tiny
    imgs = [image(140, 84, 0), image(40, 30, 1)]  # 4 slices + overview; a small image: overview only
    texts = [proc.apply_chat_template([{"role": "user", "content": "<image>\nWhat is this?"},
                                       {"role": "assistant", "content": "A tag."}], tokenize=False)
             for _ in imgs]
    batch = proc(images=imgs, text=texts, return_tensors="pt", padding=True)
    n = [proc.num_image_tokens(im) for im in imgs]
    assert n == [4 * 16 + 4 + 16, 16]
    visual = [4 * 16 + 16, 16]  # the 4 separators are written as their ids (',' and the row-end '\n')
    assert [proc.image_processor.geometry.num_visual_tokens(im.size) for im in imgs] == visual
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == sum(visual)
    out = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100))
    assert torch.isfinite(out.loss) and [e.shape[0] for e in out.image_hidden_states] == visual
    out.loss.backward()
    assert model.connector.query_1.grad is not None and model.connector.upsampler.fixup_proj[1].weight.grad is not None
    one = proc(images=[imgs[0]], text=[texts[0]], return_tensors="pt")
    with torch.no_grad():  # batched == one by one (tiles of different grids padded together)
        alone = model.get_image_features(one["pixel_values"], one["image_sizes"])[0]
        torch.testing.assert_close(out.image_hidden_states[0].detach(), alone, atol=1e-5, rtol=1e-5)
    prompt = proc(images=[imgs[0]], text=[proc.apply_chat_template(
        [{"role": "user", "content": "<image>\nWhat is this?"}], add_generation_prompt=True, tokenize=False)],
        return_tensors="pt")
    gen = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == prompt["input_ids"].shape[1] + 4


def test_tiny_stitched_token_order():
    torch.manual_seed(0)
    over = {"connector": {"token_order": "stitched"}}  # loupe.build passes overrides to the model only
    proc = loupe.build_processor("llava-uhd-v2-tiny", **over)
    model = loupe.build_model("llava-uhd-v2-tiny", tokenizer=proc.tokenizer, **over).eval()
    img = image(140, 84, 0)
    lay = model.geometry.layout(img.size)
    cols, rows = lay.grid
    expected = rows * 4 * (cols * 4 + 1) + 1 + 16  # (rows*g) feature rows + '\n' each, ',' then the overview
    assert proc.num_image_tokens(img) == expected
    batch = proc(images=[img], text=["<image> hi"], return_tensors="pt")
    with torch.no_grad():
        emb = model.get_image_features(batch["pixel_values"], batch["image_sizes"])[0]
    sep = lay.meta["separators"]
    assert emb.shape[0] == expected - rows * 4 - 1  # the connector gives the visual tokens only
    ids = batch["input_ids"][0].tolist()
    start, row = ids.index(model.config.image_token_id), cols * 4
    # each stitched feature row is followed by the row-end separator ('\n'), then the first separator (',')
    assert [ids[start + k * (row + 1) + row] for k in range(rows * 4)] == [sep[cols - 1]] * (rows * 4)
    assert ids[start + rows * 4 * (row + 1)] == sep[0]
