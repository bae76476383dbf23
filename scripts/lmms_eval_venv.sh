#!/usr/bin/env bash
# Build (or reuse) the separate lmms-eval 0.7.3 environment that tests/evaluation/test_lmms_eval.py drives.
# lmms-eval pulls torchvision, which is broken beside the CPU torch, so it lives in its own venv; every other
# package is pinned by constraints/lmms-eval.txt (an unpinned install resolves filelock 4, and lmms-eval 0.7.3
# then fails on import). The venv is reused only when its marker names the same constraints (sha256).
# Usage: scripts/lmms_eval_venv.sh [VENV]   (default: $LOUPE_LMMS_VENV or ~/.cache/loupe/lmms-eval-0.7.3-venv)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
V="${1:-${LOUPE_LMMS_VENV:-$HOME/.cache/loupe/lmms-eval-0.7.3-venv}}"
C="$REPO/constraints/lmms-eval.txt"
WANT="lmms-eval 0.7.3 + loupe; constraints $(sha256sum "$C" | cut -c1-16)"
if [ -f "$V/.loupe-ready" ] && [ "$(cat "$V/.loupe-ready")" = "$WANT" ]; then
  "$V/bin/pip" install -q --no-deps -e "$REPO"     # this checkout, in case it moved
  exit 0
fi
rm -rf "$V"
python3 -m venv "$V"
"$V/bin/pip" install -q pip==26.3
"$V/bin/pip" install -q -c "$C" torch==2.13.0 lmms-eval==0.7.3
"$V/bin/pip" uninstall -q -y torchvision
"$V/bin/pip" install -q -c "$C" -e "$REPO"
# exits 0 only when lmms-eval imports and finds Loupe's model through the entry point
"$V/bin/python" -c "import lmms_eval.models as lm; assert lm.get_model('loupe').__name__ == 'LoupeLMM'"
echo "$WANT" > "$V/.loupe-ready"
