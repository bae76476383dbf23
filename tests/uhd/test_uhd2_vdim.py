"""VDIM (FeatUp JBU stack, pure torch): the adaptive conv, degenerate cases, analytic FLOPs."""

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from loupe.connectors.vdim import VDIM, JBULearnedRange, adaptive_conv, levels_of, vdim_flops


def degenerate(up: JBULearnedRange, sigma: float) -> JBULearnedRange:
    """Uniform range kernel (range_proj outputs 0), no fix-up correction, spatial sigma set."""
    with torch.no_grad():
        up.range_proj[3].weight.zero_()
        up.range_proj[3].bias.zero_()
        up.fixup_proj[3].weight.zero_()
        up.fixup_proj[3].bias.zero_()
        up.sigma_spatial.fill_(sigma)
    return up.eval()


def test_adaptive_conv_is_the_featup_kernel():
    g = torch.Generator().manual_seed(0)
    pad = torch.randn(2, 5, 10, 12, generator=g)
    k = torch.randn(2, 49, 4, 6, generator=g)
    ref = torch.zeros(2, 5, 4, 6)
    for i in range(7):  # out[b,c,y,x] = sum_ij pad[b,c,y+i,x+j] * K[b,y,x,i,j] (adaptive_conv.cpp)
        for j in range(7):
            ref += pad[:, :, i:i + 4, j:j + 6] * k[:, i * 7 + j][:, None]
    torch.testing.assert_close(adaptive_conv(pad, k), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adaptive_conv(pad, k, max_elements=100), ref, atol=1e-5, rtol=1e-5)  # chunked


def test_degenerate_jbu_is_bicubic_upsampling():
    """Uniform range kernel: sigma -> 0 keeps only the centre tap = plain bicubic up-sampling; sigma -> inf gives
    equal taps = a 7x7 mean (reflect border) of the bicubic up-sampling."""
    torch.manual_seed(0)
    src, guide = torch.randn(2, 8, 5, 6), torch.randn(2, 3, 10, 12)
    bicubic = F.interpolate(src, (10, 12), mode="bicubic", align_corners=False)
    with torch.no_grad():
        out = degenerate(JBULearnedRange(), 1e-2)(src, guide)
        torch.testing.assert_close(out, bicubic, atol=1e-5, rtol=1e-5)
        out = degenerate(JBULearnedRange(), 1e6)(src, guide)
        box = F.avg_pool2d(F.pad(bicubic, [3] * 4, mode="reflect"), 7, stride=1)
        torch.testing.assert_close(out, box, atol=1e-5, rtol=1e-5)


def test_degenerate_stack_and_levels():
    torch.manual_seed(1)
    vdim = VDIM(8, top=4)
    degenerate(vdim.up1, 1e-2), degenerate(vdim.up2, 1e-2)
    with torch.no_grad():
        vdim.fixup_proj[1].weight.zero_()
        vdim.fixup_proj[1].bias.zero_()
        f1, px = torch.randn(1, 8, 3, 4), torch.randn(1, 3, 42, 56)
        out = vdim(f1, px)
    f2 = F.interpolate(f1, (6, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(out[2], f2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[4], F.interpolate(f2, (12, 16), mode="bicubic", align_corners=False),
                               atol=1e-5, rtol=1e-5)
    assert out[1] is f1 and levels_of(5) == (1, 4) and levels_of(7) == (1, 2, 4)


def test_gradients_and_analytic_flops():
    torch.manual_seed(2)
    vdim = VDIM(16, top=4)
    f1 = torch.randn(1, 16, 4, 5, requires_grad=True)
    px = torch.randn(1, 3, 56, 70)
    f2, f4 = vdim.forward_stageloss(f1, px)
    f4.sum().backward()
    assert f1.grad is None or f1.grad.abs().sum() == 0  # F2 is detached before up2 (stage-wise training)
    assert vdim.up2.range_temp.grad is not None and vdim.up1.range_temp.grad is None
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        vdim(f1.detach(), px)
    assert fc.get_total_flops() == vdim_flops(16, (4, 5), 4)
