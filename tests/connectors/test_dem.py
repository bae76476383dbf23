"""``dem`` (INF-LLaVA's Dual-perspective Enhancement Module): windowing, window isolation, real-size accounting on
meta, the official-checkpoint key map against a loop-by-loop re-computation of the spec's algorithm, the paper
variants, and the tiny preset training end to end."""

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import loupe
from loupe import LoupeError, connectors, slicers
from loupe.connectors.dem import (DEMConnector, SpatialEmbed, crop_blocks, crop_phases, dem_cost, global_mosaic,
                                  local_mosaic)
from loupe.convert.inf_llava import KEY_MAP, convert_state_dict, load_official
from loupe.processing import LoupeImageProcessor
from loupe.presets import TINY_LLAMA, get_preset


def _image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _count(m):
    return sum(p.numel() for p in m.parameters())


# --- windowing ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid", [(3, 3), (2, 3), (4, 1)])
def test_crops_and_recombination_are_inverse_and_match_the_official_loops(grid):
    nw, nh = grid
    b, gh, gw, c = 2, 4, 5, 3
    tiles = torch.randn(b, nw * nh, gh, gw, c)
    G, L = global_mosaic(tiles, grid), local_mosaic(tiles, grid)
    ref_g, ref_l = torch.zeros(b, nh * gh, nw * gw, c), torch.zeros(b, nh * gh, nw * gw, c)
    for i in range(nh):  # official combine_stride_features_N / combine_crop_features_N, as loops
        for j in range(nw):
            ref_g[:, i::nh, j::nw] = tiles[:, i * nw + j]
            ref_l[:, i * gh:(i + 1) * gh, j * gw:(j + 1) * gw] = tiles[:, i * nw + j]
    assert torch.equal(G, ref_g) and torch.equal(L, ref_l)
    # global-perspective cropping of a mosaic, then recombination: the identity (both ways); local likewise
    assert torch.equal(crop_phases(G, grid), tiles) and torch.equal(global_mosaic(crop_phases(L, grid), grid), L)
    assert torch.equal(crop_blocks(L, grid), tiles) and torch.equal(local_mosaic(crop_blocks(G, grid), grid), G)
    # the stride sub-grids of the global mosaic are the global tiles; the blocks of the local mosaic the local ones
    m = torch.randn(b, nh * gh, nw * gw, c)
    for i in range(nh):
        for j in range(nw):
            assert torch.equal(crop_phases(m, grid)[:, i * nw + j], m[:, i::nh, j::nw])
            assert torch.equal(crop_blocks(m, grid)[:, i * nw + j], m[:, i * gh:(i + 1) * gh, j * gw:(j + 1) * gw])


def _changed(x, y):
    """(H, W) bool: positions whose C-vector moved (> 1e-9), asserting the others are untouched (< 1e-12)."""
    d = (x - y).abs().amax(-1)[0]
    assert ((d > 1e-9) | (d < 1e-12)).all()
    return d > 1e-9


def test_each_window_sees_only_its_matching_pair():
    torch.manual_seed(0)
    cfg = DEMConnector.Config()
    se = SpatialEmbed(cfg, 32).double()
    grid, g = (3, 3), 4
    loc, glo = torch.randn(1, 9, g, g, 32, dtype=torch.float64), torch.randn(1, 9, g, g, 32, dtype=torch.float64)
    with torch.no_grad():
        a0, b0 = se.directions(loc, glo, grid)
        for k in range(9):  # perturb local tile k: only block k moves, in A (its window) and in Bm (its queries)
            loc2 = loc.clone()
            loc2[:, k] += torch.randn_like(loc2[:, k])
            a1, b1 = se.directions(loc2, glo, grid)
            block = torch.zeros(3 * g, 3 * g, dtype=torch.bool)
            r, c = divmod(k, 3)
            block[r * g:(r + 1) * g, c * g:(c + 1) * g] = True
            assert torch.equal(_changed(a1, a0), block), k
            assert torch.equal(_changed(b1, b0), block), k
        for k in range(9):  # perturb global tile (i, j): only the stride positions [i::3, j::3] move
            glo2 = glo.clone()
            glo2[:, k] += torch.randn_like(glo2[:, k])
            a1, b1 = se.directions(loc, glo2, grid)
            phase = torch.zeros(3 * g, 3 * g, dtype=torch.bool)
            i, j = divmod(k, 3)
            phase[i::3, j::3] = True
            assert torch.equal(_changed(a1, a0), phase) and torch.equal(_changed(b1, b0), phase), k
        # the paper's Eq. 18-25 pairing: A's windows are stride sub-grids, so one local tile reaches every query
        se_eq = SpatialEmbed(DEMConnector.Config(windows="eq18"), 32).double()
        se_eq.load_state_dict(se.state_dict())
        loc2 = loc.clone()
        loc2[:, 4] += 1.0
        assert _changed(se_eq.directions(loc2, glo, grid)[0], se_eq.directions(loc, glo, grid)[0]).all()


