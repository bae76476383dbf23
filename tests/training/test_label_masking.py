"""Labels per chat template: only assistant answers and their end-of-turn token carry labels.

Rendered with each template of :mod:`loupe.templates`; the labelled token spans are decoded and compared with
the answers. The tiny tokenizer gets the templates' role markers as special tokens, as the real Llama-3 / Qwen2
tokenizers have them. Also: the dataset's token layout equals the processor's on the rendered prompt, and
length limits never cut an image.
"""

from __future__ import annotations

import pytest
import torch

from loupe.data.llava_format import IGNORE_INDEX, SampleError, encode_sample

MARKERS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"]
EOT = {"vicuna_v1": "</s>", "llama3": "<|eot_id|>", "chatml": "<|im_end|>", "plain": "</s>", "tiny": "</s>"}


@pytest.fixture(scope="module")
def processor():
    from loupe import build_processor

    proc = build_processor("llava15-tiny")
    proc.tokenizer.add_special_tokens({"additional_special_tokens": MARKERS}, replace_extra_special_tokens=False)
    return proc


@pytest.fixture(scope="module")
def image():
    from PIL import Image

    return Image.new("RGB", (40, 30), (200, 20, 20))


def _spans(tok, input_ids, labels) -> list[str]:
    spans, cur = [], []
    for t, lab in zip(input_ids.tolist(), labels.tolist()):
        if lab != IGNORE_INDEX:
            assert lab == t
            cur.append(t)
        elif cur:
            spans.append(cur)
            cur = []
    if cur:
        spans.append(cur)
    return [tok.decode(s).strip() for s in spans]


CONV = [
    {"role": "user", "content": "<image>\nWhat colour is the image?"},
    {"role": "assistant", "content": "red"},
    {"role": "user", "content": "Is it big?"},
    {"role": "assistant", "content": "no it is small"},
]


@pytest.mark.parametrize("template", ["vicuna_v1", "llama3", "chatml", "plain", "tiny"])
def test_only_assistant_tokens_and_end_of_turn_are_labelled(processor, image, template):
    conv = CONV[:2] if template == "plain" else CONV  # `plain` is the single-turn alignment format
    item = encode_sample(processor, [dict(m) for m in conv], [image], template, max_length=512)
    ids, labels = item["input_ids"], item["labels"]
    eot = EOT[template]
    want = [f"{m['content']}{eot}" for m in conv if m["role"] == "assistant"]
    assert _spans(processor.tokenizer, ids, labels) == want
    # image positions: the processor's exact count, never labelled
    n_img = processor.num_image_tokens(image)
    image_pos = ids == processor.image_token_id
    assert int(image_pos.sum()) == n_img and bool((labels[image_pos] == IGNORE_INDEX).all())
    # the layout equals the processor's on the rendered prompt (so label positions line up with the model's)
    from loupe.templates import get_template

    rendered = processor.tokenizer.apply_chat_template(conv, chat_template=get_template(template), tokenize=False)
    enc = processor(images=[image], text=rendered, add_special_tokens=False)
    assert torch.equal(enc["input_ids"][0], ids)
    assert torch.equal(enc["pixel_values"], item["pixel_values"])


def test_two_images_and_text_only(processor, image):
    two = [{"role": "user", "content": "<image>\n<image>\nSame colour?"}, {"role": "assistant", "content": "yes"}]
    item = encode_sample(processor, two, [image, image], "vicuna_v1", max_length=512)
    assert int((item["input_ids"] == processor.image_token_id).sum()) == 2 * processor.num_image_tokens(image)
    assert item["pixel_values"].shape[0] == 2 and item["image_sizes"].tolist() == [[30, 40], [30, 40]]
    text = encode_sample(processor, [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "yes"}],
                         [], "chatml", max_length=512)
    assert "pixel_values" not in text
    assert _spans(processor.tokenizer, text["input_ids"], text["labels"]) == ["yes<|im_end|>"]


def test_length_limit_never_cuts_an_image(processor, image):
    conv = [{"role": "user", "content": "Look: <image>\nWhat colour is the image?"},
            {"role": "assistant", "content": "red " * 40}]
    full = encode_sample(processor, conv, [image], "tiny", max_length=4096)
    n = len(full["input_ids"])
    last_image = int((full["input_ids"] == processor.image_token_id).nonzero().max())
    cut = encode_sample(processor, conv, [image], "tiny", max_length=n - 5)  # the answer's tail is cut
    assert len(cut["input_ids"]) == n - 5
    assert torch.equal(cut["labels"], full["labels"][: n - 5]) and (cut["labels"] != IGNORE_INDEX).any()
    with pytest.raises(SampleError) as e:  # the cut would fall inside the image span
        encode_sample(processor, conv, [image], "tiny", max_length=last_image - 2)
    assert e.value.kind == "too_long"
    with pytest.raises(SampleError) as e:  # image kept, but no answer token left
        encode_sample(processor, conv, [image], "tiny", max_length=last_image + 2)
    assert e.value.kind == "no_labels"


def test_placeholders_are_checked(tmp_path):
    from loupe.data.llava_format import parse_record
    from loupe.errors import LoupeError

    rec = {"id": "a", "image": "x.png", "conversations": [{"from": "human", "value": "Describe."},
                                                         {"from": "gpt", "value": "A cat."}]}
    messages, paths = parse_record(rec, tmp_path)  # no <image>: put first, as LLaVA does
    assert messages[0]["content"] == "<image>\nDescribe." and paths == [tmp_path / "x.png"]
    bad = dict(rec, image=["x.png", "y.png"], conversations=[{"from": "human", "value": "<image> hi"},
                                                             {"from": "gpt", "value": "ok"}])
    with pytest.raises(LoupeError, match="1 <image> placeholder"):
        parse_record(bad, tmp_path)
    with pytest.raises(LoupeError, match="turn 1"):
        parse_record(dict(rec, conversations=[{"from": "human", "value": "hi"}, {"from": "robot", "value": "x"}]),
                     tmp_path)
