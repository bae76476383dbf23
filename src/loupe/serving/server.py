"""``loupe serve``: an OpenAI-compatible chat server (FastAPI + uvicorn) over a saved Loupe model.

Endpoints: ``POST /v1/chat/completions`` (OpenAI Chat Completions: text and ``image_url`` parts, streaming with
SSE ``chat.completion.chunk`` events and ``data: [DONE]``, ``stream_options.include_usage``), ``GET /v1/models``,
``GET /health``, ``POST /v1/loupe/plan`` (image -> tile layout and tokens, no model run) and the web page at ``/``.

* ``usage.prompt_tokens`` is the length of the processed prompt: text + visual tokens, each image expanded by the
  processor's geometry; ``usage.prompt_tokens_details.image_tokens`` is the visual part.
* Per-request budget: ``image_url.detail`` (``low``: the slicer's smallest setting; ``high``/``auto``: the model's)
  and ``max_image_tokens`` (top level or inside an ``image_url``), through :func:`loupe.budget.choose_slicer`.
* Images: ``data:`` URIs always; ``file://`` URLs and plain paths only under ``--image-root`` (no traversal);
  ``http(s)`` only with ``--allow-url-fetch``. Pixel cap (decompression bombs) and an aspect-ratio cap apply.
* One model worker thread takes requests from a bounded queue (429 when full) and runs those that wait together as
  one batch (:class:`loupe.serving.engine.Engine`); a client that disconnects cancels its generation.
* Every error is OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}`` with status 400 (bad value),
  401 (API key), 404 (unknown model or route), 413 (body or image too large), 422 (wrong JSON types), 429 (queue
  full) or 500 (a failure inside generation; the server keeps serving).
"""



import asyncio
import base64
import binascii
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import LoupeError
from .engine import Engine, Request

STATIC = Path(__file__).parent / "static"
MAX_ASPECT = 100  # images thinner than 1:100 are refused (a 65535x1 strip has nothing to read)


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error",
                             500: "server_error"}.get(status, "invalid_request_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 8
    max_queue: int = 64
    max_image_pixels: int | None = None  # None: the processor's cap
    max_body_mb: float = 20.0
    image_root: str | None = None
    allow_url_fetch: bool = False
    api_key: str | None = None
    model_name: str | None = None
    batch_wait_ms: float = 5.0
    default_max_tokens: int = 256


@dataclass
class _Job:
    prepared: Any
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    request: Request
    done: threading.Event = field(default_factory=threading.Event)


class Worker:
    """The one thread that runs the model: takes waiting jobs in batches of up to ``max_batch``."""

    def __init__(self, engine: Engine, max_batch: int, max_queue: int, batch_wait_ms: float):
        self.engine, self.max_batch, self.wait = engine, max_batch, batch_wait_ms / 1000.0
        self.q: queue.Queue = queue.Queue(maxsize=max_queue)
        self.stats = {"served": 0, "cancelled": 0, "failed": 0, "batches": 0, "max_batch_seen": 0}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="loupe-model-worker", daemon=True)
        self.thread.start()

    def submit(self, job: _Job) -> None:
        try:
            self.q.put_nowait(job)
        except queue.Full:
            raise ApiError(429, f"the server queue is full ({self.q.maxsize} requests waiting); retry later",
                           code="queue_full") from None

    def stop(self):
        self._stop.set()
        self.q.put(None)
        self.thread.join(timeout=10)

    def _loop(self):
        while not self._stop.is_set():
            job = self.q.get()
            if job is None:
                return
            batch = [job]
            deadline = time.monotonic() + self.wait
            while len(batch) < self.max_batch:
                try:
                    nxt = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._stop.set()
                    break
                batch.append(nxt)
            live = [j for j in batch if not j.request.cancelled.is_set()]
            self.stats["cancelled"] += len(batch) - len(live)
            for j in batch:
                if j not in live:
                    self._send(j, ("cancelled", None))
            if not live:
                continue
            self.stats["batches"] += 1
            self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], len(live))
            try:
                results = self.engine.generate([j.prepared for j in live])
            except Exception as e:  # never let one batch kill the worker
                self.stats["failed"] += len(live)
                for j in live:
                    self._send(j, ("error", f"generation failed: {type(e).__name__}: {e}"))
                continue
            for j, r in zip(live, results):
                self.stats["cancelled" if r.finish_reason == "cancelled" else "served"] += 1
                self._send(j, ("done", r))

    @staticmethod
    def _send(job: _Job, event):
        try:
            job.loop.call_soon_threadsafe(job.events.put_nowait, event)
        except RuntimeError:  # the loop is closed (server shutting down)
            pass
        job.done.set()


