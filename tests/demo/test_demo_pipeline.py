"""``loupe demo`` end to end at toy budgets: every stage runs, files are written, token counts agree with
the processor. (Learning itself is measured by the full demo, see the README and the issue notes.)"""

import json

import torch

import loupe
from loupe.data.synth import SynthConfig, generate, render
from loupe.demo.run import ARMS, DemoConfig, run_demo


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


def test_synth_straddle_and_shift_place_tags_where_they_say(tmp_path):
    """straddle: across a vertical tile border, 4 px in each tile; corner: across both borders; shift: half a
    patch off the grid but inside one tile (the straddlers' phase, never cut)."""
    def boxes(**kw):
        d = generate(tmp_path / str(len(list(tmp_path.iterdir()))), SynthConfig(n_train=40, n_test=0, sizes=[[96, 96]], **kw))
        return [r["tag_box"] for r in json.loads(open(d["train"]["path"]).read())]
    for x0, y0, x1, y1 in boxes(straddle=1.0):
        assert x0 % 32 == 28 and x1 % 32 == 4 and y0 % 8 == 0
    for x0, y0, x1, y1 in boxes(straddle=1.0, straddle_corner=True):
        assert x0 % 32 == 28 and y0 % 32 == 28
    shifted = boxes(shift=1.0)
    for x0, y0, x1, y1 in shifted:
        assert x0 % 8 == 4 and x0 // 32 == (x1 - 1) // 32 and y0 % 8 == 0 and y0 // 32 == (y1 - 1) // 32
    assert len({x0 % 32 for x0, *_ in shifted}) == 3  # every half-patch slot of a tile
    assert boxes(shift=0.0) == boxes()  # shift=0 draws nothing: the default data are unchanged


def test_demo_runs_end_to_end_at_toy_budget(tmp_path):
    """Every arm (each method's demo preset) through pretraining, its recipe, evaluation and the table."""
    cfg = DemoConfig(output=str(tmp_path / "demo"), n_train=72, n_test=4, pretrain_steps=1, train_steps=1, batch_size=4)
    result = run_demo(cfg, log=lambda *a: None)
    rows = {r["preset"]: r for r in result["rows"]}
    assert list(rows) == [p for _, p in ARMS]
    # encoders: the four tinyconv arms share one pretraining; ConvLLaVA and FILA bring their own
    groups = {tuple(v["group"]) for v in result["pretrain"].values()}
    assert groups == {("demo-lowres", "demo-anyres", "demo-inf-llava", "demo-uhd-v2"), ("demo-convllava",),
                      ("demo-fila",)}
    for preset, row in rows.items():
        proc = loupe.build_processor(preset)
        for size, n in row["visual_tokens_by_size"].items():
            w, h = map(int, size.split("x"))
            assert n == proc.num_image_tokens((w, h))
        assert set(row["accuracy"]) == {"detail", "layout", "overall"} and row["gflops_per_image"] > 0
    tokens = {p: r["visual_tokens_by_size"]["128x128"] for p, r in rows.items()}
    assert tokens == {"demo-lowres": 4, "demo-anyres": 68, "demo-inf-llava": 64, "demo-convllava": 4,
                      "demo-uhd-v2": 84, "demo-fila": 68}
    for f in ("results.json", "results.md"):
        assert (tmp_path / "demo" / f).exists()
    assert all(r["method"] in (tmp_path / "demo" / "results.md").read_text() for r in result["rows"])


def test_cli_data_synth(tmp_path, capsys):
    from loupe.cli.main import main

    assert main(["data", "synth", "--output", str(tmp_path), "--n-train", "3", "--n-test", "2"]) == 0
    assert (tmp_path / "train.json").exists() and "train: 3 records" in capsys.readouterr().out
    assert main(["data", "synth", "--output", str(tmp_path), "--sizes", "100x30"]) == 2


