"""``loupe profile`` end to end on tiny presets: terminal table, JSON, Markdown, README table, plots, latency."""

import json

import pytest
import torch

import loupe
from loupe.cli.main import main
from loupe.profiling import profile, report


def test_cli_writes_every_output(tmp_path, capsys):
    out = tmp_path / "prof"
    rc = main(["profile", "--preset", "llava15-tiny", "--preset", "llava-next-tiny", "--sizes", "56x56,112x56",
               "--text-tokens", "8", "--batch", "2", "--output", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "llava-next-tiny" in printed and "paper TFLOPs" in printed
    recs = json.loads((out / "profile.json").read_text())
    assert len(recs) == 4
    for r in recs:
        assert {"preset", "image_size", "visual_tokens", "paper_tflops", "full_tflops", "params"} <= set(r)
        assert r["batch"] == 2 and r["sequence_length"] == r["visual_tokens"] + 8
    table = (out / "README_table.md").read_text()
    assert table.startswith("| Method (preset) |") and "`llava-next-tiny`" in table
    assert "Conventions" in (out / "profile.md").read_text()
    for name in ("tokens", "tflops", "memory"):
        assert (out / f"{name}_vs_resolution.png").stat().st_size > 1000


def test_cli_needs_a_preset(capsys):
    assert main(["profile"]) == 2
    assert "--preset" in capsys.readouterr().err


def test_saved_model_is_timed(tmp_path):
    torch.manual_seed(0)
    model, proc = loupe.build("llava15-tiny")
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    (r,) = profile(None, "56x56", text_tokens=4, model_dir=tmp_path, latency_reps=2)
    lat = r["latency"]
    assert r["preset"] == "llava15-tiny" and lat["device"] == "cpu" and lat["latency_s"] > 0
    assert lat["images_per_s"] == pytest.approx(1 / lat["latency_s"])
    assert "prefill" in report.latency_line(r)


def test_demo_flops_come_from_the_profiler():
    from loupe.demo.run import flops_per_image

    (r,) = profile("demo-anyres", [(128, 128)], text_tokens=16)
    assert flops_per_image("demo-anyres", (128, 128)) == pytest.approx(r["full_tflops"] * 1e3)
    # every part has an analytic flops() (the contract); tinyconv's equals the counted meta run exactly
    assert all(c["analytic"] is not None and c["gap"] == 0.0 for c in r["checks"])
