"""scripts/uhd_v2_flops.py: meta-device prefill FLOPs (C2) of LLaVA-UHD v2-7B at 1008x672 and LLaVA-NeXT-7B at 672^2."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "uhd_v2_flops.py"


def within(x, ref, tol=0.10):
    return abs(x - ref) / ref <= tol


def test_flops_against_paper_and_anchors(capsys):
    spec = importlib.util.spec_from_file_location("uhd_v2_flops", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    uhd, nxt = mod.main([])
    printed = capsys.readouterr().out
    assert "llava-uhd-v2-7b" in printed and "17.50" in printed and "44.40" in printed
    assert (uhd["tokens"], uhd["tiles"], nxt["tokens"]) == (1014, 7, 2928)
    assert within(uhd["total_without_mha"], 17.21) and within(uhd["total_without_mha"], 17.5)  # C7 and the paper
    assert within(uhd["total"], 22.35)  # C2, a faithful count of the official code (4 MHA calls)
    assert within(nxt["total"], 44.4)
    assert abs(uhd["connector"] - uhd["connector_analytic"]) < 1e-6 * uhd["connector"]  # the part's own flops()
    assert 5.0 < uhd["mha"] < 5.3  # anchors: MHA 5.14 TF
