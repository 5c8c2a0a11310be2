#!/usr/bin/env bash
# Create, idempotently, a Python 3.11 virtual environment the Strands integration's tests run in.
#
# strands-agents cannot share the main venv: it caps mcp (<2.2), pins opentelemetry's semantic
# conventions and python-dateutil (<3) below what .ci/constraints.txt pins for the other
# integrations. This venv has no torch: its tests score with stub scorers (memguard.testing's
# ConstantScorer and the like), never the in-process model. Usage:
#   scripts/setup_strands_venv.sh [VENV_DIR]        # default: .strands-venv beside pyproject.toml
#   PY="$(scripts/setup_strands_venv.sh /path/to/venv | tail -n 1)"
#   "$PY" -m pytest -q integrations/strands/tests
#   (cd integrations/strands && "$PY" -m mypy -p strands_memguard)    # or: .ci/lint integrations/strands
# The last line printed on stdout is the venv's python; progress goes to stderr.
# MEMGUARD_STRANDS_VERSION picks the strands-agents release (default: the newest supported; CI also
# builds the oldest supported one, 1.58.0, in a venv of its own). MEMGUARD_PY311 names the interpreter.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.strands-venv}"
SDK_VERSION="${MEMGUARD_STRANDS_VERSION:-1.62.0}"
PY="$VENV/bin/python"
source "$ROOT/scripts/venv_lib.sh"

ready() { venv_has "$PY" strands-agents "$SDK_VERSION" "pytest pytest_asyncio pytest_examples httpx pydantic mypy ruff"; }

if ready; then
    echo "Strands venv ready: $VENV (strands-agents $SDK_VERSION)" >&2
else
    echo "creating the Strands venv in $VENV (strands-agents $SDK_VERSION, ~0.3 GB, a minute or two)..." >&2
    rm -rf "$VENV"
    "$(find_python 3.11 "${MEMGUARD_PY311:-}")" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q "strands-agents==$SDK_VERSION" "pytest>=8" "pytest-asyncio>=0.24" "pytest-examples>=0.0.15,<0.1" \
        "httpx>=0.27,<1" "pydantic>=2.7,<3" "mypy==2.4.1" "ruff==0.17.6" >&2
fi

# The checkout's own packages, every time (the venv may outlive the checkout it was made from).
"$PY" -m pip install -q --no-deps -e "$ROOT" -e "$ROOT/integrations/strands" >&2
ready || { echo "Strands venv in $VENV is not usable after install (torch must not be there)" >&2; exit 1; }
echo "$PY"
