"""``loupe eval``: a benchmark task on a saved model, under a recorded protocol (:mod:`loupe.evaluation.runner`).

    loupe eval --model DIR --task NAME --data PATH --output DIR [--protocol P] [--set KEY=VALUE ...]
               [--limit N] [--batch-size B] [--strict]
    torchrun --nproc_per_node 2 -m loupe.cli.main eval ...      # the records are split across processes
    loupe eval --compare OUT1 OUT2 ...                          # scores side by side, protocol differences flagged
    loupe eval --list                                           # tasks and protocols
"""

from __future__ import annotations

import sys

from .args import output_dir, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a saved model on a benchmark task under a named protocol",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="folder written by save_pretrained (model + processor)")
    p.add_argument("--task", help="benchmark task name (see --list)")
    p.add_argument("--data", help="local folder (or file) with the benchmark's published files")
    p.add_argument("--output", type=output_dir, help="output folder: predictions.jsonl, metrics.json, results.md")
    p.add_argument("--protocol", default="llava15", help="llava15 | lmms-eval | vlmevalkit | uhd-v2 (default llava15)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a protocol setting, e.g. ocr_tokens=false, coord_frame=original, max_new_tokens=32")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N records")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--strict", action="store_true", help="malformed records are fatal")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.add_argument("--compare", nargs="+", metavar="OUT", help="compare finished results instead of running")
    p.add_argument("--list", action="store_true", help="list tasks and protocols")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import LoupeError
    from ..evaluation.protocols import PROTOCOLS
    from ..evaluation.report import compare
    from ..evaluation.runner import run_eval
    from ..evaluation.tasks import TASKS

    if args.list:
        for name, task in sorted(TASKS.items()):
            print(f"{name:14s} {task.files}")
        print()
        for name, proto in PROTOCOLS.items():
            print(f"{name:14s} {proto.id}: {proto.source}")
        return 0
    if args.compare:
        extra = [f"--{k}" for k in ("model", "task", "data", "output") if getattr(args, k)]
        if extra:
            raise LoupeError(f"--compare reads finished results; it does not take {', '.join(extra)}")
        print(compare(args.compare), end="")
        return 0
    missing = [f"--{k}" for k in ("model", "task", "data", "output") if not getattr(args, k)]
    if missing:
        raise LoupeError(f"missing {', '.join(missing)} (or use --compare / --list)")
    result = run_eval(args.model, args.task, args.data, args.output, protocol=args.protocol,
                      overrides=args.overrides, limit=args.limit, batch_size=args.batch_size, strict=args.strict,
                      progress=not args.no_progress, device=args.device)
    if result is not None:
        print(f"{result['task']} [{result['protocol']['id']}] {result['primary']} = "
              f"{result['metrics'].get(result['primary'])}", file=sys.stdout)
    return 0
