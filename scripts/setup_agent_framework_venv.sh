#!/usr/bin/env bash
# Create, idempotently, a Python 3.11 virtual environment with one version of agent-framework-core,
# to test agent-framework-memguard against the oldest version it supports (the newest one is
# tested in the main venv). No torch: the tests score with stub scorers. Usage:
#   scripts/setup_agent_framework_venv.sh [VENV_DIR] [VERSION]    # default: .agent-framework-venv, 1.19.0
#   PY="$(scripts/setup_agent_framework_venv.sh ~/.cache/memguard/agent-framework-1.19-venv 1.19.0 | tail -n 1)"
#   "$PY" -m pytest -q integrations/agent_framework/tests
# The last line printed on stdout is the venv's python; progress goes to stderr.
# MEMGUARD_PY311 names the interpreter to build it from (default: python3.11, else python3).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.agent-framework-venv}"
VERSION="${2:-${MEMGUARD_AGENT_FRAMEWORK_VERSION:-1.19.0}}"
PY="$VENV/bin/python"
source "$ROOT/scripts/venv_lib.sh"

ready() { venv_has "$PY" agent-framework-core "$VERSION" "pytest pytest_asyncio httpx pydantic"; }

if ready; then
    echo "Agent Framework venv ready: $VENV (agent-framework-core $VERSION)" >&2
else
    echo "creating the Agent Framework venv in $VENV (agent-framework-core $VERSION, ~60 MB)..." >&2
    "$(find_python 3.11 "${MEMGUARD_PY311:-}")" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q "agent-framework-core==$VERSION" "pytest>=8" "pytest-asyncio>=0.24" "httpx>=0.27,<1" \
        "pydantic>=2.7,<3" >&2
fi

# The checkout's own packages, every time (the venv may outlive the checkout it was made from).
"$PY" -m pip install -q -e "$ROOT" >&2
"$PY" -m pip install -q --no-deps -e "$ROOT/integrations/agent_framework" >&2
ready || { echo "Agent Framework venv in $VENV is not usable after install (torch must not be there)" >&2; exit 1; }
echo "$PY"
