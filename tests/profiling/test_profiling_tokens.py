"""Visual-token counts: the profiler's equal the processor's (one geometry), and the papers' figures."""

import random

import pytest

import loupe
from loupe.profiling import visual_tokens
from loupe.tokenizer import build_tiny_tokenizer

COUNTS = [("llava15-7b", (336, 336), 576), ("llava-next-7b", (672, 672), 2928), ("llava-uhd-v2-7b", (1008, 672), 1014),
          ("convllava-7b-768", (768, 768), 144), ("convllava-7b-1024", (1024, 1024), 256),
          ("convllava-7b-1536", (1536, 1536), 576), ("inf-llava-8b", (1008, 1008), 576)]


def need(preset):
    if preset not in loupe.list_presets():
        pytest.skip(f"preset {preset!r} is not available in this checkout")


@pytest.mark.parametrize("preset,size,tokens", COUNTS)
def test_paper_token_counts(preset, size, tokens):
    need(preset)
    assert visual_tokens(preset, size) == tokens


@pytest.mark.parametrize("preset", ["llava15-7b", "llava-next-7b", "llava-uhd-v2-7b", "convllava-7b-1536",
                                    "inf-llava-8b", "llava-next-tiny"])
def test_random_sizes_match_the_processor(preset):
    need(preset)
    proc = loupe.build_processor(preset, tokenizer=build_tiny_tokenizer(1024, "tiny"))
    rng = random.Random(preset)
    for _ in range(25):
        size = (rng.randint(1, 3000), rng.randint(1, 3000))
        assert visual_tokens(preset, size) == proc.num_image_tokens(size), size


def test_profile_record_uses_the_same_count():
    from loupe.profiling import profile

    proc = loupe.build_processor("llava-next-tiny")
    for r in profile("llava-next-tiny", "56x56,123x45,200x90"):
        assert r["visual_tokens"] == proc.num_image_tokens(tuple(r["image_size"]))
