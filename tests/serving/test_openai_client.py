"""Must-show 1: the real ``openai`` client against ``loupe serve`` on a saved tiny model."""

import pytest

openai = pytest.importorskip("openai")


def _client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def _expected(saved_model, raw, question, max_new_tokens):
    """What ``loupe chat`` answers (greedy) and the processor's exact prompt length, on the same input."""
    from loupe.images import load_image
    from loupe.serving.chat import ChatSession, load, user_message

    model, processor = load(str(saved_model))
    img = load_image(raw)
    answer = ChatSession(model, processor, max_new_tokens=max_new_tokens).ask(question, [img])
    prompt = processor.tokenizer.apply_chat_template([user_message(question, 1)], tokenize=False,
                                                     add_generation_prompt=True)
    ids = processor(images=[img], text=[prompt], add_special_tokens=False)["input_ids"][0]
    return answer, int(ids.shape[0]), processor.num_image_tokens(img)


def _messages(raw, question):
    from base64 import b64encode

    uri = "data:image/png;base64," + b64encode(raw).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                         {"type": "text", "text": question}]}]


def test_non_stream_equals_chat_and_counts_exactly(server, saved_model, img):
    raw = img.png(120, 80, seed=1)
    answer, prompt_tokens, image_tokens = _expected(saved_model, raw, "what is here?", 16)
    r = _client(server).chat.completions.create(model="tiny", messages=_messages(raw, "what is here?"),
                                                max_tokens=16, temperature=0)
    assert r.choices[0].message.content == answer
    assert r.usage.prompt_tokens == prompt_tokens
    assert r.usage.prompt_tokens_details.image_tokens == image_tokens
    assert image_tokens > 0 and r.usage.completion_tokens >= 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_equals_chat_with_usage(server, saved_model, img):
    raw = img.png(64, 150, seed=2)
    answer, prompt_tokens, image_tokens = _expected(saved_model, raw, "describe it", 20)
    stream = _client(server).chat.completions.create(
        model="tiny", messages=_messages(raw, "describe it"), max_tokens=20, temperature=0, stream=True,
        stream_options={"include_usage": True})
    pieces, usage, finish = [], None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(pieces) == answer
    assert finish in ("stop", "length")
    assert usage.prompt_tokens == prompt_tokens
    assert usage.prompt_tokens_details.image_tokens == image_tokens


def test_models_and_stop(server, img):
    c = _client(server)
    assert [m.id for m in c.models.list().data] == ["tiny"]
    raw = img.png(50, 50, seed=5)
    full = c.chat.completions.create(model="tiny", messages=_messages(raw, "hi"), max_tokens=12, temperature=0)
    text = full.choices[0].message.content
    if len(text) > 3:  # a stop string cuts the answer before it, finish_reason "stop"
        cut = c.chat.completions.create(model="tiny", messages=_messages(raw, "hi"), max_tokens=12, temperature=0,
                                        stop=[text[2:4]])
        assert cut.choices[0].message.content == text[: text.find(text[2:4])].strip()
        assert cut.choices[0].finish_reason == "stop"


def test_sampling_is_seeded(server, img):
    c = _client(server)
    raw = img.png(50, 70, seed=6)
    kw = dict(model="tiny", messages=_messages(raw, "hi"), max_tokens=10, temperature=1.0, top_p=0.9)
    a = c.chat.completions.create(seed=7, **kw).choices[0].message.content
    b = c.chat.completions.create(seed=7, **kw).choices[0].message.content
    assert a == b
