"""``loupe compare`` end to end at a toy budget (2 methods, 2 budgets, 1 seed): table, plots and json; a rerun keeps
finished (method, budget, seed) cells; the real-size cost table; bad input named."""

import json

import pytest

from loupe.demo.compare import CompareConfig, pareto, real_size_costs, run_compare

TOY = dict(n_train=72, n_test=4, pretrain_steps=1, train_steps=1, batch_size=4, seeds=[0],
           arms=["demo-lowres", "demo-anyres"], real_size=[])


def test_compare_end_to_end_and_resume(tmp_path, monkeypatch):
    import loupe.training as training

    out = tmp_path / "cmp"
    cfg = CompareConfig(output=str(out), budgets=[4, 16], **TOY)
    first = run_compare(cfg, log=lambda *a: None)
    for f in ("results.json", "results.md", "accuracy_vs_tokens.png", "accuracy_vs_gflops.png"):
        assert (out / f).stat().st_size > 0, f
    res = json.loads((out / "results.json").read_text())
    summ = {(s["preset"], s["budget"]): s for s in res["summary"]}
    # anyres cannot go below 16 tokens on the benchmark's sizes: no row at 4, the minimum named
    assert summ["demo-anyres", 4]["minimum"] == 16 and summ["demo-anyres", 4]["seeds"] == 0
    assert summ["demo-lowres", 4]["visual_tokens_max"] == 4 and summ["demo-lowres", 16]["visual_tokens_max"] == 16
    assert summ["demo-anyres", 16]["visual_tokens_max"] == 16 and summ["demo-anyres", 16]["below_budget"] == 0
    for s in res["summary"]:
        if "knobs" in s:
            assert s["visual_tokens_max"] <= s["budget"] and 0 <= s["detail"] <= 100 and s["detail_std"] == 0.0
            assert s["gflops_per_image"] > 0
    trained = [c for c in res["cells"] if "error" not in c]
    assert len(trained) == 3 and all(c["visual_tokens"] == c["fit"]["mean_tokens"] for c in trained)
    md = (out / "results.md").read_text()
    assert "below its minimum (16 tokens)" in md and "| LLaVA-1.5 (pad, 1 view) | 16 | pool=1 | 16 / 16 (0) |" in md
    # every cell started from the same language model
    import torch
    from safetensors.torch import load_file

    inits = [load_file(str(p)) for p in sorted(out.glob("seed0/budget*/*/init/model.safetensors"))]
    assert len(inits) == 3
    lm = [{k: v for k, v in sd.items() if k.startswith("language_model.")} for sd in inits]
    assert all(torch.equal(lm[0][k], other[k]) for other in lm[1:] for k in lm[0])

    # rerun with the same settings: every finished cell kept, nothing trained
    calls = []
    real = training.run_recipe
    monkeypatch.setattr(training, "run_recipe", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    again = run_compare(cfg, log=lambda *a: None)
    assert calls == [] and again["cells"] == first["cells"]
    # one more budget: only its new configurations are trained (the baseline's ceiling is 16 tokens: reused)
    third = run_compare(CompareConfig(output=str(out), budgets=[4, 16, 64], **TOY), log=lambda *a: None)
    assert calls == ["demo-demo-anyres"]
    low = [c for c in third["cells"] if c["preset"] == "demo-lowres"]
    assert [c["budget"] for c in low] == [4, 16, 64] and low[2]["same_as_budget"] == 16
    assert low[2]["accuracy"] == low[1]["accuracy"] and low[2]["fit"]["below_budget"] == 48


def test_real_size_cost_is_fitted_profiled_and_cached(tmp_path, monkeypatch):
    recs = real_size_costs(["llava15-tiny", "llava-next-tiny"], tmp_path, log=lambda *a: None)
    by = {(r["preset"], r["budget"]): r for r in recs}
    assert len(recs) == 6 and (tmp_path / "real_size.json").is_file()
    for r in recs:
        if "tokens" in r:
            assert r["tokens"] <= r["budget"] and r["paper_tflops"] > 0 and r["image_size"] == [1008, 672]
    assert by["llava15-tiny", 576]["tokens"] == 16  # one 56 px view, pool 1: the preset's ceiling
    # a second call profiles nothing (cached by fitted configuration)
    import loupe.profiling as profiling

    monkeypatch.setattr(profiling, "profile", lambda *a, **k: pytest.fail("profiled again"))
    assert real_size_costs(["llava15-tiny", "llava-next-tiny"], tmp_path, log=lambda *a: None) == recs


def test_pareto_front():
    assert pareto([(4, 10), (16, 50), (64, 40), (64, 90), (256, 90)]) == [(4, 10), (16, 50), (64, 90)]


def test_bad_compare_settings_are_named(tmp_path, capsys):
    from loupe.cli.main import main
    from loupe.errors import LoupeError

    for argv, msg in ((["--budgets", "16,0"], "budgets must be >= 1"), (["--budgets", "x"], "expected an integer"),
                      (["--seeds", "0,0"], "listed twice"), (["--presets", "demo-nope"], "unknown compare preset")):
        assert main(["compare", "--output", str(tmp_path / "o"), *argv]) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(LoupeError, match="budgets must be positive"):
        CompareConfig(budgets=[16, 2.5])
    with pytest.raises(LoupeError, match="n_train"):
        CompareConfig(n_train=10)
