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

find_python() {
    for candidate in "${MEMGUARD_PY311:-}" python3.11 python3; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "no Python 3.11 found: set MEMGUARD_PY311=/path/to/python3.11" >&2
    return 1
}

ready() {
    [ -x "$PY" ] && "$PY" - "$VERSION" <<'PY' 2>/dev/null
import importlib.metadata as md, importlib.util, sys
ok = md.version("agent-framework-core") == sys.argv[1] and all(
    importlib.util.find_spec(name) for name in ("pytest", "pytest_asyncio", "httpx", "pydantic"))
sys.exit(0 if ok and importlib.util.find_spec("torch") is None else 1)
PY
}

if ready; then
    echo "Agent Framework venv ready: $VENV (agent-framework-core $VERSION)" >&2
else
    echo "creating the Agent Framework venv in $VENV (agent-framework-core $VERSION, ~60 MB)..." >&2
    "$(find_python)" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q "agent-framework-core==$VERSION" "pytest>=8" "pytest-asyncio>=0.24" "httpx>=0.27,<1" \
        "pydantic>=2.7,<3" >&2
fi

# The checkout's own packages, every time (the venv may outlive the checkout it was made from).
"$PY" -m pip install -q -e "$ROOT" >&2
"$PY" -m pip install -q --no-deps -e "$ROOT/integrations/agent_framework" >&2
ready || { echo "Agent Framework venv in $VENV is not usable after install (torch must not be there)" >&2; exit 1; }
echo "$PY"
