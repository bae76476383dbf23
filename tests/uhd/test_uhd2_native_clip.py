"""Native-aspect CLIP (spec §3.1): per-tile grids, bicubic positions, padded batch + mask == one tile at a time."""

import torch

from loupe.encoders.clip import CLIPEncoder
from loupe.presets import TINY_CLIP
from loupe.slicers.base import Layout


def tower(native=True):
    torch.manual_seed(0)
    enc = CLIPEncoder(CLIPEncoder.Config(hf_config=dict(TINY_CLIP), native_aspect=native)).eval()
    return enc


def test_padded_batch_equals_each_tile_alone_and_hf_reference():
    enc = tower()
    sizes = [(84, 42), (84, 42), (56, 56), (28, 70)]  # (w, h): 6x3, 4x4 (the table's own grid), 2x5 patches
    lay = Layout(image_size=(100, 100), tile_sizes=tuple(sizes), roles=("local",) * 3 + ("overview",))
    g = torch.Generator().manual_seed(1)
    tiles = [torch.randn(3, h, w, generator=g) for w, h in sizes]
    batch = torch.zeros(4, 3, 70, 84)
    for i, t in enumerate(tiles):
        batch[i, :, : t.shape[1], : t.shape[2]] = t
    with torch.no_grad():
        out = enc(batch, layouts=[lay])
        assert isinstance(out, list) and [tuple(o.shape[:2]) for o in out] == [(3, 6), (3, 6), (4, 4), (5, 2)]
        hf = enc.vision_model
        for t, o in zip(tiles, out):
            alone = enc(t[None])  # no padding, no mask: a (1, gh, gw, C) tensor
            torch.testing.assert_close(o, alone[0], atol=1e-5, rtol=1e-5)
            # transformers' own interpolation (bicubic to (h/14, w/14), align_corners=False) = the official one
            ref = hf(t[None], output_hidden_states=True, interpolate_pos_encoding=True).hidden_states[-2][0, 1:]
            torch.testing.assert_close(o.reshape(-1, o.shape[-1]), ref, atol=1e-5, rtol=1e-5)


def test_same_grid_gives_a_tensor_and_default_is_unchanged():
    enc, old = tower(True), tower(False)
    old.load_state_dict(enc.state_dict())
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        a, b = enc(x), old(x)
    assert isinstance(a, torch.Tensor) and a.shape == (2, 4, 4, 64)
    torch.testing.assert_close(a, b)
    assert CLIPEncoder.feature_grid(enc.config, (406, 266)) == (29, 19)  # the 1008x672 overview's true grid
