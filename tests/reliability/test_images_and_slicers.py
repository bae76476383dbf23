"""Reliability of image loading and slicing, through the processor of every ``*-tiny`` preset.

A seeded fuzz: random sizes (1xN, Nx1, huge aspect, tiny, near the pixel cap), random PIL modes, EXIF-rotated
JPEGs, truncated files, garbage bytes, data URIs and tensors. Each case either gives a consistent result
(``pixel_values`` shaped as the plan says, as many image tokens in ``input_ids`` as ``num_image_tokens``)
or raises :class:`LoupeError`; any other exception, or a case over a few seconds, fails. The default run is a
fast subset; ``LOUPE_RELIABILITY_LONG=1`` runs >= 10,000 images. Also: LLaVA-UHD v2 plan-time acceptance
equals forward-time acceptance on the tiny model.
"""

import base64
import io
import math
import os
import random
import time

import numpy as np
import pytest
import torch
from PIL import Image

import loupe
from loupe import LoupeError
from loupe.images import load_image

LONG = os.environ.get("LOUPE_RELIABILITY_LONG", "") not in ("", "0")
PRESETS = sorted(p for p in loupe.list_presets() if p.endswith("-tiny"))
CASES_PER_PRESET = 1700 if LONG else 24  # 6 presets: 10,200 images long, 144 fast
MAX_SECONDS = 5.0
MODES = ["RGB", "L", "LA", "P", "RGBA", "I;16", "CMYK", "1", "F", "I"]
NEAR_CAP = 40_000  # the fuzz lowers max_image_pixels to this for its near-cap cases (fast, same code path)


@pytest.fixture(scope="module")
def processors():
    return {p: loupe.build_processor(p) for p in PRESETS}


def _size(rng: random.Random, kind: str) -> tuple[int, int]:
    if kind == "random":
        return rng.randint(1, 900), rng.randint(1, 900)
    if kind == "strip":
        n = rng.choice([rng.randint(2, 5000), 40000, 65535])
        return (n, 1) if rng.random() < 0.5 else (1, n)
    if kind == "aspect":
        ar = math.exp(rng.uniform(math.log(4), math.log(300)))
        short = rng.randint(1, 60)
        return (int(short * ar), short) if rng.random() < 0.5 else (short, int(short * ar))
    if kind == "tiny":
        return rng.randint(1, 4), rng.randint(1, 4)
    w = rng.randint(100, 400)  # near-cap: within 1 % of NEAR_CAP on either side
    return w, max(1, int(NEAR_CAP * rng.uniform(0.99, 1.01)) // w)


def _image(rng: random.Random, size, mode: str) -> Image.Image:
    w, h = size
    a = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a).convert(mode)


def _encode(rng: random.Random, img: Image.Image, how: str):
    """The same image as a PIL object, PNG/TIFF bytes, a data URI, an EXIF-rotated JPEG, a tensor, or broken."""
    if how == "pil":
        return img
    if how == "tensor":
        rgb = torch.from_numpy(np.asarray(img.convert("RGB")).copy())
        return rgb.permute(2, 0, 1).float() / 255 if rng.random() < 0.5 else rgb
    buf = io.BytesIO()
    if how == "jpeg_exif" and max(img.size) <= 65500:  # JPEG's own limit
        exif = Image.Exif()
        exif[0x0112] = rng.randint(1, 8)
        img.convert("RGB").save(buf, format="JPEG", exif=exif)
    elif img.mode in ("CMYK", "F", "I"):
        img.save(buf, format="TIFF")
    else:
        img.save(buf, format="PNG")
    data = buf.getvalue()
    if how == "data_uri":
        return "data:image/png;base64," + base64.b64encode(data).decode()
    if how == "truncated":
        return data[: rng.randint(0, max(0, len(data) - 1))]
    if how == "garbage":
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    return data


def _check(proc, src, cap):
    """One case: a consistent result, or LoupeError. Returns "ok" or "refused"."""
    ip = proc.image_processor
    old = ip.max_image_pixels
    ip.max_image_pixels = cap
    try:
        try:
            out = proc(images=src, text="look <image> here", return_tensors="pt")
        except LoupeError:
            return "refused"
        w, h = load_image(src, max_pixels=cap).size  # EXIF-upright size
        lay = ip.geometry.layout((w, h))
        pv = out["pixel_values"]
        tw, th = max(s[0] for s in lay.tile_sizes), max(s[1] for s in lay.tile_sizes)
        assert tuple(pv.shape) == (lay.num_tiles, 3, th, tw), (tuple(pv.shape), lay)
        assert out["image_sizes"].tolist() == [[h, w]]
        n = int((out["input_ids"] == proc.image_token_id).sum())
        # the image_token_id slots are the plan's visual tokens; num_image_tokens also counts its text spans
        assert n == ip.geometry.num_visual_tokens((w, h)), (n, ip.geometry.num_visual_tokens((w, h)))
        assert torch.isfinite(pv).all()
        return "ok"
    finally:
        ip.max_image_pixels = old


