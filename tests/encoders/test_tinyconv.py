"""``tinyconv`` with ``native_aspect``: tiles of several sizes (UHD slices) are each encoded at their own grid, equal
to encoding every tile alone; one size gives one tensor; the gradient reaches every tile."""

import numpy as np
import torch
from PIL import Image

import loupe
from loupe.encoders.tinyconv import TinyConvEncoder
from loupe.registry import ENCODERS


def test_native_aspect_tiles_equal_one_by_one_and_gradients_flow():
    torch.manual_seed(0)
    model, proc = loupe.build("demo-uhd-v2")
    enc: TinyConvEncoder = model.vision_tower.eval()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8))
    feats, (lay,) = proc.image_processor.process([img])
    x = feats["pixel_values"]
    sizes = lay.tile_sizes
    assert len(set(sizes)) > 1  # 15 slices of 32x32 and an overview of another shape
    out = enc(x, [lay])
    assert isinstance(out, list) and len(out) == lay.num_tiles
    table = enc._tile_table([lay])
    for i, (w, h) in enumerate(sizes):
        assert tuple(out[i].shape) == (h // 8, w // 8, 96)
        alone = enc._encode(x[i : i + 1, :, :h, :w], ([table[0][i]], [table[1][i]]))[0]
        torch.testing.assert_close(out[i], alone, rtol=1e-5, atol=1e-5)
    sum(m.sum() for m in out).backward()
    assert float(enc.stem[0].weight.grad.abs().sum()) > 0
    # one size -> one tensor, same as the plain encoder
    plain = TinyConvEncoder(ENCODERS.config({**model.config.vision, "native_aspect": False}))
    plain.load_state_dict(enc.state_dict())
    same = x[:3, :, :32, :32]
    from loupe.slicers.base import Layout

    lay3 = Layout(image_size=(32, 96), tile_sizes=((32, 32),) * 3, roles=("local",) * 3,
                  boxes=((0, 0, 32, 32), (0, 32, 32, 64), (0, 64, 32, 96)))
    with torch.no_grad():
        torch.testing.assert_close(enc(same, [lay3]), plain(same, [lay3]))