# --- request parsing -------------------------------------------------------------------------------------------

def _typed(body: dict, key: str, types, default=None, where: str | None = None):
    v = body.get(key, default)
    if v is None:
        return default
    name = where or key
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ApiError(422, f"{name} must be {_tname(types)}, got a boolean", param=name, code="invalid_type")
    if not isinstance(v, types):
        raise ApiError(422, f"{name} must be {_tname(types)}, got {type(v).__name__}", param=name,
                       code="invalid_type")
    return v


def _tname(types) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "an array", dict: "an object",
             bool: "a boolean"}
    ts = types if isinstance(types, tuple) else (types,)
    if set(ts) == {int, float}:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in ts)


def _budget(v, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError(422, f"{where} must be an integer, got {type(v).__name__}", param=where, code="invalid_type")
    if v < 1:
        raise ApiError(400, f"{where} must be >= 1, got {v}", param=where, code="invalid_value")
    return v


class Server:
    """The app's state: model, engine, worker and options. :meth:`app` builds the FastAPI application."""

    def __init__(self, model, processor, options: ServeOptions | None = None, model_name: str = "loupe"):
        self.opts = options or ServeOptions()
        self.model, self.processor = model, processor
        self.model_name = self.opts.model_name or model_name
        if self.opts.max_image_pixels is not None:
            processor.image_processor.max_image_pixels = int(self.opts.max_image_pixels)
        self.engine = Engine(model, processor)
        self.worker = Worker(self.engine, self.opts.max_batch, self.opts.max_queue, self.opts.batch_wait_ms)
        self.created = int(time.time())
        self.root = Path(self.opts.image_root).resolve() if self.opts.image_root else None

    def close(self):
        self.worker.stop()

    # --- images ---------------------------------------------------------------------------------------
    def load_image(self, url: str, param: str):
        from PIL import Image

        from ..images import load_image

        cap = self.processor.image_processor.max_image_pixels
        if not isinstance(url, str) or not url:
            raise ApiError(422, f"{param} must be a non-empty string", param=param, code="invalid_type")
        low = url[:8].lower()
        if low.startswith("data:"):
            head, sep, payload = url.partition(",")
            if not sep or ";base64" not in head.lower():
                raise ApiError(400, f"{param}: a data URI must be 'data:image/...;base64,<data>'", param=param,
                               code="invalid_image_url")
            try:
                data = base64.b64decode(payload, validate=False)
            except (binascii.Error, ValueError) as e:
                raise ApiError(400, f"{param}: the data URI is not valid base64 ({e})", param=param,
                               code="invalid_image_url") from None
            source: Any = data
        elif low.startswith("http://") or low.startswith("https://"):
            if not self.opts.allow_url_fetch:
                raise ApiError(400, f"{param}: http(s) image URLs are refused (start the server with "
                               "--allow-url-fetch to fetch them); send the image as a data: URI",
                               param=param, code="url_fetch_disabled")
            source = self._fetch(url, param)
        else:
            path = unquote(urlparse(url).path) if low.startswith("file://") else url
            if self.root is None:
                raise ApiError(400, f"{param}: local image paths are refused (start the server with --image-root "
                               "DIR to allow files under DIR); send the image as a data: URI", param=param,
                               code="image_path_not_allowed")
            p = Path(path)
            p = (p if p.is_absolute() else self.root / p).resolve()
            if not p.is_relative_to(self.root):
                raise ApiError(400, f"{param}: {path} is outside the image root", param=param,
                               code="image_path_not_allowed")
            source = p
        try:
            img = load_image(source, max_pixels=cap)
        except LoupeError as e:
            too_big = "over the cap" in str(e)
            raise ApiError(413 if too_big else 400, f"{param}: {e}", param=param,
                           code="image_too_large" if too_big else "invalid_image") from None
        w, h = img.size
        if max(w, h) > MAX_ASPECT * min(w, h):
            raise ApiError(400, f"{param}: the image is {w}x{h}, an aspect ratio over {MAX_ASPECT}:1; crop or pad it",
                           param=param, code="invalid_image")
        assert isinstance(img, Image.Image)
        return img

    def _fetch(self, url: str, param: str) -> bytes:
        import httpx

        limit = int(self.opts.max_body_mb * 1024 * 1024)
        try:
            with httpx.stream("GET", url, timeout=10.0, follow_redirects=True) as r:
                r.raise_for_status()
                data = b""
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise ApiError(413, f"{param}: the image at {url} is over {self.opts.max_body_mb} MB",
                                       param=param, code="image_too_large")
                return data
        except httpx.HTTPError as e:
            raise ApiError(400, f"{param}: cannot fetch {url}: {e}", param=param, code="invalid_image_url") from None

    def choose(self, img, detail, max_tokens, param: str):
        from ..budget import choose_slicer

        ip = self.processor.image_processor
        if detail is None and max_tokens is None:
            return None
        if detail not in (None, "low", "high", "auto"):
            raise ApiError(400, f"{param}.detail must be 'low', 'high' or 'auto', got {detail!r}",
                           param=f"{param}.detail", code="invalid_value")
        try:
            return choose_slicer(ip.slicer, ip.vision, ip.connector, img.size, max_tokens, detail)
        except LoupeError as e:
            raise ApiError(400, f"{param}: {e}", param="max_image_tokens", code="image_token_budget") from None

    # --- chat requests ----------------------------------------------------------------------------------
    def parse(self, body: Any) -> tuple[Request, dict]:
        if not isinstance(body, dict):
            raise ApiError(422, f"the request body must be a JSON object, got {type(body).__name__}",
                           code="invalid_type")
        model = body.get("model")
        if not isinstance(model, str):
            raise ApiError(422, "model must be a string (see GET /v1/models)", param="model", code="invalid_type")
        if model != self.model_name:
            raise ApiError(404, f"the model {model!r} does not exist; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")
        n = _typed(body, "n", int, 1)
        if n != 1:
            raise ApiError(400, f"n must be 1 (this server returns one choice), got {n}", param="n",
                           code="invalid_value")
        max_tokens = _typed(body, "max_completion_tokens", int, None)
        if max_tokens is None:
            max_tokens = _typed(body, "max_tokens", int, self.opts.default_max_tokens)
        if max_tokens < 1:
            raise ApiError(400, f"max_tokens must be >= 1, got {max_tokens}", param="max_tokens",
                           code="invalid_value")
        temperature = _typed(body, "temperature", (int, float), None)
        if temperature is not None and not 0 <= temperature <= 2:
            raise ApiError(400, f"temperature must be between 0 and 2, got {temperature}", param="temperature",
                           code="invalid_value")
        top_p = _typed(body, "top_p", (int, float), 1.0)
        if not 0 < top_p <= 1:
            raise ApiError(400, f"top_p must be in (0, 1], got {top_p}", param="top_p", code="invalid_value")
        seed = _typed(body, "seed", int, None)
        stop = body.get("stop")
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            raise ApiError(422, "stop must be a string or an array of strings", param="stop", code="invalid_type")
        if len(stop) > 4:
            raise ApiError(400, f"stop takes at most 4 sequences, got {len(stop)}", param="stop",
                           code="invalid_value")
        stream = _typed(body, "stream", bool, False)
        so = _typed(body, "stream_options", dict, {})
        include_usage = bool(_typed(so, "include_usage", bool, False, where="stream_options.include_usage"))
        top_budget = _budget(body.get("max_image_tokens"), "max_image_tokens")

        msgs = body.get("messages")
        if not isinstance(msgs, list):
            raise ApiError(422, f"messages must be an array, got {type(msgs).__name__}", param="messages",
                           code="invalid_type")
        if not msgs:
            raise ApiError(400, "messages must not be empty", param="messages", code="invalid_value")
        messages, images, slicers = [], [], []
        for i, m in enumerate(msgs):
            where = f"messages[{i}]"
            if not isinstance(m, dict):
                raise ApiError(422, f"{where} must be an object", param=where, code="invalid_type")
            role = m.get("role")
            if role not in ("system", "user", "assistant"):
                raise ApiError(400, f"{where}.role must be 'system', 'user' or 'assistant', got {role!r}",
                               param=f"{where}.role", code="invalid_value")
            content = m.get("content")
            if isinstance(content, str):
                self._check_text(content, f"{where}.content")
                messages.append({"role": role, "content": content})
                continue
            if not isinstance(content, list):
                raise ApiError(422, f"{where}.content must be a string or an array of parts", param=f"{where}.content",
                               code="invalid_type")
            blocks = []
            for j, part in enumerate(content):
                pw = f"{where}.content[{j}]"
                if not isinstance(part, dict):
                    raise ApiError(422, f"{pw} must be an object", param=pw, code="invalid_type")
                kind = part.get("type")
                if kind == "text":
                    text = part.get("text")
                    if not isinstance(text, str):
                        raise ApiError(422, f"{pw}.text must be a string", param=f"{pw}.text", code="invalid_type")
                    self._check_text(text, f"{pw}.text")
                    blocks.append({"type": "text", "text": text})
                elif kind == "image_url":
                    if role != "user":
                        raise ApiError(400, f"{pw}: images go in user messages", param=pw, code="invalid_value")
                    iu = part.get("image_url")
                    if isinstance(iu, str):
                        iu = {"url": iu}
                    if not isinstance(iu, dict):
                        raise ApiError(422, f"{pw}.image_url must be an object with a url", param=f"{pw}.image_url",
                                       code="invalid_type")
                    img = self.load_image(iu.get("url"), f"{pw}.image_url.url")
                    budget = _budget(iu.get("max_image_tokens"), f"{pw}.image_url.max_image_tokens")
                    budget = budget if budget is not None else top_budget
                    detail = iu.get("detail")
                    slicers.append(self.choose(img, detail, budget, f"{pw}.image_url"))
                    images.append(img)
                    blocks.append({"type": "image"})
                else:
                    raise ApiError(400, f"{pw}.type must be 'text' or 'image_url', got {kind!r}", param=f"{pw}.type",
                                   code="invalid_value")
            messages.append({"role": role, "content": blocks})
        req = Request(messages, images, slicers if any(s is not None for s in slicers) else None, max_tokens,
                      None if temperature is None else float(temperature), float(top_p), seed, stop)
        return req, {"stream": stream, "include_usage": include_usage}

    @staticmethod
    def _check_text(text: str, where: str):
        if "<image>" in text:
            raise ApiError(400, f"{where} contains '<image>'; send images as image_url parts", param=where,
                           code="invalid_value")

    def prepare(self, req: Request):
        try:
            return self.engine.prepare(req)
        except LoupeError as e:
            raise ApiError(400, str(e), code="invalid_request") from None

    # --- plan -------------------------------------------------------------------------------------------
    def plan(self, body: Any) -> dict:
        from ..geometry import ImageGeometry

        if not isinstance(body, dict):
            raise ApiError(422, "the request body must be a JSON object", code="invalid_type")
        ip = self.processor.image_processor
        if "image" in body or "image_url" in body:
            src = body.get("image", body.get("image_url"))
            if isinstance(src, dict):
                src = src.get("url")
            img = self.load_image(src, "image")
            size = img.size
        elif "width" in body and "height" in body:
            w, h = _typed(body, "width", int), _typed(body, "height", int)
            if w < 1 or h < 1:
                raise ApiError(400, f"width and height must be >= 1, got {w}x{h}", code="invalid_value")
            if max(w, h) > MAX_ASPECT * min(w, h):
                raise ApiError(400, f"an image of {w}x{h} has an aspect ratio over {MAX_ASPECT}:1",
                               code="invalid_image")
            cap = ip.max_image_pixels
            if cap is not None and w * h > cap:
                raise ApiError(413, f"an image of {w}x{h} is over the pixel cap of {cap:,}", code="image_too_large")
            size = (w, h)
        else:
            raise ApiError(400, "give 'image' (a data: URI or an allowed URL/path) or 'width' and 'height'",
                           param="image", code="invalid_value")
        budget = _budget(body.get("max_image_tokens"), "max_image_tokens")
        detail = body.get("detail")
        cfg = self.choose(_Sized(size), detail, budget, "image") or ip.slicer
        geom = ImageGeometry(cfg, ip.vision, ip.connector)
        layout = geom.layout(size)
        return layout_json(geom, layout, cfg)


class _Sized:
    def __init__(self, size):
        self.size = tuple(size)


def layout_json(geom, layout, slicer_cfg: dict) -> dict:
    """A layout as JSON: tiles (box in image pixels, size, role, tokens), canvas, grid, total tokens."""
    from ..visualize import tokens_per_tile

    per_tile, other = tokens_per_tile(geom, layout)
    tiles = []
    for i, (size, role) in enumerate(zip(layout.tile_sizes, layout.roles)):
        box = layout.boxes[i] if i < len(layout.boxes) else None
        tiles.append({"index": i, "role": role, "size": list(size), "box": [float(v) for v in box] if box else None,
                      "tokens": per_tile[i]})
    return {
        "object": "loupe.plan",
        "image_size": list(layout.image_size),
        "canvas_size": list(layout.canvas_size) if layout.canvas_size else None,
        "content_box": list(layout.content_box) if layout.content_box else None,
        "grid": list(layout.grid),
        "tiles": tiles,
        "other_tokens": other,
        "total_tokens": geom.num_tokens(layout),
        "slicer": slicer_cfg,
    }


# --- the FastAPI application ---------------------------------------------------------------------------------

def create_app(server: Server):
    from fastapi import FastAPI, Request as HTTPRequest
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="Loupe", docs_url=None, redoc_url=None, openapi_url=None)
    opts = server.opts
    limit = int(opts.max_body_mb * 1024 * 1024)

    def err(e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(ApiError)
    async def _api_error(request, e: ApiError):
        return err(e)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        msg = f"no route {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        return err(ApiError(e.status_code, msg, code=code))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, e):
        return err(ApiError(422, str(e), code="invalid_type"))

    @app.exception_handler(Exception)
    async def _any_error(request, e):
        return err(ApiError(500, f"internal error: {type(e).__name__}: {e}", code="internal_error"))

    @app.middleware("http")
    async def _auth_and_size(request: HTTPRequest, call_next):
        path = request.url.path
        if opts.api_key and path.startswith("/v1/"):
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {opts.api_key}":
                return err(ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                                    code="invalid_api_key"))
        cl = request.headers.get("content-length")
        if cl is not None and cl.isdigit() and int(cl) > limit:
            return err(ApiError(413, f"the request body is {int(cl):,} bytes, over the limit of "
                                f"{opts.max_body_mb:g} MB (--max-body-mb)", code="request_too_large"))
        try:
            return await call_next(request)
        except ApiError as e:
            return err(e)

    async def read_json(request: HTTPRequest):
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise ApiError(413, f"the request body is over the limit of {opts.max_body_mb:g} MB (--max-body-mb)",
                               code="request_too_large")
        try:
            return json.loads(bytes(data))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": server.model_name, "queue": server.worker.q.qsize(),
                **server.worker.stats}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": server.model_name, "object": "model", "created": server.created,
                                            "owned_by": "loupe"}]}

    @app.get("/v1/models/{name}")
    async def model_info(name: str):
        if name != server.model_name:
            raise ApiError(404, f"the model {name!r} does not exist", param="model", code="model_not_found")
        return {"id": server.model_name, "object": "model", "created": server.created, "owned_by": "loupe"}

    @app.post("/v1/loupe/plan")
    async def plan(request: HTTPRequest):
        body = await read_json(request)
        return await run_in_threadpool(server.plan, body)

    @app.post("/v1/chat/completions")
    async def chat(request: HTTPRequest):
        body = await read_json(request)
        req, flags = await run_in_threadpool(server.parse, body)
        prepared = await run_in_threadpool(server.prepare, req)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        if flags["stream"]:
            req.on_text = lambda piece: loop.call_soon_threadsafe(events.put_nowait, ("text", piece))
        job = _Job(prepared, loop, events, req)
        server.worker.submit(job)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if flags["stream"]:
            return StreamingResponse(_stream(server, job, cid, created, flags["include_usage"]),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), timeout=0.25)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    req.cancelled.set()
                    return JSONResponse({}, status_code=499)
                continue
            if kind == "error":
                raise ApiError(500, value, code="generation_failed")
            if kind == "cancelled":
                raise ApiError(500, "the request was cancelled", code="cancelled")
            if kind == "done":
                r = value
                return {
                    "id": cid, "object": "chat.completion", "created": created, "model": server.model_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text},
                                 "finish_reason": _finish(r.finish_reason), "logprobs": None}],
                    "usage": _usage(r),
                }

    @app.get("/")
    async def index():
        page = STATIC / "index.html"
        if not page.exists():
            raise ApiError(404, "the web page is not installed", code="not_found")
        return FileResponse(page, media_type="text/html")

    @app.get("/static/{name}")
    async def static(name: str):
        p = (STATIC / name).resolve()
        if not p.is_relative_to(STATIC.resolve()) or not p.is_file():
            raise ApiError(404, f"no static file {name!r}", code="not_found")
        media = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}.get(p.suffix, "text/plain")
        return FileResponse(p, media_type=media)

    app.state.server = server
    return app


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _usage(r) -> dict:
    return {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens,
            "prompt_tokens_details": {"image_tokens": r.image_tokens, "cached_tokens": 0}}


