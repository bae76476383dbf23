"""Serving throughput: ``loupe serve`` (batched worker) against sequential ``generate`` and ``transformers serve``.

One tiny model (``llava-next-tiny``, random weights, seed 0) is saved as a Loupe folder and exported to the
llava-hf layout (``loupe.convert.llava_hf.export_folder``), so all rows run the same weights:

* ``sequential generate``: ``LoupeForConditionalGeneration.generate`` one request after another, in this process
  (greedy, the processor's prompt) — the baseline with no server and no batching;
* ``loupe serve``: the server in its own process (``python -m loupe.cli.main serve``), requests sent by
  ``--concurrency`` client threads at once (httpx, non-streaming); requests that arrive together run as one batch;
* ``transformers serve``: ``transformers serve DIR`` (transformers' own OpenAI-compatible server) on the llava-hf
  export, same requests, offline (``HF_HUB_OFFLINE=1``). Skipped, with the reason printed, where the command is
  missing or cannot start or answer here.

Every request: one image (sizes mixed, so tile counts differ), one question, ``max_tokens`` new tokens, greedy,
no stop. Printed per row and concurrency: requests/s, p50 and p95 latency (seconds), and the throughput ratio to
sequential ``generate``; the server answers are checked against the sequential answers (``loupe serve`` must match
exactly; ``transformers serve`` keeps the leading space, so it is compared stripped).

Servers run with ``OMP_NUM_THREADS=--threads`` (1 by default: this 2-core machine is shared, and one thread per
process keeps the rows comparable).

Usage: ``python benchmarks/bench_serve.py [--requests 32] [--concurrency 1 8] [--max-tokens 16] [--threads 1]
[--no-transformers]``
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = [(120, 80), (64, 150), (200, 100), (90, 90), (150, 60), (56, 56), (100, 170), (180, 120)]
QUESTIONS = ["what is in the picture?", "describe it", "how many tiles?", "what colour is it?"]


def make_requests(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
        out.append((buf.getvalue(), QUESTIONS[i % len(QUESTIONS)]))
    return out


def body(model: str, raw: bytes, question: str, max_tokens: int) -> dict:
    uri = "data:image/png;base64," + base64.b64encode(raw).decode()
    return {"model": model, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                      {"type": "text", "text": question}]}]}


def summary(name: str, conc, latencies: list[float], wall: float) -> dict:
    lat = sorted(latencies)
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
    return {"name": name, "concurrency": conc, "rps": len(lat) / wall, "p50": statistics.median(lat), "p95": p95,
            "wall": wall}


def sequential(folder: Path, reqs, max_tokens: int):
    import torch

    from loupe.serving.chat import load, user_message

    model, processor = load(str(folder))
    answers, lat = [], []
    tok = processor.tokenizer

    def one(raw, q):
        img = Image.open(io.BytesIO(raw)).convert("RGB")
        prompt = tok.apply_chat_template([user_message(q, 1)], tokenize=False, add_generation_prompt=True)
        enc = processor(images=[img], text=[prompt], add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, min_new_tokens=0)
        new = out[0, enc["input_ids"].shape[1]:]
        return tok.decode(new, skip_special_tokens=True).strip()

    one(*reqs[0])  # warm-up
    t0 = time.perf_counter()
    for raw, q in reqs:
        s = time.perf_counter()
        answers.append(one(raw, q))
        lat.append(time.perf_counter() - s)
    return summary("sequential generate", "-", lat, time.perf_counter() - t0), answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, env: dict, log: Path, timeout: float = 180.0):
    import httpx

    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-800:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"did not answer /health within {timeout:.0f} s: {log.read_text()[-800:]}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def load_test(name: str, url: str, model: str, reqs, max_tokens: int, conc: int):
    import httpx

    client = httpx.Client(timeout=600)
    answers: list = [None] * len(reqs)
    lat: list = [0.0] * len(reqs)
    failures: list = []

    def one(i):
        raw, q = reqs[i]
        s = time.perf_counter()
        r = client.post(url + "/v1/chat/completions", json=body(model, raw, q, max_tokens))
        lat[i] = time.perf_counter() - s
        if r.status_code != 200:
            failures.append(f"{r.status_code} {r.text[:200]}")
            return
        answers[i] = r.json()["choices"][0]["message"]["content"]

    one(0)  # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as ex:
        list(ex.map(one, range(len(reqs))))
    wall = time.perf_counter() - t0
    client.close()
    return summary(name, conc, lat, wall), answers, failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-transformers", action="store_true", help="skip the transformers serve row")
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    import loupe
    from loupe.convert.llava_hf import export_folder

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    torch.manual_seed(0)
    model, processor = loupe.build("llava-next-tiny")
    model.save_pretrained(tmp / "loupe")
    processor.save_pretrained(tmp / "loupe")
    del model
    reqs = make_requests(args.requests)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1")
    rows, notes = [], []

    base, ref = sequential(tmp / "loupe", reqs, args.max_tokens)
    rows.append(base)

    port = free_port()
    proc = start([sys.executable, "-m", "loupe.cli.main", "serve", "--model", str(tmp / "loupe"), "--port",
                  str(port), "--model-name", "tiny", "--max-batch", str(max(args.concurrency))], port, env,
                 tmp / "loupe_serve.log")
    try:
        for c in args.concurrency:
            row, answers, failures = load_test("loupe serve", f"http://127.0.0.1:{port}", "tiny", reqs,
                                               args.max_tokens, c)
            same = sum(a == b for a, b in zip(answers, ref))
            row["check"] = f"{same}/{len(reqs)} equal to sequential, {len(failures)} failed"
            rows.append(row)
    finally:
        stop(proc)

    why = None
    exe = shutil.which("transformers")
    if args.no_transformers:
        why = "--no-transformers"
    elif exe is None:
        why = "no `transformers` command on PATH (transformers < 5 has `transformers-cli serve`)"
    if why is None:
        try:
            export_folder(tmp / "loupe", tmp / "hf")
            port = free_port()
            proc = start([exe, "serve", str(tmp / "hf"), "--device", "cpu", "--host", "127.0.0.1", "--port",
                          str(port)], port, env, tmp / "transformers_serve.log")
        except Exception as e:  # not servable here: say why and skip the row
            why = f"transformers serve could not start on the llava-hf export: {type(e).__name__}: {e}"
    if why is None:
        try:
            for c in args.concurrency:
                row, answers, failures = load_test("transformers serve", f"http://127.0.0.1:{port}", str(tmp / "hf"),
                                                   reqs, args.max_tokens, c)
                if failures and len(failures) == len(reqs):
                    why = f"transformers serve refused every request: {failures[0]}"
                    break
                same = sum(a is not None and a.strip() == b for a, b in zip(answers, ref))
                row["check"] = f"{same}/{len(reqs)} equal to sequential (stripped), {len(failures)} failed"
                rows.append(row)
        finally:
            stop(proc)
    if why:
        notes.append(f"transformers serve row skipped: {why}")

    print(f"\n{args.requests} requests, llava-next-tiny (random weights), {args.max_tokens} new tokens, greedy, "
          f"{args.threads} thread(s) per process, torch {torch.__version__}")
    print(f"{'row':22s} {'conc':>4s} {'req/s':>7s} {'p50 s':>7s} {'p95 s':>7s} {'x seq':>6s}  check")
    for r in rows:
        print(f"{r['name']:22s} {str(r['concurrency']):>4s} {r['rps']:7.2f} {r['p50']:7.3f} {r['p95']:7.3f} "
              f"{r['rps'] / base['rps']:6.2f}  {r.get('check', '')}")
    for n in notes:
        print(n)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
