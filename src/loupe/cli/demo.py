"""``loupe demo [--quick] [--output DIR] [--seed N]``: the main job, offline on CPU (see loupe.demo)."""

from __future__ import annotations

from .args import int_list, positive_int


def add_parser(sub):
    p = sub.add_parser("demo", help="generate a fine-detail benchmark, train tiny models of each method, compare")
    p.add_argument("--quick", action="store_true", help="short budgets (CI)")
    p.add_argument("--output", default="out/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int_list(0, "seeds"), default=None, metavar="N,N,...",
                   help="run each seed into OUTPUT/seed<N> and write the mean ± std over them (e.g. 0,1,2)")
    p.add_argument("--train-steps", type=positive_int, default=None)
    p.add_argument("--arms", nargs="+", default=None, metavar="PRESET",
                   help="demo presets to train (default: all; --quick: demo-lowres demo-anyres)")
    p.set_defaults(func=run)


def run(args) -> int:
    from loupe.demo.run import DemoConfig, run_demo

    kw = {"output": args.output, "seed": args.seed}
    if args.train_steps is not None:
        kw["train_steps"] = args.train_steps
    if args.arms:
        kw["arms"] = list(args.arms)  # checked by DemoConfig
    cfg = DemoConfig.quick(**kw) if args.quick else DemoConfig(**kw)
    if args.seeds is not None:
        from loupe.demo.run import markdown_table_seeds, run_demo_seeds

        agg = run_demo_seeds(cfg, args.seeds)
        print()
        print(markdown_table_seeds(agg))
        print(f"written to {args.output}/ (results.json, results.md, accuracy_vs_tokens.png; seed<N>/ per seed) in "
              f"{sum(agg['seconds_by_seed']):.0f}s")
        return 0
    result = run_demo(cfg)
    from loupe.demo.run import markdown_table

    print()
    print(markdown_table(result["rows"]))
    print(f"written to {args.output}/ (results.json, results.md, accuracy_vs_tokens.png) "
          f"in {result['total_seconds']:.0f}s")
    return 0