async def _stream(server: Server, job: _Job, cid: str, created: int, include_usage: bool):
    def chunk(delta: dict, finish=None, usage=None, choices=True) -> str:
        d = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": server.model_name,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else [],
             "usage": usage}
        return f"data: {json.dumps(d)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await job.events.get()
            if kind == "text":
                yield chunk({"content": value})
            elif kind == "error":
                yield f"data: {json.dumps(ApiError(500, value, code='generation_failed').body())}\n\n"
                break
            elif kind == "cancelled":
                break
            elif kind == "done":
                yield chunk({}, finish=_finish(value.finish_reason))
                if include_usage:
                    yield chunk({}, usage=_usage(value), choices=False)
                break
        yield "data: [DONE]\n\n"
    finally:  # a client that went away cancels its generation
        if not job.done.is_set():
            job.request.cancelled.set()


# --- running ---------------------------------------------------------------------------------------------------

class BackgroundServer:
    """Run a :class:`Server` with uvicorn on a thread (tests, benchmarks); a context manager that always stops."""

    def __init__(self, server: Server, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.server = server
        self.app = create_app(server)
        self._sock = _bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self.uv = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                                timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.uv.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self):
        self.thread.start()
        t0 = time.monotonic()
        while not self.uv.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > 30:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.uv.should_exit = True
        self.thread.join(timeout=10)
        self._sock.close()
        self.server.close()


def _bind(host: str, port: int):
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(128)
    return s


def serve(model_dir: str, options: ServeOptions, device: str = "cpu") -> None:
    """Load ``model_dir`` and serve it until interrupted."""
    import uvicorn

    from .chat import load

    model, processor = load(model_dir, device=device)
    server = Server(model, processor, options, model_name=Path(model_dir).resolve().name)
    app = create_app(server)
    try:
        uvicorn.run(app, host=options.host, port=options.port, log_level="info", lifespan="off")
    finally:
        server.close()
