"""INF-LLaVA's DEM against plain cross-attention over the same mosaics: the cost behind the paper's OOM claim.

The INF-LLaVA paper (§4.3.2) rules out cross-attention between the whole local and global feature mosaics
because it "can lead to significant out-of-memory issues during training"; the DEM attends within matching windows only.
Both variants run here with the connector's own modules on the meta device, over the features the profiled
image really gives (72 x 72 mosaics at 1008 px): the DEM as the connector runs it (``spatial_embed``), and the
alternative as two whole-mosaic calls of the same attention (q = global over kv = local, and back) followed by
the same fusion. Counted FLOPs and the **measured** attention-probability bytes (bf16, the matrices an eager /
math attention kernel keeps for backward) are printed beside the connector's analytic
:func:`~loupe.connectors.dem.dem_cost`. At 1008 px with CLIP-L/336 and Llama-3-8B's width: 113.5 vs 309 GFLOPs
(2.7x), 47.8M vs 430M probability elements (9x) per sample. Fused kernels (flash / memory-efficient SDPA)
never store the matrices: the memory gap then disappears, the FLOPs gap stays.
"""

from __future__ import annotations

import torch

from .counting import ActivationMeter, Counter


def _run(meter_params, fn) -> tuple[int, int]:
    """(FLOPs, bf16 bytes of the attention-probability matrices) of ``fn()``."""
    with ActivationMeter(meter_params) as meter, Counter() as c:
        fn()
    return c.total, meter.attention


def dem_vs_full(connector, layout, features: torch.Tensor) -> dict | None:
    """``{"dem": {...}, "full_cross_attention": {...}, "flops_ratio", "attention_memory_ratio"}`` or None when
    the connector is not a two-direction DEM. ``features``: (tiles, g_h, g_w, C) of one image (meta)."""
    from ..connectors import dem as D

    if not isinstance(connector, D.DEMConnector) or connector.config.dem != "both":
        return None
    se, cfg = connector.spatial_embed, connector.config
    grid, c = layout.grid, features.shape[-1]
    g_h, g_w = features.shape[1:3]
    loc = features[layout.indices("local")].unsqueeze(0)
    glo = features[layout.indices("global")].unsqueeze(0)
    params = list(connector.parameters())

    def full():
        L, G = D.local_mosaic(loc, grid), D.global_mosaic(glo, grid)
        a = se.attention(G.reshape(1, -1, c), L.reshape(1, -1, c)).reshape(L.shape)
        bm = se.attention(L.reshape(1, -1, c), G.reshape(1, -1, c)).reshape(L.shape)
        se.fuse(a, bm)

    with torch.enable_grad():
        dem_flops, dem_bytes = _run(params, lambda: se(loc, glo, grid))
        full_flops, full_bytes = _run(params, full)
    out = {}
    for name, fl, nb, mode in (("dem", dem_flops, dem_bytes, "windowed"), ("full_cross_attention", full_flops,
                                                                            full_bytes, "full")):
        a = D.dem_cost(c, (g_w, g_h), grid, cfg.heads, mode, cfg.dem, cfg.fusion, cfg.ffn_ratio)
        out[name] = {"gflops": fl / 1e9, "gflops_analytic": a["total"] / 1e9, "attention_mib": nb / 2**20,
                     "attention_mib_analytic": 2 * a["attn_elements"] / 2**20,
                     "attention_elements_analytic": a["attn_elements"]}
    out["flops_ratio"] = full_flops / dem_flops
    out["attention_memory_ratio"] = full_bytes / dem_bytes if dem_bytes else None
    out["note"] = ("attention memory = the bf16 probability matrices an eager kernel keeps for backward, per sample; "
                   "fused kernels keep none (then only the FLOPs gap remains)")
    return out
