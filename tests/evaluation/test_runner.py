"""``loupe eval`` as a runner: batched = one-by-one answers, a SIGKILLed run resumes to the same result without
duplicates, malformed records are reported and counted (``--strict``: fatal), and two processes under
``torchrun`` write exactly the predictions of one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from loupe.evaluation.fixtures import write_fixture

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import loupe

    torch.manual_seed(0)
    model, processor = loupe.build("llava15-tiny")
    d = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(d)
    processor.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """12 images of three sizes -> 24 questions (different image-token counts, so batches are padded)."""
    from loupe.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthConfig(n_train=0, n_test=12, sizes=[[64, 64], [96, 64], [64, 128]]))
    return root


def _eval(model_dir, data, out, *extra, task="loupe_synth"):
    from loupe.cli.main import main

    return main(["eval", "--model", str(model_dir), "--task", task, "--data", str(data), "--output", str(out),
                 "--no-progress", *extra])


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def test_batched_answers_equal_one_by_one(model_dir, synth, tmp_path):
    for bs in (1, 5):
        assert _eval(model_dir, synth, tmp_path / f"bs{bs}", "--batch-size", str(bs), "--set", "max_new_tokens=6") == 0
    one, five = _lines(tmp_path / "bs1" / "predictions.jsonl"), _lines(tmp_path / "bs5" / "predictions.jsonl")
    assert len(one) == 24 and one == five
    m1 = json.loads((tmp_path / "bs1" / "metrics.json").read_text())
    m5 = json.loads((tmp_path / "bs5" / "metrics.json").read_text())
    assert m1["metrics"] == m5["metrics"] and m1["categories"] == m5["categories"]


def test_generate_batch_left_pads(model_dir):
    """The same prompts with images of different sizes, batched vs alone, at the function level."""
    from PIL import Image

    from loupe.evaluation.predict import generate_batch, render_prompt
    from loupe.serving.chat import load

    model, processor = load(str(model_dir))
    imgs = [Image.new("RGB", (w, h), (30 * i, 80, 160)) for i, (w, h) in enumerate([(64, 64), (128, 48), (40, 90)])]
    texts = ["What is it?", "Describe the picture in detail please.", "Colour?"]
    prompts = [render_prompt(processor, t, 1) for t in texts]
    batched = generate_batch(model, processor, prompts, [[im] for im in imgs], 8)
    alone = [generate_batch(model, processor, [p], [[im]], 8)[0] for p, im in zip(prompts, imgs)]
    assert batched == alone


def test_sigkill_then_resume_gives_the_same_result(model_dir, synth, tmp_path):
    ref = tmp_path / "ref"
    assert _eval(model_dir, synth, ref, "--batch-size", "2", "--set", "max_new_tokens=12") == 0

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "loupe.cli.main", "eval", "--model", str(model_dir), "--task", "loupe_synth",
           "--data", str(synth), "--output", str(out), "--batch-size", "1", "--set", "max_new_tokens=12",
           "--no-progress"]
    proc = subprocess.Popen(cmd, env=_env(), cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    preds = out / "predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if preds.exists() and len(_lines(preds)) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_lines(preds))
    assert 3 <= done < 24, done
    with open(preds, "a") as f:  # what a kill in the middle of a write leaves behind
        f.write('{"id": "test-000')

    assert _eval(model_dir, synth, out, "--batch-size", "3", "--set", "max_new_tokens=12") == 0
    lines = _lines(preds)
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == 24
    assert lines == _lines(ref / "predictions.jsonl")
    a, b = json.loads((ref / "metrics.json").read_text()), json.loads((out / "metrics.json").read_text())
    assert a["metrics"] == b["metrics"] and a["categories"] == b["categories"]


def test_malformed_records_are_reported_and_counted(model_dir, tmp_path, capsys):
    data = write_fixture("pope", tmp_path / "pope")
    qfile = data / "coco" / "coco_pope_random.json"
    rows = _lines(qfile)
    rows.append('{"question_id": 7, "image": "COCO_val2014_000000000000.jpg", "text": "Is there a cat')  # broken
    rows.append(json.dumps({"question_id": 8, "image": "COCO_val2014_000000000000.jpg", "text": "Is there a cat?"}))
    rows.append(json.dumps({"question_id": 9, "image": "missing.jpg", "text": "Is there a cow?", "label": "no"}))
    rows.append(json.dumps({"question_id": 10, "image": "broken.jpg", "text": "Is there a pig?", "label": "no"}))
    (data / "val2014" / "broken.jpg").write_bytes(b"not an image at all")
    qfile.write_text("\n".join(rows) + "\n")

    out = tmp_path / "out"
    assert _eval(model_dir, data, out, "--task", "pope", "--set", "max_new_tokens=2", task="pope") == 0
    result = json.loads((out / "metrics.json").read_text())
    bad = {p["id"]: p["reason"] for p in result["malformed"]["records"]}
    assert result["malformed"]["count"] == 4 == len(bad)
    assert "broken JSON" in bad["coco_pope_random.json:line 3"]
    assert "label" in bad["random-8"]
    assert "image not found" in bad["random-9"]
    assert "image unreadable" in bad["random-10"]
    assert result["n_scored"] == 6  # the good records of all three splits were still answered and scored
    assert "malformed record" in capsys.readouterr().err
    assert "random-9" in (out / "results.md").read_text()

    assert _eval(model_dir, data, tmp_path / "strict", "--strict", "--set", "max_new_tokens=2", task="pope") == 2
    err = capsys.readouterr().err
    assert "--strict" in err and "random-8" in err and "coco_pope_random.json:line 3" in err


def test_torchrun_two_processes_write_the_predictions_of_one(model_dir, synth, tmp_path):
    one = tmp_path / "one"
    assert _eval(model_dir, synth, one, "--batch-size", "4", "--set", "max_new_tokens=6") == 0
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "loupe.cli.main", "eval", "--model", str(model_dir), "--task", "loupe_synth", "--data", str(synth),
           "--output", str(two), "--batch-size", "3", "--set", "max_new_tokens=6", "--no-progress"]
    proc = subprocess.run(cmd, env=_env(), cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr
    assert sorted(_lines(two / "predictions.jsonl")) == sorted(_lines(one / "predictions.jsonl"))
    assert not list(two.glob("predictions.rank*.jsonl"))  # merged by rank 0
    a, b = json.loads((one / "metrics.json").read_text()), json.loads((two / "metrics.json").read_text())
    assert a["metrics"] == b["metrics"] and b["world_size"] == 2
