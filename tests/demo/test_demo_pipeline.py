"""``loupe demo`` end to end at toy budgets: every stage runs, files are written, token counts agree with
the processor. (Learning itself is measured by the full demo, see the README and the issue notes.)"""

import json

import pytest
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
    # INF-LLaVA's DEM gets its stage 1 (and only it)
    assert [p for p, v in result["pretrain"].items() if "dem" in v] == ["demo-inf-llava"]
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


def test_convnext_stage_outputs_and_deep_supervision_labels():
    """The ConvLLaVA arm's encoder exposes every stage (the last one is its output); deep supervision labels the
    cell holding the tag's centre with the digit, at every stage and at the connector's pooled grid."""
    from loupe.demo.pretrain import NONE, ViewHeads, view_labels

    model, proc = loupe.build("demo-convllava")
    enc = model.vision_tower
    x = torch.randn(2, 3, 256, 256)
    outs = enc.stage_outputs(x)
    assert [tuple(o.shape[1:3]) for o in outs] == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
    assert torch.equal(outs[-1], enc(x))
    # a 160x96 image on the 256 canvas at (48, 80); a tag at (104, 40)-(112, 48): centre (108, 44) -> canvas (156, 124)
    rec = {"tag_box": [104, 40, 112, 48], "digit": "7", "side": "left"}
    (layout,) = proc.image_processor.process([torch.zeros(96, 160, 3, dtype=torch.uint8).numpy()])[1]
    (lab,) = view_labels(layout, rec)
    assert lab[:2] == (7, 0) and abs(lab[2] - 156 / 256) < 1e-9 and abs(lab[3] - 124 / 256) < 1e-9
    heads = ViewHeads(enc, enc.out_dim, dense=True, pool=2)
    maps = heads.maps(x[:1])
    assert [tuple(m.shape[1:3]) for m in maps][-1] == (2, 2)  # the 4x4 output pooled as the connector pools
    where = torch.tensor([lab[2:]])
    for m in maps:
        cells = ViewHeads.cell_labels(m, torch.tensor([7]), where)[0]
        h = m.shape[1]
        assert (cells == 7).sum() == 1 and cells[int(124 / 256 * h), int(156 / 256 * h)] == 7
        assert (cells == NONE).sum() == h * h - 1
    assert heads(x[:1], [layout], torch.tensor([7]), torch.tensor([0]), where)["loss"].isfinite()


def test_seed_aggregate_mean_std_and_margin():
    from loupe.demo.run import aggregate, markdown_table_seeds

    def result(seed, base, anyres):
        rows = [{"method": m, "preset": p, "visual_tokens": t, "gflops_per_image": 0.1, "encoder_tag_accuracy": 100.0,
                 "train_seconds": 10.0, "accuracy": {"detail": d, "layout": 100.0, "overall": (d + 100) / 2}}
                for m, p, t, d in (("base", "demo-lowres", 4, base), ("tiles", "demo-anyres", 65, anyres))]
        return {"config": {"seed": seed, "output": "x"}, "rows": rows, "total_seconds": 60.0}

    agg = aggregate([result(0, 8.0, 100.0), result(1, 10.0, 90.0), result(2, 12.0, 80.0)])
    base, tiles = agg["rows"]
    assert agg["seeds"] == [0, 1, 2]
    assert (base["detail"], base["detail_std"]) == (10.0, 2.0)
    assert (tiles["detail"], tiles["detail_std"], tiles["detail_over_baseline"]) == (90.0, 10.0, 80.0)
    assert tiles["detail_by_seed"] == [100.0, 90.0, 80.0]
    table = markdown_table_seeds(agg)
    assert "| 90.0 ± 10.0 |" in table and "+80.0" in table and "100.0 / 90.0 / 80.0" in table


def test_cli_demo_seeds_are_checked(tmp_path, capsys):
    from loupe.cli.main import main

    assert main(["demo", "--quick", "--output", str(tmp_path), "--seeds", "0,0"]) == 2
    assert "seeds listed twice" in capsys.readouterr().err
    assert main(["demo", "--quick", "--output", str(tmp_path), "--seeds", "x"]) == 2


def test_dem_stage1_labels_the_tag_cell_of_the_fused_map():
    """INF-LLaVA's DEM pretraining names the digit at the fused-map cell that holds the tag's centre (the map covers
    the DCM canvas: here the image itself, 5x3 tiles of 32 px -> an 8x8 output grid)."""
    from loupe.demo.pretrain import NONE, DEMCells, ViewHeads, canvas_where

    model, proc = loupe.build("demo-inf-llava")
    feats, (layout,) = proc.image_processor.process([torch.zeros(96, 160, 3, dtype=torch.uint8).numpy()])
    rec = {"tag_box": [136, 8, 144, 16]}  # centre (140, 12): x 140/160 -> column 7 of 8, y 12/96 -> row 1 of 8
    where = canvas_where(layout, rec)
    assert where == (140 / 160, 12 / 96)
    cells = DEMCells(model.vision_tower, model.connector)
    (m,) = cells.maps(feats["pixel_values"], [layout])
    assert tuple(m.shape[:2]) == (8, 8)
    lab = ViewHeads.cell_labels(m[None], torch.tensor([3]), torch.tensor([where]))[0]
    assert lab[1, 7] == 3 and (lab == NONE).sum() == 63
    out = cells(feats["pixel_values"], [layout], torch.tensor([3]), torch.tensor([where]))["loss"]
    out.backward()
    assert model.connector.spatial_embed.attention.linears[0].weight.grad is not None
    assert all(p.grad is None for p in model.vision_tower.parameters())  # the encoder stays as pretrained


def test_convllava_arm_trains_with_its_encoder_frozen_as_its_stage3(tmp_path, monkeypatch):
    """ConvLLaVA's instruct stage freezes the ConvNeXt (its paper's stage 3); the other arms train every part."""
    import loupe
    import loupe.training as training
    from loupe.demo.run import DemoConfig, train_arm

    seen = {}

    class Stop(Exception):
        pass

    def capture(recipe, output=None):
        seen[recipe.name] = sorted(recipe.stages[0].parts)
        raise Stop

    monkeypatch.setattr(training, "run_recipe", capture)
    cfg = DemoConfig(output=str(tmp_path))
    for preset in ("demo-convllava", "demo-lowres"):
        model, proc = loupe.build(preset)
        with pytest.raises(Stop):
            train_arm(preset, model, proc, cfg, tmp_path / preset, tmp_path, [], tmp_path, {"seconds": 0})
    assert seen == {"demo-demo-convllava": ["connector", "language_model"],
                    "demo-demo-lowres": ["connector", "language_model", "vision_tower"]}
    with pytest.raises(loupe.LoupeError, match=r"frozen_vision: unknown arm\(s\) \['demo-convlava'\]"):
        DemoConfig(frozen_vision=["demo-convlava"])
