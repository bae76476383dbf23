"""The per-request visual-token budget: one function for the library, the server and /v1/loupe/plan."""

import httpx
import pytest

import loupe
from loupe import budget
from loupe.configuration import LoupeConfig
from loupe.errors import LoupeError
from loupe.presets import get_preset


def _parts(name):
    c = LoupeConfig(**get_preset(name)["config"])
    return c.slicer, c.vision, c.connector


@pytest.mark.parametrize("preset", ["llava-next-tiny", "llava-uhd-v2-tiny", "convllava-tiny", "llava15-tiny",
                                    "inf-llava-tiny", "fila-tiny"])
@pytest.mark.parametrize("size", [(300, 200), (120, 300), (1000, 1000)])
def test_fit_is_the_largest_setting_that_fits(preset, size):
    s, v, k = _parts(preset)
    full = budget.count(s, v, k, size)
    assert budget.count(budget.fit_slicer(s, v, k, size, full), v, k, size) == full  # no cap needed: unchanged
    counts = sorted({budget.count(c, v, k, size) for c in budget.settings(s)})
    for cap in range(counts[0], full + 2):
        got = budget.count(budget.fit_slicer(s, v, k, size, cap), v, k, size)
        assert got <= cap
        assert got == max(n for n in counts + [full] if n <= cap)  # nothing larger fits
    with pytest.raises(LoupeError, match=f"minimum.*{counts[0]} visual tokens"):
        budget.fit_slicer(s, v, k, size, counts[0] - 1)
    low = budget.smallest_slicer(s, v, k, size)
    assert budget.count(low, v, k, size) == counts[0]


def test_processor_and_model_take_the_budget():
    """processor(max_image_tokens=N) expands each image to the budgeted count and the model accepts it."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    model, proc = loupe.build("llava-next-tiny")
    img = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    plain = proc(images=[img], text=["<image> hi"])
    assert "image_layouts" not in plain  # the default path is unchanged
    full = proc.num_image_tokens(img)
    enc = proc(images=[img], text=["<image> hi"], max_image_tokens=full - 1)
    n = int((enc["input_ids"] == proc.image_token_id).sum())
    assert n < full and n == budget.count(budget.fit_slicer(proc.image_processor.slicer, proc.image_processor.vision,
                                                             proc.image_processor.connector, (300, 200), full - 1),
                                          proc.image_processor.vision, proc.image_processor.connector, (300, 200))
    with torch.no_grad():
        out = model(**enc)
    assert out.image_hidden_states[0].shape[0] == n


def test_server_budget_detail_and_plan(server, img):
    raw = img.png(300, 200, seed=9)
    uri = img.uri(raw)
    plan = httpx.post(server.url + "/v1/loupe/plan", json={"image": uri}, timeout=60).json()
    full = plan["total_tokens"]
    assert sum(t["tokens"] or 0 for t in plan["tiles"]) + plan["other_tokens"] == full
    assert plan["image_size"] == [300, 200] and all(len(t["box"]) == 4 for t in plan["tiles"])
    low = httpx.post(server.url + "/v1/loupe/plan", json={"image": uri, "detail": "low"}, timeout=60).json()
    capped = httpx.post(server.url + "/v1/loupe/plan", json={"width": 300, "height": 200,
                                                             "max_image_tokens": full - 1}, timeout=60).json()
    assert low["total_tokens"] < capped["total_tokens"] < full

    def usage(**extra):
        part = {"type": "image_url", "image_url": {"url": uri, **extra.pop("image", {})}}
        body = {"model": "tiny", "max_tokens": 2, "temperature": 0,
                "messages": [{"role": "user", "content": [part, {"type": "text", "text": "hi"}]}], **extra}
        r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["usage"]["prompt_tokens_details"]["image_tokens"]

    assert usage() == full
    assert usage(image={"detail": "high"}) == full
    assert usage(image={"detail": "low"}) == low["total_tokens"]
    assert usage(max_image_tokens=full - 1) == capped["total_tokens"]
    assert usage(image={"max_image_tokens": full - 1}) == capped["total_tokens"]
