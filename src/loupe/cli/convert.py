"""``loupe convert SRC DST --from FORMAT | --to FORMAT [--dtype D] [--dry-run] ...``: checkpoints in and out."""

from __future__ import annotations


def add_parser(sub):
    from loupe.convert import FROM_FORMATS, TO_FORMATS

    p = sub.add_parser("convert", help="convert released checkpoints to Loupe folders and back")
    p.add_argument("src", help="source folder (a released checkpoint, or a Loupe folder with --to)")
    p.add_argument("dst", nargs="?", help="destination folder (must not exist; written atomically); not with "
                   "--dry-run")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--from", dest="from_format", metavar="FORMAT",
                   help=f"import a released layout into Loupe: {', '.join(FROM_FORMATS)}")
    g.add_argument("--to", dest="to_format", metavar="FORMAT",
                   help=f"export a Loupe folder: {', '.join(TO_FORMATS)}")
    p.add_argument("--vision-tower", metavar="DIR", help="the vision tower folder when the checkpoint does not hold "
                   "it: a Hugging Face CLIP folder (llava, inf-llava, llava-uhd-v2) or ConvLLaVA's ConvNeXt folder "
                   "(conv-llava)")
    p.add_argument("--language-model", metavar="DIR", help="folder to take the tokenizer from when SRC has none")
    p.add_argument("--preset", help="the Loupe preset giving the parts, for layouts whose config does not describe "
                   "them: --from inf-llava (e.g. inf-llava-8b) and --from llava-uhd-v2 (e.g. llava-uhd-v2-7b)")
    p.add_argument("--dtype", help="cast floating tensors: float32, float16 or bfloat16 (default: keep)")
    p.add_argument("--dry-run", action="store_true",
                   help="print every source key -> target key and every drop, write nothing; exit 2 on any problem")
    p.set_defaults(func=run)


def run(args) -> int:
    from loupe.convert import convert
    from loupe.errors import LoupeError

    if args.dst is None and not args.dry_run:
        raise LoupeError("give a destination folder DST (or --dry-run)")
    options = {"vision_tower": args.vision_tower, "language_model": args.language_model, "preset": args.preset}
    report = convert(args.src, args.dst, from_format=args.from_format, to_format=args.to_format, dtype=args.dtype,
                     dry_run=args.dry_run, **options)
    if args.dry_run:
        print(report.plan())
        if not report.ok:
            raise LoupeError(f"{args.src} would not convert: {report}")
        return 0
    print(f"wrote {args.dst}: {report}")
    return 0
