"""``loupe convert`` on bad input: each a clear ``error:`` naming the problem (exit 2), and DST never half-written."""

import json
import shutil

import pytest

import loupe
from loupe.cli.main import main as cli
from loupe.convert import common, llava_hf


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _fails(capsys, argv, *words):
    assert cli(["convert", *argv]) == 2
    err = capsys.readouterr().err
    assert "loupe convert: error:" in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def _no_partial(parent, name):
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.partial-")]


def test_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(capsys, [str(tmp_path / "empty"), str(tmp_path / "dst"), "--from", "llava-hf"], "no config.json")
    _fails(capsys, [str(tmp_path / "nowhere"), str(tmp_path / "dst"), "--from", "llava-hf"], "nowhere")
    _no_partial(tmp_path, "dst")


def test_config_without_weights(llava_hf_folders, tmp_path, capsys):
    src = _copy(llava_hf_folders["llava"], tmp_path / "src")
    (src / "model.safetensors").unlink()
    _fails(capsys, [str(src), str(tmp_path / "dst"), "--from", "llava-hf"], "is not a checkpoint", "safetensors")
    _no_partial(tmp_path, "dst")


def test_truncated_safetensors(llava_hf_folders, tmp_path, capsys):
    src = _copy(llava_hf_folders["llava"], tmp_path / "src")
    f = src / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    _fails(capsys, [str(src), str(tmp_path / "dst"), "--from", "llava-hf"], "model.safetensors")
    _no_partial(tmp_path, "dst")


def test_checkpoint_of_another_architecture(llava_hf_folders, tmp_path, capsys):
    src = _copy(llava_hf_folders["llava"], tmp_path / "src")
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(model_type="qwen2_vl", architectures=["Qwen2VLForConditionalGeneration"])
    (src / "config.json").write_text(json.dumps(cfg))
    _fails(capsys, [str(src), str(tmp_path / "dst"), "--from", "llava-hf"], "'qwen2_vl'", "--from")


def test_missing_vision_tower_is_refused_with_the_full_report(llava_hf_folders, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    src = _copy(llava_hf_folders["llava"], tmp_path / "src")
    sd = load_file(str(src / "model.safetensors"))
    save_file({k: v for k, v in sd.items() if not k.startswith("vision_tower.")}, str(src / "model.safetensors"))
    err = _fails(capsys, [str(src), str(tmp_path / "dst"), "--from", "llava-hf"], "MISSING vision_tower.vision_model.")
    assert err.count("MISSING") == sum(k.startswith("vision_tower.") for k in sd)
    _no_partial(tmp_path, "dst")
    # --dry-run: the plan (every pair), then the refusal
    assert cli(["convert", str(src), "--from", "llava-hf", "--dry-run"]) == 2
    out = capsys.readouterr()
    assert "multi_modal_projector.linear_1.weight -> connector.proj.0.weight" in out.out and "MISSING" in out.out


def test_dry_run_prints_every_key_and_writes_nothing(llava_hf_folders, tmp_path, capsys):
    assert cli(["convert", str(llava_hf_folders["llava_next"]), str(tmp_path / "dst"), "--from", "llava-hf",
                "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "image_newline -> connector.image_newline" in out
    assert "vision_tower.embeddings.patch_embedding.weight -> vision_tower.vision_model.embeddings" in out
    assert out.count(" -> ") == 65 and not (tmp_path / "dst").exists()


def test_export_of_a_hiwin_model_names_the_part(tmp_path, capsys):
    loupe.build_config("llava-uhd-v2-tiny").save_pretrained(tmp_path / "uhd")
    _fails(capsys, [str(tmp_path / "uhd"), str(tmp_path / "dst"), "--to", "llava-hf"], "connector 'hiwin'")
    _no_partial(tmp_path, "dst")
    loupe.build_config("llava15-tiny", connector={"pool": 2}).save_pretrained(tmp_path / "pooled")
    _fails(capsys, [str(tmp_path / "pooled"), str(tmp_path / "dst"), "--to", "llava-hf"], "pool 2")


def test_export_of_a_non_loupe_folder(llava_hf_folders, tmp_path, capsys):
    _fails(capsys, [str(llava_hf_folders["llava"]), str(tmp_path / "dst"), "--to", "llava-hf"],
           "not a Loupe model folder")


def test_existing_destination_is_refused(llava_hf_folders, tmp_path, capsys):
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep.txt").write_text("mine")
    _fails(capsys, [str(llava_hf_folders["llava"]), str(tmp_path / "dst"), "--from", "llava-hf"], "not empty")
    assert (tmp_path / "dst" / "keep.txt").read_text() == "mine"


def test_failure_while_writing_leaves_no_destination(llava_hf_folders, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = common.ShardReader.get

    def flaky(self, name):
        calls["n"] += 1
        if calls["n"] == 20:
            raise loupe.LoupeError(f"cannot read tensor {name!r}: disk went away")
        return real(self, name)

    monkeypatch.setattr(common.ShardReader, "get", flaky)
    with pytest.raises(loupe.LoupeError, match="disk went away"):
        llava_hf.import_folder(llava_hf_folders["llava"], tmp_path / "dst")
    assert calls["n"] == 20
    _no_partial(tmp_path, "dst")


def test_unknown_format_and_bad_dtype(llava_hf_folders, tmp_path, capsys):
    _fails(capsys, [str(llava_hf_folders["llava"]), str(tmp_path / "dst"), "--from", "gguf"], "'gguf'", "llava-hf")
    _fails(capsys, [str(llava_hf_folders["llava"]), str(tmp_path / "dst"), "--from", "llava-hf", "--dtype", "int3"],
           "--dtype")
    _no_partial(tmp_path, "dst")
