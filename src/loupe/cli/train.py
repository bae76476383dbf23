"""``loupe train RECIPE [--stage N] [--output DIR] [--resume] [--check] [key=value ...]``: run a recipe.

Thin: parsing only; the work is :func:`loupe.training.run_recipe`. Overrides are validated against the same
dataclasses as the YAML (:mod:`loupe.training.recipe`), never copied into argparse. Options and ``key=value``
overrides may be mixed in any order after the recipe. Works unchanged under ``torchrun --standalone
--nproc_per_node 2 -m loupe.cli.main train ...`` and ``accelerate launch --multi_gpu --num_processes 2
--num_machines 1 --mixed_precision no -m loupe.cli.main train ...`` (see :mod:`loupe.training.engine` for the
``--cpu`` trap).
"""

from __future__ import annotations

import argparse


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", action="append", metavar="N",
                   help="run only this stage (number from 1, or name); repeatable")
    p.add_argument("--output", metavar="DIR", help="output folder (default: the recipe's output_dir or runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted stage from its last checkpoint")
    p.add_argument("--check", action="store_true", help="validate the recipe and print the plan; do not train")


def add_parser(sub):
    p = sub.add_parser("train", help="train a model stage by stage from a recipe (recipes/*.yaml)",
                       description=__doc__.split("\n\n")[0])
    _options(p)
    p.add_argument("recipe", help="a recipe YAML file")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="key=value",
                   help="recipe edits, e.g. data_root=/data stages.2.max_steps=10 stages.*.precision=fp32")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging
    import os

    from loupe.training import describe, load_recipe, run_recipe

    inner = argparse.ArgumentParser(prog="loupe train RECIPE")
    _options(inner)
    inner.add_argument("overrides", nargs="*")
    more = inner.parse_intermixed_args(args.rest)
    stages_arg = (args.stage or []) + (more.stage or [])
    recipe = load_recipe(args.recipe, more.overrides)
    if args.check or more.check:
        print(describe(recipe))
        return 0
    main = int(os.environ.get("RANK", "0")) == 0
    logging.basicConfig(level=logging.INFO if main else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    stages = [recipe.stage_index(s) for s in stages_arg] if stages_arg else None
    finals = run_recipe(recipe, output=more.output or args.output, stages=stages,
                        resume=args.resume or more.resume)
    if main:
        print(f"final model: {finals[-1]}")
    return 0