@pytest.mark.parametrize("preset", PRESETS)
def test_fuzz_every_tiny_preset(preset, processors):
    proc = processors[preset]
    rng = random.Random(f"loupe-reliability-{preset}")
    outcomes = {"ok": 0, "refused": 0}
    for i in range(CASES_PER_PRESET):
        kind = rng.choice(["random", "random", "strip", "aspect", "tiny", "near_cap"])
        mode = rng.choice(MODES)
        how = rng.choice(["pil", "png", "data_uri", "jpeg_exif", "tensor", "truncated", "garbage"])
        size = _size(rng, kind)
        cap = NEAR_CAP if kind == "near_cap" else loupe.images.DEFAULT_MAX_PIXELS
        desc = f"case {i}: {kind} {size[0]}x{size[1]} {mode} as {how}"
        t0 = time.perf_counter()
        try:
            src = _encode(rng, _image(rng, size, mode), how)
            outcomes[_check(proc, src, cap)] += 1
        except Exception as e:  # anything but LoupeError (handled in _check) is a failure
            raise AssertionError(f"{preset} {desc}: {type(e).__name__}: {e}") from e
        assert time.perf_counter() - t0 < MAX_SECONDS, f"{preset} {desc} took {time.perf_counter() - t0:.1f} s"
    assert outcomes["ok"] > CASES_PER_PRESET // 4 and outcomes["refused"] > 0, outcomes


@pytest.mark.parametrize("size", [(40000, 1), (1, 65535), (65535, 1)])
def test_thin_strips_through_every_preset(size, processors):
    png = io.BytesIO()
    Image.new("L", size).save(png, format="PNG")
    for preset, proc in processors.items():
        t0 = time.perf_counter()
        assert _check(proc, png.getvalue(), loupe.images.DEFAULT_MAX_PIXELS) in ("ok", "refused")
        assert time.perf_counter() - t0 < MAX_SECONDS, preset


def test_uhd_v2_plan_accepts_exactly_what_forward_accepts():
    """llava-uhd-v2-tiny: for seeded random sizes (aspect up to 20:1), the processor's plan (token count) refuses
    an image iff the model's forward (vision tower + Hiwin/VDIM on the processor's pixels) fails."""
    torch.manual_seed(0)
    model, proc = loupe.build("llava-uhd-v2-tiny")
    model.eval()
    rng = random.Random(17)
    agree = {(True, True): 0, (False, False): 0}
    for _ in range(16):
        ar = math.exp(rng.uniform(-math.log(20), math.log(20)))
        area = math.exp(rng.uniform(math.log(30 * 30), math.log(120 * 120)))
        w, h = max(1, int(math.sqrt(area * ar))), max(1, int(math.sqrt(area / ar)))
        try:
            proc.num_image_tokens((w, h))
            plan_ok = True
        except LoupeError:
            plan_ok = False
        feats, _ = proc.image_processor.process([Image.new("RGB", (w, h), (90, 120, 30))])
        try:
            with torch.no_grad():
                model.get_image_features(feats["pixel_values"], feats["image_sizes"])
            forward_ok = True
        except LoupeError:
            forward_ok = False
        assert plan_ok == forward_ok, (w, h, plan_ok, forward_ok)
        agree[(plan_ok, forward_ok)] += 1
    assert agree[(True, True)] >= 3 and agree[(False, False)] >= 3, agree


def test_uhd_v2_7b_limit_is_144_to_1():
    """At 336 px the overview of an image over 144:1 is one patch tall (find_best_resize: int(336/sqrt(r)) < 28)."""
    from loupe.geometry import ImageGeometry

    geo = ImageGeometry.from_config(loupe.build_config("llava-uhd-v2-7b"))
    assert geo.num_tokens((14400, 100)) > 0 and geo.num_tokens((100, 14400)) > 0
    for size in [(14500, 100), (100, 14500), (148, 1)]:
        with pytest.raises(LoupeError, match=r"too elongated for this model: its overview tile is .* = \d+x\d+ "
                                             r"patches, and the VDIM up-sampler needs at least 2x2"):
            geo.num_tokens(size)
