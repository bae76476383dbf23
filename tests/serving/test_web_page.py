"""Must-show 4: the web page at ``/`` in headless Chromium (PyPI ``playwright`` driving the system's chromium).

Upload an image: the tile overlay and the token total equal ``POST /v1/loupe/plan``; change the budget: the page
re-plans and still agrees; ask a question: the streamed answer equals the server's non-streamed greedy answer.
A screenshot is saved in the test's tmp dir."""

import shutil

import httpx
import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="PyPI playwright is not installed")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on PATH (chromium / chromium-browser); `apt-get install chromium` to run the web page test")


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"])
        except Exception as e:  # a Chromium that cannot start here (missing libraries, ...)
            pytest.skip(f"cannot start {exe} headless: {e}")
        yield b
        b.close()


def _plan(server, uri, **budget):
    r = httpx.post(server.url + "/v1/loupe/plan", json={"image": uri, **budget}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _page_plan(page):
    summary = page.locator("#plan-summary")
    tiles = page.locator("#overlay g.tile")
    by_index = {}
    for i in range(tiles.count()):
        t = tiles.nth(i)
        tok = t.get_attribute("data-tokens")
        by_index[int(t.get_attribute("data-index"))] = None if tok == "" else int(tok)
    return {"total": int(summary.get_attribute("data-total")), "tiles": tiles.count(),
            "tokens": [by_index[i] for i in sorted(by_index)]}


def by_index_keys(page):
    tiles = page.locator("#overlay g.tile")
    return [int(tiles.nth(i).get_attribute("data-index")) for i in range(tiles.count())]


def _wait_plan(page, total):
    page.wait_for_function(
        "t => document.querySelector('#plan-summary').dataset.total === String(t)", arg=total, timeout=20000)


def test_web_page_plans_and_streams(server, browser, img, tmp_path):
    raw = img.png(150, 90, seed=7)
    path = tmp_path / "photo.png"
    path.write_bytes(raw)
    uri = img.uri(raw)
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelector('#model').textContent.includes('tiny')", timeout=20000)

    # upload: overlay and total equal /v1/loupe/plan
    page.set_input_files("#file", str(path))
    want = _plan(server, uri)
    _wait_plan(page, want["total_tokens"])
    got = _page_plan(page)
    assert got["tiles"] == len(want["tiles"]) and got["tiles"] > 1
    assert sorted(by_index_keys(page)) == list(range(len(want["tiles"])))
    assert got["total"] == want["total_tokens"]
    assert got["tokens"] == [t["tokens"] for t in want["tiles"]]
    assert page.locator("#tiles-table tbody tr").count() == len(want["tiles"])

    # the budget control re-plans: detail=low, then a max_image_tokens cap
    low = _plan(server, uri, detail="low")
    assert low["total_tokens"] < want["total_tokens"]  # the test image must make the knob matter
    page.select_option("#detail", "low")
    _wait_plan(page, low["total_tokens"])
    assert _page_plan(page)["tiles"] == len(low["tiles"])
    page.select_option("#detail", "auto")
    _wait_plan(page, want["total_tokens"])
    cap = low["total_tokens"]
    capped = _plan(server, uri, max_image_tokens=cap)
    page.fill("#max-tokens", str(cap))
    page.locator("#max-tokens").dispatch_event("change")
    _wait_plan(page, capped["total_tokens"])
    assert _page_plan(page)["tiles"] == len(capped["tiles"])
    page.fill("#max-tokens", "")
    page.locator("#max-tokens").dispatch_event("change")
    _wait_plan(page, want["total_tokens"])

    # a question streams an answer equal to the server's non-streamed greedy answer
    question = "what is in the picture?"
    page.fill("#max-new", "12")
    page.fill("#question", question)
    page.click("#send")
    page.wait_for_selector("#log .msg.assistant.done", timeout=60000)
    streamed = page.locator("#log .msg.assistant").text_content()
    ref = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
        "model": "tiny", "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                  {"type": "text", "text": question}]}]})
    assert ref.status_code == 200, ref.text
    answer = ref.json()["choices"][0]["message"]["content"]
    assert answer and streamed == answer
    usage = page.locator("#usage").text_content()
    assert f"prompt {ref.json()['usage']['prompt_tokens']} tokens" in usage
    assert not page.locator("#log .msg.assistant.failed").count()
    assert errors == []

    shot = tmp_path / "web_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    page.close()




def test_web_page_shows_a_refused_budget(server, browser, img, tmp_path):
    """A budget below the image's minimum: the page shows the server's 400 message instead of a stale overlay."""
    path = tmp_path / "small.png"
    path.write_bytes(img.png(80, 60, seed=8))
    page = browser.new_page()
    page.goto(server.url + "/")
    page.set_input_files("#file", str(path))
    page.wait_for_function("document.querySelector('#plan-summary').dataset.total > 0", timeout=20000)
    page.fill("#max-tokens", "1")
    page.locator("#max-tokens").dispatch_event("change")
    page.wait_for_function("document.querySelector('#plan-summary').textContent.startsWith('plan failed')",
                           timeout=20000)
    text = page.locator("#plan-summary").text_content()
    assert "max_image_tokens=1 is below the minimum" in text
    assert page.locator("#overlay g.tile").count() == 0
    assert page.locator("#error").is_visible()
    page.close()
