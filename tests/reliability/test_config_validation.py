"""One typed validation (loupe.validation) for part configs, build() overrides, recipes and eval protocols."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from loupe.errors import LoupeError
from loupe.validation import bounded, build, check_value


# --- the validator itself ----------------------------------------------------------------------------------
@dataclass
class _Inner:
    k: int = bounded(1, min=1)


@dataclass
class _Cfg:
    size: int = bounded(4, min=1)
    p: float = bounded(0.5, min=0.0, max=1.0)
    name: str | None = None
    mode: Literal["a", "b"] = "a"
    shape: tuple[int, ...] = (1, 2)
    pair: tuple[int, str] = (1, "x")
    tags: list[str] = dataclasses.field(default_factory=list)
    table: dict[str, float] = dataclasses.field(default_factory=dict)
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    either: int | str = 0
    flag: bool = False


@pytest.mark.parametrize("data,msg", [
    ({"size": "336"}, "cfg.size: expected int, got str '336'"),
    ({"size": True}, "cfg.size: expected int, got bool True"),
    ({"size": 3.0}, "cfg.size: expected int, got float 3.0"),
    ({"size": 0}, "cfg.size: must be >= 1, got 0"),
    ({"p": 1.5}, "cfg.p: must be <= 1.0, got 1.5"),
    ({"p": "0.5"}, "cfg.p: expected float, got str '0.5'"),
    ({"name": 3}, "cfg.name: expected str, got int 3"),
    ({"mode": "c"}, "cfg.mode: 'c' is not one of 'a', 'b'"),
    ({"shape": [1, "2"]}, "cfg.shape[1]: expected int, got str '2'"),
    ({"pair": [1, 2]}, "cfg.pair[1]: expected str, got int 2"),
    ({"pair": [1]}, "cfg.pair: expected 2 values"),
    ({"tags": "x"}, "cfg.tags: expected a list"),
    ({"table": {"a": "x"}}, "cfg.table.a: expected float, got str 'x'"),
    ({"inner": {"k": 0}}, "cfg.inner.k: must be >= 1, got 0"),
    ({"inner": {"j": 1}}, "cfg.inner: unknown key 'j'; valid keys: k"),
    ({"either": 1.5}, "cfg.either: expected int or str, got float 1.5"),
    ({"flag": 1}, "cfg.flag: expected true or false"),
    ({"sise": 3}, "cfg: unknown key 'sise'; valid keys: size, p,"),
])
def test_every_kind_of_mistake_names_its_full_path(data, msg):
    with pytest.raises(LoupeError) as e:
        build(_Cfg, data, "cfg")
    assert msg in str(e.value), str(e.value)


def test_good_values_pass_and_ints_count_as_floats():
    c = build(_Cfg, {"size": 2, "p": 1, "name": None, "mode": "b", "shape": [3, 4, 5], "pair": [2, "y"],
                     "table": {"a": 1}, "inner": {"k": 3}, "either": "s", "flag": True}, "cfg")
    assert (c.size, c.p, c.shape, c.pair, c.table, c.inner.k) == (2, 1.0, (3, 4, 5), (2, "y"), {"a": 1.0}, 3)
    assert isinstance(c.p, float)
    assert check_value(float | None, None, "x") is None
    # the YAML 1.1 exponent string is read as a float only where asked (recipes), never an int
    assert build(_Cfg, {"p": "1e-1"}, "cfg", yaml_floats=True).p == 0.1
    with pytest.raises(LoupeError, match="expected int"):
        build(_Cfg, {"size": "3"}, "cfg", yaml_floats=True)


# --- part configs, build() -----------------------------------------------------------------------------------
def test_build_rejects_a_top_level_typo_and_wrong_types():
    import loupe

    with pytest.raises(LoupeError, match=r"unknown config key\(s\) \['slicr'\]"):
        loupe.build("llava15-tiny", slicr={"tile_size": 28})
    with pytest.raises(LoupeError, match=r"unknown config key\(s\) \['slicr'\]"):
        loupe.build_config("llava15-tiny", slicr={"tile_size": 28})
    with pytest.raises(LoupeError, match="slicer.tile_size: expected int, got str '336'"):
        loupe.build_config("llava15-tiny", slicer={"tile_size": "336"})
    for bad in (0, -56):
        with pytest.raises(LoupeError, match=f"slicer.tile_size: must be >= 1, got {bad}"):
            loupe.build_config("llava15-tiny", slicer={"tile_size": bad})
    with pytest.raises(LoupeError, match="connector.depth: expected int, got bool True"):
        loupe.build_config("llava15-tiny", connector={"depth": True})
    with pytest.raises(LoupeError, match="unknown option"):
        loupe.build_config("llava15-tiny", connector={"bogus": 1})
    cfg = loupe.build_config("llava15-tiny", slicer={"tile_size": 28})
    assert cfg.slicer["tile_size"] == 28


def _parts():
    from loupe.registry import CONNECTORS, ENCODERS, SLICERS

    return [(reg, name) for reg in (SLICERS, ENCODERS, CONNECTORS) for name in reg.names()]


@pytest.mark.parametrize("reg,name", _parts(), ids=lambda x: x if isinstance(x, str) else x.kind)
def test_every_registered_part_bounds_its_numbers(reg, name):
    """Every numeric option of every registered part declares bounds, and a value past them is refused by name."""
    import typing

    cls = reg.get(name).Config
    hints = typing.get_type_hints(cls)
    numeric = [f for f in dataclasses.fields(cls)
               if hints[f.name] in (int, float, int | None, float | None) and f.name != "select_layer"]
    unbounded = [f.name for f in numeric if not any(k in f.metadata for k in ("min", "gt"))]
    assert not unbounded, f"{reg.kind} {name}: numeric options without bounds: {unbounded}"
    for f in numeric:
        bad = f.metadata["min"] - 1 if "min" in f.metadata else f.metadata["gt"]
        with pytest.raises(LoupeError, match=rf"{reg.kind}\.{f.name}: must be"):
            reg.config({"name": name, f.name: bad})
        with pytest.raises(LoupeError, match=rf"{reg.kind}\.{f.name}: expected"):
            reg.config({"name": name, f.name: "1"})


def test_every_preset_still_builds():
    import torch

    import loupe
    from loupe.presets import list_presets

    for p in list_presets():
        with torch.device("meta"):
            loupe.build_model(p)


# --- recipes -------------------------------------------------------------------------------------------------
def _raw(**model_config):
    return {"name": "x", "model": {"preset": "llava15-tiny", "config": model_config}, "stages": [
        {"name": "a", "data": {"path": "d.jsonl"}, "parts": {"connector": 1}}]}


def test_recipe_model_config_is_checked_against_the_preset():
    from loupe.training import recipe_from_dict

    with pytest.raises(LoupeError, match=r"model.config: unknown config key\(s\) \['slicr'\]"):
        recipe_from_dict(_raw(slicr={"tile_size": 28}))
    with pytest.raises(LoupeError, match="model.config.slicer.tile_size: expected int, got str '336'"):
        recipe_from_dict(_raw(slicer={"tile_size": "336"}))
    with pytest.raises(LoupeError, match="model.config.connector.depth: must be >= 1, got 0"):
        recipe_from_dict(_raw(), ["model.config.connector.depth=0"])
    with pytest.raises(LoupeError, match=r"stages.1.model_overrides.slicer.tile_size: must be >= 1"):
        recipe_from_dict(_raw(), ["stages.1.model_overrides.slicer.tile_size=-1"])
    r = recipe_from_dict(_raw(slicer={"tile_size": 28}))
    assert r.stages[0].parts["connector"].lr == 1.0  # an int where a float is expected


@pytest.mark.parametrize("override,msg", [
    ("stages.1.weight_decay=-5", "weight_decay: must be >= 0.0, got -5"),
    ("stages.1.max_grad_norm=-1", "max_grad_norm: must be >= 0.0"),
    ("stages.1.data.num_workers=-1", "num_workers: must be >= 0"),
    ("stages.1.lora.r=0", "r: must be >= 1"),
    ("stages.1.max_steps=2.5", "max_steps: expected int, got float 2.5"),
    ("stages.1.save_total_limit=0", "save_total_limit: must be >= 1"),
    ("stages.1.global_batch_size=true", "global_batch_size: expected int, got bool True"),
    ("seed=-1", "seed: must be >= 0"),
])
def test_recipe_values_are_bounded(override, msg):
    from loupe.training import recipe_from_dict

    raw = _raw()
    raw["stages"][0]["parts"] = {"language_model": 1e-4}
    with pytest.raises(LoupeError, match=msg):
        recipe_from_dict(raw, [override])


def test_cli_train_check_reports_a_config_typo(tmp_path, capsys):
    import yaml

    from loupe.cli.main import main

    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(_raw(slicr={"tile_size": 28})))
    assert main(["train", str(p), "--check"]) == 2
    assert "error: model.config: unknown config key(s) ['slicr']" in capsys.readouterr().err


# --- eval protocols ----------------------------------------------------------------------------------------
def test_protocol_overrides_use_the_shared_validation():
    from loupe.evaluation.protocols import get_protocol

    p = get_protocol("llava15", ["max_new_tokens=12", "ocr_tokens=no", "coord_frame=padded-square"])
    assert (p.max_new_tokens, p.ocr_tokens, p.coord_frame) == (12, False, "padded_square")
    for item, msg in (("max_new_tokens=0", "max_new_tokens: must be >= 1, got 0"),
                      ("max_new_tokens=many", "max_new_tokens: expected int, got str 'many'"),
                      ("temperature=-1", "temperature: must be >= 0.0"),
                      ("image_placement=top", "'top' is not one of 'newline', 'inline'"),
                      ("ocr_tokens=maybe", "ocr_tokens: expected true or false")):
        with pytest.raises(LoupeError, match=msg):
            get_protocol("llava15", [item])