def test_same_seed_same_table_and_weights(tmp_path):
    """Two runs with one seed: identical trained weights, predictions and table (any unseeded randomness fails it)."""
    from safetensors.torch import load_file

    runs = []
    for name in ("a", "b"):
        cfg = DemoConfig(output=str(tmp_path / name), n_train=80, n_test=6, pretrain_steps=3, train_steps=3,
                         batch_size=4, arms=["demo-lowres", "demo-anyres"])
        runs.append(run_demo(cfg, log=lambda *a: None))
    for preset in ("demo-lowres", "demo-anyres"):
        w = [load_file(str(next((tmp_path / n / preset / "train").rglob("model.safetensors")))) for n in ("a", "b")]
        assert w[0].keys() == w[1].keys() and all(torch.equal(w[0][k], w[1][k]) for k in w[0])
        p = [(tmp_path / n / preset / "predictions.json").read_text() for n in ("a", "b")]
        assert p[0] == p[1]
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(runs[0]["rows"]) == strip(runs[1]["rows"])
    # a different seed trains different weights
    cfg = DemoConfig(output=str(tmp_path / "c"), seed=1, n_train=80, n_test=6, pretrain_steps=3, train_steps=3,
                     batch_size=4, arms=["demo-lowres"])
    run_demo(cfg, log=lambda *a: None)
    wc = load_file(str(next((tmp_path / "c" / "demo-lowres" / "train").rglob("model.safetensors"))))
    wa = load_file(str(next((tmp_path / "a" / "demo-lowres" / "train").rglob("model.safetensors"))))
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_cli_demo_rejects_unknown_arm(tmp_path, capsys):
    from loupe.cli.main import main

    assert main(["demo", "--quick", "--output", str(tmp_path), "--arms", "demo-lowres", "llava-next-7b"]) == 2
    err = capsys.readouterr().err
    assert "llava-next-7b" in err and "demo-anyres" in err


def test_rerun_keeps_finished_arms_and_retrains_changed_settings(tmp_path, monkeypatch):
    """A second run in the same folder with the same settings reuses every finished arm (no training); other
    settings train again."""
    import loupe.training as training

    cfg = DemoConfig(output=str(tmp_path / "d"), n_train=72, n_test=4, pretrain_steps=1, train_steps=1, batch_size=4,
                     arms=["demo-lowres", "demo-anyres"])
    first = run_demo(cfg, log=lambda *a: None)
    (tmp_path / "d" / "demo-anyres" / "row.json").unlink()  # as if killed while training anyres

    calls = []
    real = training.run_recipe
    monkeypatch.setattr(training, "run_recipe", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    second = run_demo(cfg, log=lambda *a: None)
    assert calls == ["demo-demo-anyres"]
    assert second["rows"][0] == first["rows"][0]
    calls.clear()
    run_demo(DemoConfig(**{**cfg.__dict__, "train_steps": 2}), log=lambda *a: None)
    assert calls == ["demo-demo-lowres", "demo-demo-anyres"]


def test_bad_demo_and_synth_settings_are_named(tmp_path, capsys):
    import pytest

    from loupe.cli.main import main
    from loupe.errors import LoupeError

    for kw, msg in (({"train_steps": -5}, "train_steps"), ({"n_train": 10}, "n_train"), ({"arms": []}, "arm")):
        with pytest.raises(LoupeError, match=msg):
            DemoConfig(**kw)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--quick", "--output", str(blocker / "out")]) == 2
    assert "cannot create the demo output folder" in capsys.readouterr().err
    assert main(["data", "synth", "--output", str(tmp_path / "s"), "--n-train", "-3"]) == 2
    assert "n_train" in capsys.readouterr().err
    for kw in ({"straddle": 1.5}, {"shift": -0.1}):
        with pytest.raises(LoupeError, match=next(iter(kw))):
            SynthConfig(**kw)
    assert main(["data", "synth", "--output", str(tmp_path / "s"), "--shift", "2"]) == 2
    assert "shift is a share" in capsys.readouterr().err
