"""``loupe profile``: tokens, FLOPs per part, KV cache and memory per preset and image size (meta device, no
weights); with ``--model DIR`` also the measured latency of a saved model. Thin: the work is
:func:`loupe.profiling.profile`; outputs are :mod:`loupe.profiling.report`'s."""

from __future__ import annotations

from .args import nonnegative_int, output_dir, positive_int

DEFAULT_SIZES = "336x336,672x672,1008x672,1536x1536"


def add_parser(sub):
    p = sub.add_parser("profile", help="visual tokens, FLOPs, memory and latency per method and resolution")
    p.add_argument("--preset", action="append", default=[], metavar="P",
                   help="preset to profile (repeatable; see `loupe info`)")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"image sizes WxH, comma-separated (default {DEFAULT_SIZES})")
    p.add_argument("--text-tokens", type=nonnegative_int, default=0,
                   help="text tokens in the prompt for the `full` total")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size of the memory estimates (and timed runs)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="a saved Loupe model folder: profile its configuration and time it on this device")
    p.add_argument("--output", type=output_dir, default=None, metavar="DIR",
                   help="write profile.json, profile.md, README_table.md and PNG plots here")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import LoupeError
    from ..profiling import profile
    from ..profiling import report

    if not args.preset and not args.model:
        raise LoupeError("give --preset P (repeatable) or --model DIR")
    if args.model and args.preset:
        raise LoupeError("--model profiles the saved model's own configuration: give --preset or --model, not both")
    if args.model:
        from ..serving.chat import check_model_folder

        check_model_folder(args.model)
    records = []
    for preset in args.preset or [None]:
        records += profile(preset, args.sizes, text_tokens=args.text_tokens, batch=args.batch, model_dir=args.model)
    report.terminal(records)
    if args.output:
        files = report.write(records, args.output, plots=not args.no_plots)
        print("wrote " + ", ".join(str(f) for f in files))
    return 0
