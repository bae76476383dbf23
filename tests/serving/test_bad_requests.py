"""Must-show 3: bad requests get the right 4xx with an OpenAI-shaped error, and the server keeps answering."""

import io
import json
import zlib
import struct

import httpx
import pytest


def _png_header_only(w: int, h: int) -> bytes:
    """A valid-looking PNG claiming w x h pixels (a decompression bomb: tiny file, huge image)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _strip_png(w: int, h: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _chat(url, img_url=None, **extra):
    content = [{"type": "text", "text": "hi"}]
    if img_url is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": img_url}})
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 3, **extra}
    return body


def _check(r, status, words):
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    for w in words:
        assert w in err["message"], (w, err["message"])
    return err


def test_bad_requests_are_4xx_and_server_survives(server, img, image_root):
    base = server.url
    post = lambda body, **kw: httpx.post(base + "/v1/chat/completions", timeout=60, **kw)  # noqa: E731
    # malformed JSON
    _check(post(None, content=b"{not json", headers={"content-type": "application/json"}), 400, ["not valid JSON"])
    # wrong types
    _check(post(None, json={"model": "tiny", "messages": "hello"}), 422, ["messages must be an array"])
    _check(post(None, json=_chat(base, max_tokens="ten")), 422, ["max_tokens must be an integer"])
    # unknown model
    e = _check(post(None, json=dict(_chat(base), model="gpt-9")), 404, ["gpt-9", "does not exist"])
    assert e["code"] == "model_not_found"
    # 25 MB body (the limit is 20 MB)
    _check(post(None, content=b"x" * (25 * 1024 * 1024), headers={"content-type": "application/json"}), 413,
           ["over the limit"])
    # decompression bomb: a tiny PNG claiming 60000 x 60000 pixels (cap 4,000,000)
    _check(post(None, json=_chat(base, img.uri(_png_header_only(60000, 60000)))), 413, ["decompression bomb"])
    # a 65535 x 1 strip
    _check(post(None, json=_chat(base, img.uri(_strip_png(65535, 1)))), 400, ["65535x1", "aspect ratio"])
    # a path outside --image-root (traversal), and one inside works
    _check(post(None, json=_chat(base, "../outside.png")), 400, ["outside the image root"])
    _check(post(None, json=_chat(base, "file://" + str(image_root.parent / "outside.png"))), 400,
           ["outside the image root"])
    assert post(None, json=_chat(base, "a.png")).status_code == 200
    # max_image_tokens below the minimum (llava-next-tiny: the smallest pinpoint of a 120x80 image)
    e = _check(post(None, json=_chat(base, img.uri(img.png(120, 80)), max_image_tokens=3)), 400,
               ["max_image_tokens=3", "minimum", "visual tokens"])
    assert e["param"] == "max_image_tokens"
    # an http URL without --allow-url-fetch
    _check(post(None, json=_chat(base, "http://127.0.0.1:9/x.png")), 400, ["--allow-url-fetch"])
    # n > 1, bad role, <image> in text, unknown route
    _check(post(None, json=_chat(base, n=2)), 400, ["n must be 1"])
    _check(httpx.get(base + "/v1/nothing"), 404, ["no route"])
    # the server still answers
    ok = post(None, json=_chat(base, img.uri(img.png(40, 40))))
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["role"] == "assistant"
    assert httpx.get(base + "/health").json()["status"] == "ok"


def test_api_key_401(saved_model):
    from loupe.serving.chat import load
    from loupe.serving.server import BackgroundServer, Server, ServeOptions

    model, processor = load(str(saved_model))
    with BackgroundServer(Server(model, processor, ServeOptions(api_key="sekrit"), model_name="tiny")) as bg:
        r = httpx.get(bg.url + "/v1/models")
        _check(r, 401, ["API key"])
        assert httpx.get(bg.url + "/v1/models", headers={"Authorization": "Bearer sekrit"}).status_code == 200


def test_queue_full_429(saved_model, img):
    """A queue of 1 with a busy worker: the third request at once gets 429."""
    import threading
    from loupe.serving.chat import load
    from loupe.serving.server import BackgroundServer, Server, ServeOptions

    model, processor = load(str(saved_model))
    srv = Server(model, processor, ServeOptions(max_queue=1, max_batch=1), model_name="tiny")
    gate, entered = threading.Event(), threading.Event()
    real = srv.engine.generate
    srv.engine.generate = lambda batch: (entered.set(), gate.wait(30), real(batch))[2]
    with BackgroundServer(srv) as bg:
        body = _chat(bg.url, img.uri(img.png(40, 40)))
        codes = []
        ts = [threading.Thread(target=lambda: codes.append(httpx.post(bg.url + "/v1/chat/completions", json=body,
                                                                     timeout=60).status_code)) for _ in range(2)]
        import time
        # one at a time: the first must be running (taken off the queue by the worker) before the second is queued;
        # started together, both race for the one queue place and the second is (rightly) refused
        ts[0].start()
        t0 = time.monotonic()
        while not entered.is_set() and time.monotonic() - t0 < 20:
            time.sleep(0.02)
        ts[1].start()
        while srv.worker.q.qsize() < 1 and time.monotonic() - t0 < 20:  # one running, one waiting
            time.sleep(0.02)
        assert entered.is_set() and srv.worker.q.qsize() == 1
        r = httpx.post(bg.url + "/v1/chat/completions", json=body, timeout=60)
        _check(r, 429, ["queue is full"])
        gate.set()
        for t in ts:
            t.join()
        assert codes == [200, 200]
