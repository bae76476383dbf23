"""Reliability of ``loupe eval`` / ``chat`` / ``profile`` / ``data synth``: a resume never trusts a malformed
predictions row and retries error rows, a record the slicer refuses is an error row (not the end of the run),
over-long prompts are refused with both numbers (or truncated when asked), and bad input is an
``error: ...`` line with exit status 2, never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

from loupe.cli.main import main
from loupe.errors import LoupeError
from loupe.evaluation.fixtures import write_fixture


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
def pope(tmp_path_factory):
    return write_fixture("pope", tmp_path_factory.mktemp("pope"))  # 6 records on 2 images


def _eval(model_dir, data, out, *extra):
    return main(["eval", "--model", str(model_dir), "--task", "pope", "--data", str(data), "--output", str(out),
                 "--no-progress", "--set", "max_new_tokens=2", *extra])


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- 1. resume ----------------------------------------------------------------------------------------------
def test_resume_redoes_malformed_rows_and_retries_error_rows(model_dir, pope, tmp_path, capsys):
    ref = tmp_path / "ref"
    assert _eval(model_dir, pope, ref) == 0
    good = (ref / "predictions.jsonl").read_text().splitlines()
    assert len(good) == 6

    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copy(ref / "run.json", out / "run.json")
    ids = [json.loads(line)["id"] for line in good]
    bad = [json.dumps({"id": ids[0]}),                                          # no prediction
           json.dumps({"id": ids[1], "prediction": None, "prompt": "p"}),       # null
           json.dumps({"id": ids[2], "prediction": 7, "prompt": "p"}),          # not a string
           json.dumps({"id": ids[3], "error": "image unreadable: boom"}),       # failed before: retried
           "this line is not JSON",
           good[4]]
    (out / "predictions.jsonl").write_text("\n".join(bad) + "\n")
    capsys.readouterr()
    assert _eval(model_dir, pope, out) == 0
    err = capsys.readouterr().err
    assert "4 malformed row(s)" in err and "retrying 1 record(s)" in err
    assert "1 of this process's 6 already answered" in err  # only the valid answer row was trusted
    assert (out / "predictions.jsonl").read_text().splitlines() == good  # malformed and error rows are gone
    a, b = json.loads((ref / "metrics.json").read_text()), json.loads((out / "metrics.json").read_text())
    assert a["metrics"] == b["metrics"] and b["malformed"]["count"] == 0 and b["n_scored"] == 6


def test_batch_size_and_limit_must_be_positive(model_dir, pope, tmp_path, capsys):
    for flag, value in (("--batch-size", "0"), ("--batch-size", "-1"), ("--limit", "0"), ("--limit", "-1"),
                        ("--batch-size", "two")):
        assert _eval(model_dir, pope, tmp_path / "o", flag, value) == 2
        err = capsys.readouterr().err
        assert f"argument {flag}" in err and ("positive integer" in err or "integer" in err), err
    assert not (tmp_path / "o").exists()  # refused before anything was written
    from loupe.evaluation.runner import run_eval

    for kw in ({"batch_size": 0}, {"batch_size": -1}, {"limit": 0}, {"limit": -1}):
        with pytest.raises(LoupeError, match=next(iter(kw))):
            run_eval(model_dir, "pope", pope, tmp_path / "api", **kw)


def test_an_image_the_slicer_refuses_is_an_error_row_and_resume_survives_it(model_dir, tmp_path, capsys):
    data = write_fixture("pope", tmp_path / "pope")
    # 65535x1: the pad slicer's square canvas would be 65535x65535 pixels, which it refuses
    Image.new("RGB", (65535, 1), "red").save(data / "val2014" / "COCO_val2014_000000000001.jpg", format="PNG")
    out = tmp_path / "out"
    for attempt in range(2):  # the second run resumes: the error rows are retried and fail again, calmly
        assert _eval(model_dir, data, out, "--batch-size", "4") == 0, capsys.readouterr().err
        result = json.loads((out / "metrics.json").read_text())
        bad = {p["id"]: p["reason"] for p in result["malformed"]["records"]}
        assert set(bad) == {"random-2", "popular-2", "adversarial-2"}
        assert all("65535x1" in reason for reason in bad.values()), bad
        assert result["n_scored"] == 3
        rows = _rows(out / "predictions.jsonl")
        assert len(rows) == 6 == len({r["id"] for r in rows})
    assert "retrying 3 record(s)" in capsys.readouterr().err
    assert _eval(model_dir, data, tmp_path / "strict", "--strict") == 2
    assert "65535x1" in capsys.readouterr().err


# --- 2. length limits -----------------------------------------------------------------------------------------
def test_processor_refuses_text_over_the_context(tiny):
    _, processor = tiny
    assert processor.max_prompt_tokens == 4096  # the tiny tokenizer's model_max_length
    with pytest.raises(LoupeError, match=r"200,000 characters, over the limit of 131,072"):
        processor(text="x" * 200_000)
    processor.context_length = 64  # what load_model_folder sets from max_position_embeddings
    try:
        assert processor.max_prompt_tokens == 64
        processor(images=[Image.new("RGB", (40, 40))], text="<image> hello")  # 16 visual + a few text: fits
        with pytest.raises(LoupeError, match=r"sample 1: the prompt is \d+ tokens \(\d+ text \+ 16 visual\), over "
                                             r"the model's context of 64"):
            processor(images=[Image.new("RGB", (40, 40))] * 2, text=["<image> hi", "<image>" + " hello" * 60])
    finally:
        processor.context_length = None


def test_processor_text_must_be_strings(tiny):
    _, processor = tiny
    with pytest.raises(LoupeError, match="empty list"):
        processor(text=[])
    with pytest.raises(LoupeError, match="list of strings"):
        processor(text=[3])


def test_load_model_folder_gives_the_processor_the_context(model_dir):
    from loupe.serving.chat import load_model_folder

    model, processor = load_model_folder(model_dir)
    assert processor.context_length == model.config.text_config.max_position_embeddings == 4096


def test_chat_refuses_a_question_over_the_context(model_dir, capsys):
    assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "2", "x" * 200_000]) == 2
    err = capsys.readouterr().err
    assert "loupe chat: error: the question is 200,000 characters" in err and "4096-token context" in err
    assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "2", "hello " * 5000]) == 2
    err = capsys.readouterr().err
    assert "the prompt is" in err and "over the model's context of 4096 tokens" in err and "--truncate" in err


def test_chat_truncates_only_when_asked(model_dir, capsys):
    assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "2", "--truncate", "hello " * 30_000]) == 0
    assert capsys.readouterr().out.strip()


def test_a_refused_question_leaves_the_conversation_as_it_was(model_dir):
    from loupe.serving.chat import ChatSession, load_model_folder

    model, processor = load_model_folder(model_dir)
    session = ChatSession(model, processor, max_new_tokens=2)
    session.ask("hello", [Image.new("RGB", (40, 40))])
    before = (list(session.messages), list(session.images))
    with pytest.raises(LoupeError, match="context of 4096"):
        session.ask("hello " * 5000, [Image.new("RGB", (40, 40))])
    assert (session.messages, session.images) == before
    with pytest.raises(LoupeError, match="max_new_tokens"):
        ChatSession(model, processor, max_new_tokens=0)


# --- 3. messages, not tracebacks ------------------------------------------------------------------------------
def _broken_copy(model_dir, dest, how):
    shutil.copytree(model_dir, dest)
    if how == "no weights":
        (dest / "model.safetensors").unlink()
    elif how == "truncated":
        data = (dest / "model.safetensors").read_bytes()
        (dest / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "no tokenizer":
        (dest / "tokenizer.json").unlink()
    return dest


@pytest.mark.parametrize("how, message", [("no weights", "no weights (model.safetensors"),
                                          ("truncated", "model.safetensors is truncated"),
                                          ("no tokenizer", "no tokenizer.json")])
def test_an_incomplete_model_folder_is_named(model_dir, tmp_path, capsys, how, message):
    bad = _broken_copy(model_dir, tmp_path / "m", how)
    assert main(["chat", "--model", str(bad), "q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loupe chat: error:") and message in err and "Traceback" not in err
    assert _eval(bad, write_fixture("pope", tmp_path / "pope"), tmp_path / "out") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written for a run that cannot start
    assert main(["profile", "--model", str(bad), "--no-plots"]) == 2
    assert message in capsys.readouterr().err


def test_cli_errors_are_messages(model_dir, pope, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["chat", "--model", str(model_dir), "--max-new-tokens", "0", "q"], "argument --max-new-tokens"),
        (["chat", "--model", str(model_dir), "--max-new-tokens", "-3", "q"], "positive integer"),
        (["chat", "--model", str(model_dir), "--device", "banana", "q"], "'banana' is not a device name"),
        (["chat", "--model", str(afile), "q"], "is a file, not a model folder"),
        (["chat", "--model", str(tmp_path / "nowhere"), "q"], "model folder not found"),
        (["eval", "--compare", str(tmp_path / "missing")], "the folder does not exist"),
        (["eval", "--compare", str(model_dir)], "holds no metrics.json"),
        (["eval", "--model", str(model_dir), "--task", "pope", "--data", str(pope), "--output", str(afile)],
         "is an existing file, not a folder"),
        (["eval", "--model", str(model_dir), "--task", "pope", "--data", str(tmp_path / "nodata"), "--output",
          str(tmp_path / "o")], "data not found"),
        (["eval", "--model", str(model_dir), "--task", "pope", "--data", str(pope), "--output", str(tmp_path / "o"),
          "--set", "max_new_tokens=0"], "max_new_tokens"),
        (["data", "synth", "--output", str(tmp_path / "s"), "--tile", "0"], "--tile must be a positive multiple"),
        (["data", "synth", "--output", str(tmp_path / "s"), "--tile", "12"], "--tile must be a positive multiple"),
        (["data", "synth", "--output", str(tmp_path / "s"), "--sizes", "128"], "--sizes must look like"),
        (["data", "synth", "--output", str(tmp_path / "s"), "--sizes", "8x8", "--tile", "8"], "too small"),
        (["data", "synth", "--output", str(afile)], "is an existing file"),
        (["profile", "--model", str(tmp_path / "nowhere")], "model folder not found"),
        (["profile", "--preset", "llava15-tiny", "--batch", "0"], "argument --batch"),
        (["profile", "--preset", "llava15-tiny", "--text-tokens", "-1"], "argument --text-tokens"),
        (["demo", "--train-steps", "0"], "argument --train-steps"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"loupe {argv[0]}" in err and "error:" in err and message in err, (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_message(model_dir, pope, tmp_path, capsys):
    assert main(["chat", "--model", str(model_dir), "--device", "cuda", "q"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert _eval(model_dir, pope, tmp_path / "o", "--device", "cuda") == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_corrupt_run_json_and_metrics_json_are_named(model_dir, pope, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text('{"task": "pope", ')
    assert _eval(model_dir, pope, out) == 2
    err = capsys.readouterr().err
    assert "run.json is not valid JSON" in err and "another --output" in err
    (out / "metrics.json").write_text("[1, 2")
    assert main(["eval", "--compare", str(out)]) == 2
    assert "metrics.json is not valid JSON" in capsys.readouterr().err
    (out / "metrics.json").write_text('{"task": "pope"}')
    assert main(["eval", "--compare", str(out)]) == 2
    assert "is not a loupe eval result" in capsys.readouterr().err


def test_interactive_chat_reports_a_refused_line_and_goes_on(model_dir, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("hello " * 5000 + "\nWhat colour?\n"))
    assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "2"]) == 2  # one line was refused
    captured = capsys.readouterr()
    assert "loupe chat: error:" in captured.err and "context of 4096" in captured.err
    assert len(captured.out.splitlines()) == 1  # the next question was still answered
