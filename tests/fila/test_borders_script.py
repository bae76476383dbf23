"""scripts/fila_borders.py at a toy budget: the protocol runs end to end and is the one it claims to be — both arms
start from the same connector/LLM weights and the same ViT, and with FILA's recipe only CVFM + connector + LLM move
(both towers frozen). Learning itself is measured by the script (see its docstring and the #8 notes)."""

import importlib.util
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fila_borders.py"


def _module():
    spec = importlib.util.spec_from_file_location("fila_borders", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def test_borders_protocol_is_paired_and_trains_fila_stage2_set(tmp_path):
    mod = _module()
    cfg = mod.BorderConfig(output=str(tmp_path / "run"), n_pretrain=70, n_train=16, n_test=4, vit_steps=3,
                           conv_steps=3, train_steps=3, batch=4, pre_batch=2)
    result = mod.run(cfg, log=lambda s: None)
    assert [r["arm"] for r in result["rows"]] == ["fila", "no-conv"]
    assert all(set(r["accuracy"]) == {"detail", "layout"} for r in result["rows"])
    out = tmp_path / "run"
    test = json.loads((out / "data" / "test.json").read_text())
    boxes = {tuple(r["tag_box"]) for r in json.loads((out / "data" / "train.json").read_text())}
    assert all(x0 % 32 == 28 for x0, *_ in boxes) and len(test) == 8  # every task tag straddles a tile border
    init = {arm: _weights(out / arm / "init") for arm in ("fila", "no-conv")}
    shared = [k for k in init["no-conv"] if not k.startswith("vision_tower.conv_branch")]
    assert shared and all(torch.equal(init["fila"][k], init["no-conv"][k]) for k in shared)  # paired start
    for arm in ("fila", "no-conv"):
        final = _weights(out / arm / "train" / "stage-1-instruct" / "final")
        moved = {k for k in final if not torch.equal(final[k], init[arm][k])}
        assert not any(k.startswith(("vision_tower.vision_model.", "vision_tower.conv_branch.")) for k in moved)
        assert any(k.startswith("connector.") for k in moved) and any(k.startswith("language_model.") for k in moved)
        assert any(k.startswith("vision_tower.cvfm.") for k in moved) == (arm == "fila")
