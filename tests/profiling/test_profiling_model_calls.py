"""The profiler measures the model by calling it: ``get_image_features`` on meta tensors, FLOPs and activations
split by forward hooks on ``vision_tower`` / ``connector`` (no replayed call, no patched encoder); the modern
presets profile on the meta device."""

import pytest
import torch
from torch import nn

import loupe
from loupe.profiling import counting, profile
from loupe.profiling.profiler import _Profiler


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 4)

    def forward(self, x):
        return self.inner(self.inner(x))  # the same module twice: both calls are its FLOPs


def test_counter_parts_split_one_call_between_modules():
    a, b = _Twice(), nn.Linear(4, 2)
    x = torch.randn(3, 4)
    with counting.Counter().parts({"a": a, "a.inner": a.inner, "b": b}) as c:
        b(a(x))
        x @ x.T  # outside both parts
    assert c.by_part == {"a": 2 * 2 * 3 * 4 * 4, "a.inner": 2 * 2 * 3 * 4 * 4, "b": 2 * 3 * 4 * 2}
    assert c.total == c.by_part["a"] + c.by_part["b"] + 2 * 3 * 4 * 3
    assert not a._forward_hooks and not a._forward_pre_hooks  # hooks removed on exit


def test_activation_meter_by_part_equals_each_part_measured_alone():
    with torch.device("meta"):
        model = loupe.build_model("llava15-tiny").to(torch.bfloat16)
    vt, conn = model.vision_tower, model.connector
    px = torch.empty(1, 3, 56, 56, dtype=torch.bfloat16, device="meta")
    lay = model.geometry.layout((56, 56))
    with counting.ActivationMeter(model.parameters()) as mv:
        feats = vt(px, layouts=[lay])
    with counting.ActivationMeter(model.parameters()) as mc:
        conn(feats, [lay])
    parts = {"vision": vt, "connector": conn}
    with counting.ActivationMeter(model.parameters(), parts=parts) as m:
        model.get_image_features(px, None, image_layouts=[lay])
    assert m.by_part == {"vision": {"efficient": mv.efficient, "attention": mv.attention},
                         "connector": {"efficient": mc.efficient, "attention": mc.attention}}
    assert m.by_part["vision"]["attention"] > 0
    assert m.by_part["vision"]["efficient"] > 0 and m.by_part["connector"]["efficient"] > 0


def test_profiler_calls_the_models_get_image_features():
    p = _Profiler(loupe.build_config("llava-uhd-v2-tiny"))
    calls = []
    own = p.model.get_image_features

    def spy(*args, **kwargs):
        calls.append(kwargs.get("image_layouts"))
        return own(*args, **kwargs)

    p.model.get_image_features = spy
    layout = p.geometry.layout((200, 700))
    rec = p.record((200, 700), 0, 1)
    assert calls and all(c == [layout] for c in calls)  # counted and measured through the model's own method
    assert rec["checks"][0]["gap"] == 0.0 and rec["flops"]["paper"]["vision"] > rec["flops"]["full"]["vision"]


def test_no_encoder_attribute_is_patched_while_profiling():
    p = _Profiler(loupe.build_config("llava15-tiny"))
    seen = []
    vt = p.model.vision_tower
    hook = vt.register_forward_pre_hook(lambda mod, args: seen.append(vt.num_layers_run))
    try:
        p.record((56, 56), 0, 1)
    finally:
        hook.remove()
    assert seen and set(seen) == {1}  # layer -2 of 2: the model's own setting, never raised to "all blocks"


@pytest.mark.parametrize("preset,tokens", [("qwen2-vl-7b", 864), ("internvl3-8b", 1792),
                                           ("llava-onevision-qwen2-7b", 5157)])
def test_modern_presets_profile_at_1008x672(preset, tokens):
    (r,) = profile(preset, [(1008, 672)])
    assert r["visual_tokens"] == tokens
    assert not r["flags"], r["flags"]
    assert 0 < r["paper_tflops"] <= r["full_tflops"]


def test_qwen2_vl_encoder_runs_on_meta():
    with torch.device("meta"):
        model = loupe.build_model("qwen2-vl-tiny")
    lay = model.geometry.layout((200, 120))
    w, h = lay.tile_sizes[0]
    out = model.get_image_features(torch.empty(1, 3, h, w, device="meta"), None, image_layouts=[lay])
    assert out[0].shape[0] == model.geometry.num_visual_tokens(lay) and out[0].device.type == "meta"
