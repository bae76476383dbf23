"""``loupe data synth --output DIR ...``: write the generated fine-grained benchmark (see loupe.data.synth)."""

from __future__ import annotations

from .args import output_dir


def add_parser(sub):
    p = sub.add_parser("data", help="datasets: generate the fine-detail benchmark")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    s = dsub.add_parser("synth", help="generate train/test splits in LLaVA format")
    s.add_argument("--output", required=True, type=output_dir)
    s.add_argument("--n-train", type=int, default=2000)
    s.add_argument("--n-test", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--test-seed", type=int, default=1)
    s.add_argument("--sizes", default="128x128,160x96,96x160", help="comma-separated WxH, multiples of --tile")
    s.add_argument("--tile", type=int, default=32, help="tile side in pixels, a multiple of the 8-pixel tag")
    s.add_argument("--straddle", type=float, default=0.0, help="share of tags placed across a tile boundary")
    s.add_argument("--shift", type=float, default=0.0,
                   help="share of the other tags half a patch off the grid, still inside one tile")
    s.set_defaults(func=run)


def run(args) -> int:
    from loupe.data.synth import SynthConfig, generate
    from loupe.errors import LoupeError

    patch = SynthConfig.patch  # the tag's side: tags sit on this grid inside a tile
    if args.tile < patch or args.tile % patch:
        raise LoupeError(f"--tile must be a positive multiple of the {patch}-pixel tag, got {args.tile}")
    if args.shift > 0 and args.tile < 2 * patch:
        raise LoupeError(f"--shift moves tags half a tag inside their tile, which needs --tile >= {2 * patch}; "
                         f"got --tile {args.tile}")
    try:
        sizes = [[int(v) for v in s.lower().split("x")] for s in args.sizes.split(",")]
        if any(len(wh) != 2 for wh in sizes):
            raise ValueError
    except ValueError:
        raise LoupeError(f"--sizes must look like 128x128,160x96; got {args.sizes!r}") from None
    least = max(2 * args.tile, 2 * patch) if args.straddle > 0 else max(args.tile, 2 * patch)
    for w, h in sizes:
        if w % args.tile or h % args.tile or w <= 0 or h <= 0:
            raise LoupeError(f"size {w}x{h} is not a positive multiple of the tile ({args.tile})")
        if min(w, h) < least:
            why = "two tiles (a tag straddles a tile boundary)" if args.straddle > 0 else f"{least} pixels"
            raise LoupeError(f"size {w}x{h} is too small: each side must be at least {why}")
    cfg = SynthConfig(n_train=args.n_train, n_test=args.n_test, seed=args.seed, test_seed=args.test_seed,
                      sizes=sizes, tile=args.tile, straddle=args.straddle, shift=args.shift)
    r = generate(args.output, cfg)
    print(f"train: {r['train']['records']} records ({r['train']['path']}); "
          f"test: {r['test']['records']} records ({r['test']['path']}); images in {r['image_root']}")
    return 0
