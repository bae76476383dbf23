"""Every benchmark task: a tiny fixture in the official schema runs end to end through ``loupe eval`` on a tiny
model; a perfect model scores perfectly under every protocol; prompts match the reference strings; protocol
records are written next to scores and differences between them are reported."""

from __future__ import annotations

import json
import math

import pytest
import torch

from loupe.evaluation.fixtures import WRITERS, oracle, write_fixture
from loupe.evaluation.protocols import PROTOCOLS, differences, get_protocol
from loupe.evaluation.runner import load_docs
from loupe.evaluation.tasks import get_task

WITH_CATEGORIES = {"docvqa", "chartqa", "ocrbench", "ai2d", "scienceqa_img", "mmbench", "mme", "pope", "seedbench",
                   "realworldqa", "refcoco", "loupe_synth"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls on a shared 2-core box: 1 thread is ~50x faster than 2
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
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return {name: write_fixture(name, root / name) for name in WRITERS}


@pytest.mark.parametrize("task", sorted(WRITERS))
def test_fixture_runs_end_to_end_through_loupe_eval(task, model_dir, fixtures, tmp_path):
    from loupe.cli.main import main

    out = tmp_path / "out"
    rc = main(["eval", "--model", str(model_dir), "--task", task, "--data", str(fixtures[task]), "--output", str(out),
               "--set", "max_new_tokens=3", "--batch-size", "2", "--no-progress"])
    assert rc == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["task"] == get_task(task).name
    assert result["malformed"]["count"] == 0, result["malformed"]
    assert result["n_scored"] == result["n_records"] > 0
    assert result["primary"] in result["metrics"]
    assert result["protocol"]["id"] == "llava15@1+max_new_tokens=3"
    assert result["protocol"]["task_settings"]["max_new_tokens"] == 3
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == result["n_records"] == len({r["id"] for r in rows})
    assert all(isinstance(r["prediction"], str) and r["prompt"] for r in rows)
    md = (out / "results.md").read_text()
    assert "llava15@1+max_new_tokens=3" in md and "(primary)" in md
    if task in WITH_CATEGORIES:
        assert result["categories"] and "| category |" in md


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("task", sorted(WRITERS))
def test_a_perfect_model_scores_perfectly(task, protocol, fixtures):
    the_task, proto = get_task(task), get_protocol(protocol)
    docs, problems = load_docs(the_task, fixtures[task], None)
    assert not problems
    out = the_task.score(docs, {d.id: oracle(task, d, proto) for d in docs}, proto)
    value = out["metrics"][out["primary"]]
    expected = {"ocrbench": len(docs), "mme": 400.0}.get(task, 1.0)  # OCRBench sums hits; MME 200 per category
    # exact and finite: a NaN (or a near miss) must fail here, so no approx and no negated comparison
    assert isinstance(value, (int, float)) and math.isfinite(value) and value == expected, (task, protocol, out)
    assert all(math.isfinite(v) for v in out["metrics"].values() if isinstance(v, (int, float))), out["metrics"]
    wrong = the_task.score(docs, {d.id: "zzz" for d in docs}, proto)["metrics"]
    wrong_value = wrong[out["primary"]]
    if (task, protocol) == ("refcoco", "uhd-v2"):  # UHD v2 skips every unparsable box: nothing left to average
        assert math.isnan(wrong_value)
    else:  # "zzz" is a "yes" to LLaVA's POPE parser (no "no"/"not" in it): F1 2/3 with half the labels yes
        pope_yes = task == "pope" and protocol in ("llava15", "uhd-v2")
        assert wrong_value == (pytest.approx(2 / 3) if pope_yes else 0), (task, protocol, wrong)


def test_loaders_read_the_published_layouts(fixtures):
    docs, _ = load_docs(get_task("seedbench"), fixtures["seedbench"], None)
    assert [d.id for d in docs] == ["100", "101", "102"]  # the video question is not an image question
    assert {d.category for d in docs} == {"Scene Understanding", "Instance Identity"}
    docs, _ = load_docs(get_task("scienceqa_img"), fixtures["scienceqa_img"], None)
    assert [d.id for d in docs] == ["10", "11"]  # pid 12 has no image: not in SQA-IMG
    docs, _ = load_docs(get_task("mmbench"), fixtures["mmbench"], None)
    assert sorted(d.data["index"] for d in docs) == [0, 1, 1000000, 2000000]
    assert all(d.images[0].startswith("base64:iVBOR") for d in docs)  # copies resolve to the original's image
    docs, _ = load_docs(get_task("textvqa"), fixtures["textvqa"], None)
    assert [d.id for d in docs] == ["34602", "34603", "34604"]  # annotation ids, matched by (image, question)
    docs, _ = load_docs(get_task("mme"), fixtures["mme"], None)
    assert len(docs) == 6 and {d.data["image_key"] for d in docs} >= {"artwork/10002.jpg", "existence/000000006040.jpg"}


def _prompt(task, fixtures, protocol, index=0, *overrides):
    docs, _ = load_docs(get_task(task), fixtures[task], None)
    return get_task(task).prompt(docs[index], get_protocol(protocol, overrides))


def test_prompts_follow_each_reference(fixtures):
    short = "\nAnswer the question using a single word or phrase."
    mcq = "\nAnswer with the option's letter from the given choices directly."
    # TextVQA: LLaVA's OCR line is on for llava15 and off for lmms-eval (which capitalises the question)
    assert _prompt("textvqa", fixtures, "llava15") == \
        "what is written on the sign?\nReference OCR token: STOP, sign" + short
    assert _prompt("textvqa", fixtures, "llava15", 0, "ocr_tokens=false") == "what is written on the sign?" + short
    assert _prompt("textvqa", fixtures, "lmms-eval") == "What is written on the sign?" + short
    assert _prompt("textvqa", fixtures, "lmms-eval", 0, "ocr_tokens=true") == \
        "What is written on the sign?\nReference OCR token: STOP, sign" + short
    # MMBench: lmms-eval's "There are several options:" and the blank line before the suffix
    assert _prompt("mmbench", fixtures, "lmms-eval") == ("The image shows a pet. Which animal is shown? There are "
                                                         "several options:\nA. cat\nB. dog\nC. bird\n" + mcq)
    assert _prompt("mmbench", fixtures, "vlmevalkit") == \
        "The image shows a pet.\nWhich animal is shown?\nA. cat\nB. dog\nC. bird" + mcq
    # ScienceQA: LLaVA's CQM-A conversion vs lmms-eval's Context line
    assert _prompt("scienceqa_img", fixtures, "llava15") == ("Context: Look at the picture.\nQuestion: Which animal is "
                                                             "a mammal?\nOptions: (A) frog (B) dog (C) snake" + mcq)
    assert _prompt("scienceqa_img", fixtures, "llava15", 1).startswith("Context: N/A\n")
    assert _prompt("scienceqa_img", fixtures, "lmms-eval") == \
        "Context: Look at the picture.\nWhich animal is a mammal?\nA. frog\nB. dog\nC. snake" + mcq
    # MME: " Please answer yes or no." replaced for LLaVA / lmms-eval, kept for VLMEvalKit
    assert _prompt("mme", fixtures, "llava15") == "Is this artwork created by da Vinci?" + short
    assert _prompt("mme", fixtures, "vlmevalkit").endswith("? Please answer yes or no.")
    assert _prompt("chartqa", fixtures, "lmms-eval").endswith("\nAnswer the question with a single word.")
    assert _prompt("refcoco", fixtures, "llava15") == \
        "Please provide the bounding box coordinate of the region this sentence describes: left dog."
    assert _prompt("realworldqa", fixtures, "vlmevalkit") == \
        "In which direction is the car facing?\nA. Left\nB. Straight\nC. Right" + mcq


def test_rec_frame_is_an_explicit_protocol_setting(fixtures):
    task = get_task("refcoco")
    docs, _ = load_docs(task, fixtures["refcoco"], None)
    square = get_protocol("llava15")
    original = get_protocol("llava15", ["coord_frame=original"])
    preds = {d.id: oracle("refcoco", d, square) for d in docs}  # boxes in the padded-square frame
    assert task.score(docs, preds, square)["metrics"]["acc@0.5"] == 1.0
    assert task.score(docs, preds, original)["metrics"]["acc@0.5"] < 1.0
    unparsable = task.score(docs, {d.id: "no idea" for d in docs}, square)["metrics"]
    assert unparsable["acc@0.5"] == 0.0 and unparsable["unparsable"] == len(docs)  # counted wrong
    skipped = task.score(docs, {d.id: "no idea" for d in docs}, get_protocol("uhd-v2"))["metrics"]
    assert skipped["skipped"] == len(docs)  # UHD v2's eval_rec.py skips them


def test_protocol_records_and_differences():
    a = get_protocol("llava15")
    b = get_protocol("llava15", ["ocr_tokens=false", "max_new_tokens=16"])
    assert b.id == "llava15@1+max_new_tokens=16+ocr_tokens=False"
    ta, tb = get_task("textvqa"), get_task("textvqa")
    from loupe.evaluation.protocols import record

    ra, rb = record(a, ta.settings(a)), record(b, tb.settings(b))
    diff = differences(ra, rb)
    assert any(d.startswith("ocr_tokens") for d in diff) and any(d.startswith("task.ocr_tokens") for d in diff)
    assert differences(ra, record(a, ta.settings(a))) == []
    assert differences(record(get_protocol("lmms-eval"), {}), record(get_protocol("vlmevalkit"), {}))
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nope")
    with pytest.raises(ValueError, match="settable"):
        get_protocol("llava15", ["colour=blue"])
    with pytest.raises(ValueError, match="greedy"):
        get_protocol("llava15", ["num_beams=4"])
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")


def test_compare_flags_results_under_different_protocols(model_dir, fixtures, tmp_path, capsys):
    from loupe.cli.main import main

    outs = []
    for i, extra in enumerate([[], [], ["--set", "ocr_tokens=false"]]):
        out = tmp_path / f"r{i}"
        assert main(["eval", "--model", str(model_dir), "--task", "textvqa", "--data", str(fixtures["textvqa"]),
                     "--output", str(out), "--set", "max_new_tokens=2", "--no-progress", *extra]) == 0
        outs.append(str(out))
    capsys.readouterr()
    assert main(["eval", "--compare", outs[0], outs[1]]) == 0
    assert "share one protocol" in capsys.readouterr().out
    assert main(["eval", "--compare", *outs]) == 0
    text = capsys.readouterr().out
    assert "Not comparable" in text and "ocr_tokens" in text
    # the same folder cannot be resumed under another protocol
    assert main(["eval", "--model", str(model_dir), "--task", "textvqa", "--data", str(fixtures["textvqa"]),
                 "--output", outs[0], "--protocol", "lmms-eval", "--no-progress"]) == 2
