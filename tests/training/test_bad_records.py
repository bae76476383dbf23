"""A dataset with 5% broken records trains to the end and reports exactly those records (and can fail instead)."""

from __future__ import annotations

import json

import pytest

from loupe.errors import LoupeError


def _broken_dataset(root, n=60, seed=3):
    """``n`` records; 3 broken (5%): a missing image, a corrupt image file, a malformed conversation."""
    from loupe.data import write_tiny_dataset

    path = write_tiny_dataset(root, n=n, seed=seed)
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    with_image = [r for r in recs if isinstance(r.get("image"), str)]
    missing, corrupt, malformed = with_image[3], with_image[10], recs[20]
    (root / missing["image"]).unlink()
    (root / corrupt["image"]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    malformed["conversations"] = [{"from": "human", "value": "hi"}, {"from": "gpt"}]  # no value
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return {missing["id"]: "missing_image", corrupt["id"]: "bad_image", malformed["id"]: "malformed"}


def test_five_percent_broken_records_train_to_the_end_and_are_reported(tmp_path, tt):
    from loupe.training import run_recipe, stage_dir

    broken = _broken_dataset(tmp_path / "data")
    recipe = tt.tiny_recipe(tmp_path / "data", "stages.2.init_from=model", "stages.2.global_batch_size=4",
                            "stages.2.per_device_batch_size=4", "stages.2.data.max_bad_fraction=0.1")
    final = run_recipe(recipe, output=tmp_path / "run", stages=[1])[0]
    sdir = stage_dir(tmp_path / "run", recipe, 1)
    report = json.loads((sdir / "bad_records.json").read_text())
    assert {v["id"]: v["kind"] for v in report["records"].values()} == broken
    assert sorted(report["ids"]) == sorted(broken) and report["bad"] == 3
    assert report["seen"] == 60
    done = json.loads((sdir / "DONE.json").read_text())
    assert done["global_step"] == 15  # 58 records pass the upfront checks -> ceil(58 / 4) steps, all run
    assert done["bad_records"] == {"bad_image": 1, "malformed": 1, "missing_image": 1}
    assert (final / "model.safetensors").is_file()


def test_fail_mode_and_threshold(tmp_path, tt):
    from loupe.training import run_recipe

    broken = _broken_dataset(tmp_path / "data")
    base = ["stages.2.init_from=model", "stages.2.global_batch_size=4", "stages.2.per_device_batch_size=4"]
    first = sorted(k for k, v in broken.items() if v != "bad_image")
    recipe = tt.tiny_recipe(tmp_path / "data", *base, "stages.2.data.on_bad_record=fail")
    with pytest.raises(LoupeError, match="on_bad_record is 'fail'") as e:  # found by the upfront pass
        run_recipe(recipe, output=tmp_path / "a", stages=[1])
    assert any(rid in str(e.value) for rid in first)
    recipe = tt.tiny_recipe(tmp_path / "data", *base, "stages.2.data.max_bad_fraction=0.01")
    with pytest.raises(LoupeError, match="max_bad_fraction"):
        run_recipe(recipe, output=tmp_path / "b", stages=[1])


def test_lazy_fail_names_the_record(tmp_path, tt):
    from loupe.training import run_recipe

    broken = _broken_dataset(tmp_path / "data")
    corrupt = next(k for k, v in broken.items() if v == "bad_image")
    # only the corrupt file is left broken: it passes the upfront checks and fails when decoded
    data = tmp_path / "data" / "train.jsonl"
    recs = [json.loads(x) for x in data.read_text().splitlines()]
    recs = [r for r in recs if r["id"] == corrupt or r["id"] not in broken]
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    recipe = tt.tiny_recipe(tmp_path / "data", "stages.2.init_from=model", "stages.2.data.on_bad_record=fail")
    with pytest.raises(LoupeError, match=f"{corrupt}.*bad_image"):
        run_recipe(recipe, output=tmp_path / "run", stages=[1])


def test_batches_with_only_bad_records_still_step(tmp_path, tt):
    """Every image corrupt: image batches become empty (one pad row, zero loss); text batches train."""
    from loupe.data import write_tiny_dataset
    from loupe.training import run_recipe, stage_dir

    path = write_tiny_dataset(tmp_path / "data", n=16, seed=0, text_every=4, multi_every=0)
    for png in (tmp_path / "data" / "images").glob("*.png"):
        png.write_bytes(b"garbage")
    recipe = tt.tiny_recipe(tmp_path / "data", "stages.2.init_from=model", "stages.2.global_batch_size=4",
                            "stages.2.per_device_batch_size=4", "stages.2.data.max_bad_fraction=1.0")
    run_recipe(recipe, output=tmp_path / "run", stages=[1])
    sdir = stage_dir(tmp_path / "run", recipe, 1)
    report = json.loads((sdir / "bad_records.json").read_text())
    assert len(report["records"]) == 12 and set(report["counts"]) == {"bad_image"}
    assert json.loads((sdir / "DONE.json").read_text())["global_step"] == 4
    assert path.is_file()
