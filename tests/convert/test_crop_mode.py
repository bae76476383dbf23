"""The ``pad`` slicer's ``mode="crop"``: llava-hf LLaVA-1.5's CLIPImageProcessor (shortest-edge resize, centre crop)."""

import pytest
from convert_helpers import random_image

from loupe.processing import LoupeImageProcessor


@pytest.mark.parametrize("size", [(56, 56), (57, 100), (100, 57), (13, 300), (301, 7), (77, 76), (999, 1000)])
def test_crop_mode_equals_clip_image_processor(size):
    from transformers.models.clip import CLIPImageProcessorPil

    theirs = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    ours = LoupeImageProcessor(slicer={"name": "pad", "tile_size": 56, "mode": "crop"}, vision={"name": "clip"})
    image = random_image(*size)
    a, b = theirs(image, return_tensors="pt")["pixel_values"], ours(image)["pixel_values"]
    assert a.shape == b.shape and (a - b).abs().max().item() < 1e-5
