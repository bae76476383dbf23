"""README result tables are generated from result files (``scripts/readme_results.py``), never typed."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tables_equal_what_the_result_files_give():
    readme = (ROOT / "README.md").read_text()
    names = re.findall(r"<!-- results:(\w+) -->", readme)
    assert "demo" in names
    for name in names:
        assert (ROOT / "docs" / "results" / name / "results.json").is_file(), name
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_results.py"), "--check"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_the_demo_result_file_shows_the_claim():
    """Must-show of the demo: every seed method's arm >= 20 points above the 336-style baseline on mean detail over
    seeds 0-2, the baseline >= 90 % on layout, each seed's whole run <= 20 min on 2 cores."""
    res = json.loads((ROOT / "docs" / "results" / "demo" / "results.json").read_text())
    assert res["seeds"] == [0, 1, 2]
    rows = {r["preset"]: r for r in res["rows"]}
    assert rows["demo-lowres"]["layout"] >= 90
    for preset in ("demo-anyres", "demo-inf-llava", "demo-convllava", "demo-uhd-v2", "demo-fila"):
        assert rows[preset]["detail_over_baseline"] >= 20, (preset, rows[preset]["detail"])
    assert max(res["seconds_by_seed"]) <= 20 * 60
