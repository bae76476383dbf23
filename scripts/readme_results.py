"""Regenerate the README's result tables from result files, never by hand.

    python scripts/readme_results.py [--demo OUT/DEMO] [--compare OUT/COMPARE] [--compare-quick OUT/Q] [--check]

``--demo DIR``: a ``loupe demo --seeds ...`` output folder; its ``results.json``, ``results.md`` and
``accuracy_vs_tokens.png`` are copied to ``docs/results/demo/``. ``--compare DIR``: a ``loupe compare`` output
folder; ``results.json``, ``results.md`` and both plots go to ``docs/results/compare/`` (``--compare-quick``: a
``loupe compare --quick`` folder, to ``docs/results/compare_quick/``). Then every README block
between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` is rewritten from ``docs/results/NAME/results.json``
with the same functions the commands use to write their tables. ``--check``: change nothing, exit 1 if the README
differs from what the result files give (the test suite runs this).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
FILES = {"demo": ("results.json", "results.md", "accuracy_vs_tokens.png"),
         "compare": ("results.json", "results.md", "accuracy_vs_tokens.png", "accuracy_vs_gflops.png"),
         "compare_quick": ("results.json", "results.md", "accuracy_vs_tokens.png", "accuracy_vs_gflops.png")}


def table(name: str, result: dict) -> str:
    if name == "demo":
        from loupe.demo.run import markdown_table_seeds

        secs = result["seconds_by_seed"]
        return (markdown_table_seeds(result) + f"\nSeeds {', '.join(map(str, result['seeds']))}; wall time per seed "
                f"{', '.join(f'{s / 60:.1f}' for s in secs)} min (`docs/results/demo/results.json`).\n")
    if name in ("compare", "compare_quick"):
        from loupe.demo.compare import markdown_tables

        cfg = result["config"]
        return (markdown_tables(result["summary"], result["real_size"]) +
                f"\nBudgets {', '.join(map(str, cfg['budgets']))}; seeds {', '.join(map(str, cfg['seeds']))}; "
                f"{cfg['train_steps']} training steps per cell; wall time {result['total_seconds'] / 60:.1f} min "
                f"(`docs/results/{name}/results.json`).\n")
    raise ValueError(name)


def render(readme: str) -> str:
    def sub(m):
        name = m.group(1)
        path = RESULTS / name / "results.json"
        if not path.is_file():
            return m.group(0)
        return f"<!-- results:{name} -->\n{table(name, json.loads(path.read_text()))}<!-- /results:{name} -->"

    return re.sub(r"<!-- results:(\w+) -->\n.*?<!-- /results:\1 -->", sub, readme, flags=re.S)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path)
    ap.add_argument("--compare", type=Path)
    ap.add_argument("--compare-quick", dest="compare_quick", type=Path)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    for name in FILES:
        src = getattr(args, name)
        if src is None:
            continue
        if not (src / "results.json").is_file():
            ap.error(f"{src}/results.json not found")
        (RESULTS / name).mkdir(parents=True, exist_ok=True)
        for f in FILES[name]:
            if (src / f).is_file():
                shutil.copyfile(src / f, RESULTS / name / f)
    path = ROOT / "README.md"
    old = path.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print("README result tables differ from docs/results/*/results.json: run scripts/readme_results.py",
                  file=sys.stderr)
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
