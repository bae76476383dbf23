"""Must-show 2 (scaled for CI): many concurrent requests with mixed image sizes, batched by the one worker; zero
failures and every answer equal to its sequential run. ``LOUPE_LOAD_N`` (default 200) sets the count."""

import os
from concurrent.futures import ThreadPoolExecutor

import httpx


def test_concurrent_requests_equal_sequential(server, img, saved_model):
    from loupe.images import load_image
    from loupe.serving.chat import load, user_message
    from loupe.serving.engine import Engine, Request

    n = int(os.environ.get("LOUPE_LOAD_N", "200"))
    sizes = [(40, 40), (120, 60), (60, 150), (200, 200), (90, 30)]
    raws = [img.png(*sizes[i % len(sizes)], seed=100 + i % 7) for i in range(n)]
    questions = [f"question {i % 11}" for i in range(n)]
    model, processor = load(str(saved_model))
    eng = Engine(model, processor)
    cache = {}
    expected = []
    for raw, q in zip(raws, questions):  # sequential runs, one request at a time (deduplicated inputs)
        key = (raw, q)
        if key not in cache:
            cache[key] = eng.run(Request([user_message(q, 1)], [load_image(raw)], max_tokens=6)).text
        expected.append(cache[key])
    before = dict(httpx.get(server.url + "/health").json())

    def one(i):
        body = {"model": "tiny", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": img.uri(raws[i])}}, {"type": "text", "text": questions[i]}]}]}
        r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)
        return r.status_code, r.json()

    with ThreadPoolExecutor(16) as pool:
        out = list(pool.map(one, range(n)))
    assert [c for c, _ in out] == [200] * n
    assert [b["choices"][0]["message"]["content"] for _, b in out] == expected
    after = httpx.get(server.url + "/health").json()
    assert after["max_batch_seen"] > 1  # requests that arrived together ran as one batch
    assert after["served"] - before["served"] == n
