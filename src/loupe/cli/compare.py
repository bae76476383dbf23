"""``loupe compare --budgets 16,64,256 [--presets ...] [--seeds 0,1,2] [--quick] [--output DIR]``: every method fitted
to equal visual-token budgets, trained and evaluated as ``loupe demo`` trains an arm (see :mod:`loupe.demo.compare`)."""

from __future__ import annotations

from pathlib import Path

from .args import int_list, output_dir, positive_int


def add_parser(sub):
    p = sub.add_parser("compare", help="every method at equal visual-token budgets: fit, train, evaluate, table + "
                                       "Pareto plots")
    p.add_argument("--budgets", type=int_list(1, "visual-token budgets"), default=None,
                   help="comma-separated visual tokens per image (default 16,64,256; --quick: 16,64)")
    p.add_argument("--presets", nargs="+", default=None, metavar="PRESET",
                   help="demo presets to compare (default: every demo arm; --quick: demo-lowres demo-anyres); "
                        "space- or comma-separated")
    p.add_argument("--seeds", type=int_list(0, "seeds"), default=None, help="comma-separated (default 0,1,2; "
                                                                            "--quick: 0)")
    p.add_argument("--quick", action="store_true", help="the demo's --quick data and steps, 2 methods, 1 seed")
    p.add_argument("--output", type=output_dir, default="out/compare")
    p.add_argument("--train-steps", type=positive_int, default=None)
    p.set_defaults(func=run)


def run(args) -> int:
    from loupe.demo.compare import CompareConfig, run_compare

    kw = {"output": args.output}
    if args.budgets is not None:
        kw["budgets"] = args.budgets
    if args.seeds is not None:
        kw["seeds"] = args.seeds
    if args.presets:
        kw["arms"] = [p for item in args.presets for p in item.split(",") if p]  # checked by CompareConfig
    if args.train_steps is not None:
        kw["train_steps"] = args.train_steps
    cfg = CompareConfig.quick(**kw) if args.quick else CompareConfig(**kw)
    result = run_compare(cfg)
    print()
    print(Path(args.output, "results.md").read_text())
    print(f"written to {args.output}/ (results.json, results.md, accuracy_vs_tokens.png, accuracy_vs_gflops.png) in "
          f"{result['total_seconds']:.0f}s wall, {result['cpu_seconds']:.0f}s CPU")
    return 0