# --- real size on meta ---------------------------------------------------------------------------------------------
def test_inf_llava_8b_meta_parameters_and_576_tokens():
    with torch.device("meta"):
        model = loupe.build_model("inf-llava-8b")
    c = 1024
    dem = 4 * (c * c + c) + 2 * c + 2 * (c * (c // 16) + c // 16 + (c // 16) * (c // 2) + c // 2) + 2 * c
    assert dem == 4_400_256  # "about 4.4M" (spec §1.3)
    table = {
        "vision_tower": _count(model.vision_tower),
        "connector.spatial_embed": _count(model.connector.spatial_embed),
        "connector.proj": _count(model.connector.proj),
        "language_model": _count(model.language_model),
    }
    assert table == {"vision_tower": 303_507_456, "connector.spatial_embed": 4_400_256,
                     "connector.proj": 20_979_712, "language_model": 8_030_261_248}
    assert _count(model) == sum(table.values()) == 8_359_148_672
    cfg = get_preset("inf-llava-8b")["config"]
    ip = LoupeImageProcessor(slicer=cfg["slicer"], vision=cfg["vision"], connector=cfg["connector"])
    for size in [(336, 336), (1008, 1008), (1920, 1080), (300, 2000), (7, 9), (4000, 3000)]:
        assert ip.geometry.num_tokens(size) == model.geometry.num_tokens(size) == 576, size
    feats = ip(_image(1000, 700))
    assert feats["pixel_values"].shape == (19, 3, 336, 336)  # always the 1008 canvas: 9 local + 9 global + overview
    lay = model.geometry.layout((1000, 700))
    f = model.vision_tower(torch.empty(19, 3, 336, 336, device="meta"), layouts=[lay])
    assert f.shape == (19, 24, 24, 1024)
    out = model.connector(torch.cat([f, f]), [lay, model.geometry.layout((50, 3000))])
    assert [tuple(o.shape) for o in out] == [(576, 4096)] * 2
    # the connector's own accounting (performance anchors §4: DEM 113.5 GFLOPs, full cross-attention 309, 9x, 2.7x)
    win, full = dem_cost(1024, (24, 24), (3, 3)), dem_cost(1024, (24, 24), (3, 3), attention="full")
    assert round(win["total"] / 1e9, 1) == 113.5 and round(full["total"] / 1e9) == 309
    assert win["attn_elements"] == 47_775_744 and full["attn_elements"] == 9 * win["attn_elements"]
    assert round(full["total"] / win["total"], 2) == 2.72
    fl = DEMConnector.flops(model.connector.config, lay, model.geometry.grids(lay), 1024, 4096)
    assert fl["total"] == win["total"] + 2 * 576 * (1024 * 4096 + 4096 * 4096)


# --- the official checkpoint layout -------------------------------------------------------------------------------
def official_shapes(c: int, llm: dict) -> dict:
    """Every key of a released INF-LLaVA checkpoint (spec §1.4) with its shape, for a DEM width c and an LLM."""
    s = {}
    for i in range(4):
        s[f"model.spatial_embed.attention.linears.{i}.weight"] = (c, c)
        s[f"model.spatial_embed.attention.linears.{i}.bias"] = (c,)
    s["model.spatial_embed.attention.ln.weight"] = s["model.spatial_embed.attention.ln.bias"] = (c,)
    for f in ("ffn_crop", "ffn_stride"):
        s[f"model.spatial_embed.{f}.0.weight"], s[f"model.spatial_embed.{f}.0.bias"] = (c // 16, c), (c // 16,)
        s[f"model.spatial_embed.{f}.2.weight"], s[f"model.spatial_embed.{f}.2.bias"] = (c // 2, c // 16), (c // 2,)
    s["model.spatial_embed.ln_fuse.weight"] = s["model.spatial_embed.ln_fuse.bias"] = (c,)
    d, v, inter = llm["hidden_size"], llm["vocab_size"], llm["intermediate_size"]
    hd = d // llm["num_attention_heads"]
    s["model.mm_projector.0.weight"], s["model.mm_projector.0.bias"] = (d, c), (d,)
    s["model.mm_projector.2.weight"], s["model.mm_projector.2.bias"] = (d, d), (d,)
    s["model.embed_tokens.weight"] = (v, d)
    for i in range(llm["num_hidden_layers"]):
        p = f"model.layers.{i}."
        s[p + "self_attn.q_proj.weight"] = (llm["num_attention_heads"] * hd, d)
        s[p + "self_attn.k_proj.weight"] = s[p + "self_attn.v_proj.weight"] = (llm["num_key_value_heads"] * hd, d)
        s[p + "self_attn.o_proj.weight"] = (d, llm["num_attention_heads"] * hd)
        s[p + "mlp.gate_proj.weight"] = s[p + "mlp.up_proj.weight"] = (inter, d)
        s[p + "mlp.down_proj.weight"] = (d, inter)
        s[p + "input_layernorm.weight"] = s[p + "post_attention_layernorm.weight"] = (d,)
    s["model.norm.weight"], s["lm_head.weight"] = (d,), (v, d)
    return s


def reference_connector(feats, sd, n=3, heads=8):
    """The spec's §1.2-1.3 algorithm for one image, written out with loops, reading the *official* key names.

    feats: (2 n^2 + 1, g, g, C) encoder maps in dcm order (local row-major, global h-major, overview)."""
    g, c = feats.shape[1], feats.shape[-1]
    W = lambda k: sd[k]  # noqa: E731

    def linear(x, name):
        return x @ W(name + ".weight").T + W(name + ".bias")

    def ln(x, name):
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * W(name + ".weight") + W(name + ".bias")

    def gelu(x):
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))

    def attention(q, kv):  # (t, C) each; 8 heads, d_k = C / 8, post-norm residual with the query input
        pre = "model.spatial_embed.attention."
        Q, K, V = (linear(x, pre + f"linears.{i}") for i, x in enumerate((q, kv, kv)))
        dk, heads_out = c // heads, []
        for h in range(heads):
            s = slice(h * dk, (h + 1) * dk)
            scores = Q[:, s] @ K[:, s].T / math.sqrt(dk)
            p = torch.exp(scores - scores.max(-1, keepdim=True).values)
            heads_out.append((p / p.sum(-1, keepdim=True)) @ V[:, s])
        return ln(linear(torch.cat(heads_out, -1), pre + "linears.3") + q, pre + "ln")

    L, G = torch.zeros(n * g, n * g, c, dtype=feats.dtype), torch.zeros(n * g, n * g, c, dtype=feats.dtype)
    for i in range(n):
        for j in range(n):
            L[i * g:(i + 1) * g, j * g:(j + 1) * g] = feats[i * n + j]
            G[i::n, j::n] = feats[n * n + i * n + j]
    A, Bm = torch.zeros_like(L), torch.zeros_like(L)
    for i in range(n):  # Direction A: per contiguous block, q = global, kv = local
        for j in range(n):
            blk = (slice(i * g, (i + 1) * g), slice(j * g, (j + 1) * g))
            A[blk] = attention(G[blk].reshape(-1, c), L[blk].reshape(-1, c)).reshape(g, g, c)
    for h in range(n):  # Direction B: per stride sub-grid, q = local, kv = global
        for w in range(n):
            Bm[h::n, w::n] = attention(L[h::n, w::n].reshape(-1, c), G[h::n, w::n].reshape(-1, c)).reshape(g, g, c)
    pre = "model.spatial_embed."
    ffn = lambda x, f: linear(gelu(linear(x, pre + f + ".0")), pre + f + ".2")  # noqa: E731
    fused = ln(torch.cat([ffn(Bm, "ffn_crop"), ffn(A, "ffn_stride")], -1) + A + Bm, pre + "ln_fuse")
    H = n * g  # bilinear H x H -> g x g, align_corners=False: src = (dst + 0.5) * H / g - 0.5, clamped at 0
    down = torch.zeros(g, g, c, dtype=feats.dtype)
    for y in range(g):
        for x in range(g):
            sy, sx = max((y + 0.5) * H / g - 0.5, 0.0), max((x + 0.5) * H / g - 0.5, 0.0)
            y0, x0 = int(sy), int(sx)
            y1, x1, ly, lx = min(y0 + 1, H - 1), min(x0 + 1, H - 1), sy - y0, sx - x0
            down[y, x] = ((1 - ly) * ((1 - lx) * fused[y0, x0] + lx * fused[y0, x1])
                          + ly * ((1 - lx) * fused[y1, x0] + lx * fused[y1, x1]))
    mixed = (feats[-1] + down) / 2  # mean with the overview
    hid = gelu(linear(mixed.reshape(-1, c), "model.mm_projector.0"))
    return linear(hid, "model.mm_projector.2")


def test_official_checkpoint_loads_exactly_and_dem_matches_the_spec(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = loupe.build_model("inf-llava-tiny").double().eval()
    c = model.vision_tower.out_dim
    gen = torch.Generator().manual_seed(1)
    shapes = official_shapes(c, TINY_LLAMA)
    sd = {k: torch.randn(s, generator=gen, dtype=torch.float64) * 0.3 for k, s in shapes.items()}
    keys = sorted(sd)  # two shards, as a released folder
    save_file({k: sd[k] for k in keys[::2]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({k: sd[k] for k in keys[1::2]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    report = load_official(model, tmp_path)
    assert not report.missing and not report.unexpected and not report.unmatched
    assert len(report.loaded) == len(sd) and all(k.startswith("vision_tower.") for k in report.left) and report.left
    mine = model.state_dict()
    for k, v in sd.items():
        new, _ = convert_state_dict({k: v})
        assert torch.equal(mine[next(iter(new))], v), k

    img = _image(130, 90, seed=3)
    proc = loupe.build_processor("inf-llava-tiny")
    batch = proc(images=[img], text=["USER: <image>\nhi ASSISTANT:"])
    lay = model.geometry.layout((130, 90))
    with torch.no_grad():
        feats = model.vision_tower(batch["pixel_values"].double(), layouts=[lay])
        got = model.connector(feats, [lay])[0]
        want = reference_connector(feats, sd)
        assert got.shape == (16, TINY_LLAMA["hidden_size"])
        assert torch.allclose(got, want, atol=1e-10, rtol=0)
        # and through the whole model: the image slots hold exactly these tokens
        assert torch.allclose(model(**batch).image_hidden_states[0], want, atol=1e-10, rtol=0)

    # strictness: an unknown key, a missing key and a bad shape are each named
    extra = dict(sd, **{"model.image_newline": torch.zeros(64, dtype=torch.float64)})
    with pytest.raises(LoupeError, match="model.image_newline"):
        load_official(model, extra)
    missing = {k: v for k, v in sd.items() if k != "model.spatial_embed.ln_fuse.bias"}
    with pytest.raises(LoupeError, match="connector.spatial_embed.ln_fuse.bias"):
        load_official(model, missing)
    bad = dict(sd, **{"model.mm_projector.0.bias": torch.zeros(3, dtype=torch.float64)})
    with pytest.raises(LoupeError, match="connector.proj.0.bias"):
        load_official(model, bad)
    # old rotary buffers are dropped; the stage-1 adapter (DEM + projector only) loads with part="adapter"
    ok = load_official(model, dict(sd, **{"model.layers.0.self_attn.rotary_emb.inv_freq": torch.zeros(4)}))
    assert ok.ignored == ["model.layers.0.self_attn.rotary_emb.inv_freq"]
    adapter = {k: v for k, v in sd.items() if "spatial_embed" in k or "mm_projector" in k}
    torch.save(adapter, tmp_path / "mm_projector.bin")
    (tmp_path / "model-00001-of-00002.safetensors").unlink()
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    assert len(load_official(model, tmp_path, part="adapter").loaded) == len(adapter)
    with pytest.raises(LoupeError, match="missing"):
        load_official(model, tmp_path)


def test_real_size_official_keys_map_one_to_one_on_meta():
    with torch.device("meta"):
        model = loupe.build_model("inf-llava-8b")
    llm = get_preset("inf-llava-8b")["config"]["text_config"]
    sd = {k: torch.empty(s, device="meta") for k, s in official_shapes(1024, llm).items()}
    assert sd["model.spatial_embed.ffn_crop.2.weight"].shape == (512, 64)
    report = load_official(model, sd)
    assert len(report.loaded) == len(sd) == len(model.state_dict()) - len(report.left)
    assert {k.split(".")[0] for k in report.left} == {"vision_tower"}
    assert len(KEY_MAP) == 5


# --- variants -----------------------------------------------------------------------------------------------------
FUSIONS = ("official", "linear_concat", "add", "weighted_add", "multiply", "max", "conv3x3")
VARIANTS = [dict(fusion=f) for f in FUSIONS] + [
    dict(dem="global_only"), dict(dem="local_only"), dict(dem="none"), dict(dem="none", baseline="add"),
    dict(dem="none", baseline="global", pool="bilinear"), dict(combine_overview="add"), dict(combine_overview="none"),
    dict(pool="avg"), dict(windows="eq18"), dict(windows="eq18", fusion="linear_concat"),
]


@pytest.mark.parametrize("opts", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_variants_run_with_the_right_shape_and_grad(opts):
    torch.manual_seed(0)
    cfg = connectors.get("dem").Config(**opts)
    con = DEMConnector(cfg, in_dim=32, out_dim=48)
    s33 = slicers.build({"name": "dcm", "tile_size": 56, "size": 168})
    s23 = slicers.build({"name": "dcm", "tile_size": 56, "layout": "paper"})
    lays = [s33.plan((100, 70)), s23.plan((112, 170)), s33.plan((10, 300))]
    assert lays[1].grid == (2, 3)
    feats = torch.randn(sum(lay.num_tiles for lay in lays), 4, 4, 32, requires_grad=True)
    out = con(feats, lays)
    assert [tuple(o.shape) for o in out] == [(16, 48)] * 3
    assert all(DEMConnector.num_tokens(cfg, lay, [(4, 4)] * lay.num_tiles) == 16 for lay in lays)
    sum(o.square().sum() for o in out).backward()
    assert feats.grad.abs().sum() > 0 and all(p.grad is not None for p in con.parameters())
    # batched images equal one by one
    with torch.no_grad():
        k = 0
        for lay, o in zip(lays, out):
            assert torch.allclose(con(feats[k:k + lay.num_tiles], [lay])[0], o, atol=1e-5)
            k += lay.num_tiles
    if opts.get("dem") == "none":
        assert _count(con.spatial_embed) == 0


def test_pools_and_overview_follow_their_definitions():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 12, 8)
    from loupe.connectors.dem import downsample

    assert torch.equal(downsample(x, (4, 4), "bilinear"), x[:, 1::3, 1::3])  # official bilinear = centre sampling
    assert torch.allclose(downsample(x, (4, 4), "avg"), x.reshape(2, 4, 3, 4, 3, 8).mean((2, 4)), atol=1e-6)
    assert torch.allclose(downsample(x, (4, 4), "area"), downsample(x, (4, 4), "avg"), atol=1e-6)
    # a 20-wide mosaic to 8 (factor 2.5): bilinear never reads columns 2, 7, 12, 17; area reads every column
    y = torch.zeros(1, 12, 20, 1, requires_grad=True)
    downsample(y, (8, 8), "bilinear").sum().backward()
    unseen = (y.grad[0, :, :, 0].abs().sum(0) == 0).nonzero().flatten().tolist()
    assert unseen == [2, 7, 12, 17]
    y.grad = None
    downsample(y, (8, 8), "area").sum().backward()
    assert (y.grad[0, :, :, 0].abs().sum(0) > 0).all()
    with pytest.raises(LoupeError, match="fusion"):
        loupe.build_model("inf-llava-tiny", connector={"fusion": "concat"})
    with pytest.raises(LoupeError, match="dcm"):
        DEMConnector.num_tokens(DEMConnector.Config(), slicers.build({"name": "pad"}).plan((50, 50)), [(4, 4)])


def test_out_scale_keeps_a_finer_grid_and_counts_its_tokens():
    """out_scale=3 on a 3x3 DCM (12x12 mosaic): the output keeps 12x12 cells instead of one tile's 4x4, 144 tokens,
    the processor's count too; a scale that does not divide the tile grid is refused for avg pooling."""
    torch.manual_seed(0)
    cfg = connectors.get("dem").Config(dem="none", pool="avg", combine_overview="none", out_scale=3)
    con = DEMConnector(cfg, in_dim=8, out_dim=8)
    lay = slicers.build({"name": "dcm", "tile_size": 56, "size": 168}).plan((100, 70))
    feats = torch.randn(lay.num_tiles, 4, 4, 8)
    (out,) = con(feats, [lay])
    assert out.shape == (144, 8) and DEMConnector.num_tokens(cfg, lay, [(4, 4)] * lay.num_tiles) == 144
    with pytest.raises(LoupeError, match="out_scale"):
        DEMConnector(connectors.get("dem").Config(dem="none", pool="avg", out_scale=2), in_dim=8, out_dim=8)(feats, [lay])
    model, proc = loupe.build("inf-llava-tiny", connector={"out_scale": 3, "pool": "bilinear"})
    assert proc.num_image_tokens((100, 70)) == 144
    assert model.layouts(torch.tensor([[100, 70]]))[0].num_tiles == lay.num_tiles


# --- the tiny preset end to end ------------------------------------------------------------------------------------
def test_tiny_inf_llava_trains_end_to_end(tmp_path):
    torch.manual_seed(0)
    model, proc = loupe.build("inf-llava-tiny")
    tok = proc.tokenizer
    colours = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 220), "yellow": (240, 220, 20)}
    samples = []
    for name, rgb in colours.items():
        img = Image.new("RGB", (120, 80), (250, 250, 250))
        img.paste(Image.new("RGB", (40, 30), rgb), (30, 20))
        samples.append((img, name))
    msg = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}]
    prompt = tok.apply_chat_template(msg, tokenize=False, add_generation_prompt=True)
    batch = proc(images=[s[0] for s in samples], text=[prompt + " " + a + tok.eos_token for _, a in samples])
    assert batch["pixel_values"].shape == (4 * 19, 3, 56, 56)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 4 * 16
    n_prompt = proc(images=[samples[0][0]], text=[prompt])["input_ids"].shape[1]
    labels = batch["input_ids"].clone()
    labels[:, :n_prompt] = -100
    labels[batch["attention_mask"] == 0] = -100
    model.vision_tower.requires_grad_(False)  # frozen throughout, as the official recipe
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    t0, losses = time.time(), []
    for _ in range(30):
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"inf-llava-tiny loss {losses[0]:.3f} -> {losses[-1]:.3f} in {time.time() - t0:.1f}s")
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.3 * losses[0]
    assert model.connector.spatial_embed.attention.linears[0].weight.grad is not None
    model.eval()
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    m2 = loupe.LoupeForConditionalGeneration.from_pretrained(tmp_path).eval()
    p2 = loupe.LoupeProcessor.from_pretrained(str(tmp_path))
    assert m2.config.connector == model.config.connector and p2.num_image_tokens((500, 90)) == 16
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, m2(**batch).logits)
