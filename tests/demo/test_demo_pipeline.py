"""``loupe demo`` end to end at toy budgets: every stage runs, files are written, token counts agree with
the processor. (Learning itself is measured by the full demo, see the README and the issue notes.)"""

import json

import loupe
from loupe.data.synth import SynthConfig, generate, render
from loupe.demo.run import DemoConfig, run_demo


def test_synth_is_deterministic_and_tags_are_grid_aligned(tmp_path):
    a = generate(tmp_path / "a", SynthConfig(n_train=6, n_test=3, sizes=[[128, 128], [160, 96]]))
    b = generate(tmp_path / "b", SynthConfig(n_train=6, n_test=3, sizes=[[128, 128], [160, 96]]))
    ra, rb = json.loads(open(a["test"]["path"]).read()), json.loads(open(b["test"]["path"]).read())
    assert ra == rb and len(ra) == 6
    assert (tmp_path / "a/images/train_00000.png").read_bytes() == (tmp_path / "b/images/train_00000.png").read_bytes()
    for r in ra:
        x0, y0, x1, y1 = r["tag_box"]
        assert x0 % 8 == 0 and y0 % 8 == 0 and x0 // 32 == (x1 - 1) // 32 and y0 // 32 == (y1 - 1) // 32
    train = json.loads(open(a["train"]["path"]).read())
    assert all(len(r["conversations"]) == 4 for r in train)


def test_demo_runs_end_to_end_at_toy_budget(tmp_path):
    cfg = DemoConfig(output=str(tmp_path / "demo"), n_train=72, n_test=4, pretrain_steps=2, train_steps=2, batch_size=4)
    result = run_demo(cfg, log=lambda *a: None)
    rows = {r["preset"]: r for r in result["rows"]}
    assert set(rows) == {"demo-lowres", "demo-anyres"}
    for preset, row in rows.items():
        proc = loupe.build_processor(preset)
        for size, n in row["visual_tokens_by_size"].items():
            w, h = map(int, size.split("x"))
            assert n == proc.num_image_tokens((w, h))
        assert set(row["accuracy"]) == {"detail", "layout", "overall"}
    assert rows["demo-anyres"]["visual_tokens"] > rows["demo-lowres"]["visual_tokens"] == 4
    for f in ("results.json", "results.md"):
        assert (tmp_path / "demo" / f).exists()


def test_cli_data_synth(tmp_path, capsys):
    from loupe.cli.main import main

    assert main(["data", "synth", "--output", str(tmp_path), "--n-train", "3", "--n-test", "2"]) == 0
    assert (tmp_path / "train.json").exists() and "train: 3 records" in capsys.readouterr().out
    assert main(["data", "synth", "--output", str(tmp_path), "--sizes", "100x30"]) == 2
