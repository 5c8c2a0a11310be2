#!/usr/bin/env bash
# Create, idempotently, the venv that tests pydantic-ai-memguard at the newest end of its range.
#
# The main venv holds the oldest end: pydantic-ai-slim 2.62 with pydantic-ai-harness 0.62 (the
# `before_model_request` compaction capabilities). The newest pydantic-ai-slim (2.78) has the core
# `compact_history` hook, and no harness release works with it (harness 0.62 pins slim 2.62; asking
# pip for both silently resolves harness 0.36), so this venv has pydantic-ai-slim 2.78 WITHOUT the
# harness, and no torch: its tests score with stub scorers. Usage:
#   scripts/setup_pydantic_ai_latest_venv.sh [VENV_DIR]   # default: ~/.cache/memguard/pydantic-ai-latest-venv
#   PY="$(scripts/setup_pydantic_ai_latest_venv.sh /path/to/venv | tail -n 1)"
#   "$PY" -m pytest -q integrations/pydantic_ai/tests
# The last line printed on stdout is the venv's python; progress goes to stderr.
# MEMGUARD_PY311 names the interpreter to build it from (default: python3.11).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$HOME/.cache/memguard/pydantic-ai-latest-venv}"
SLIM_VERSION="${MEMGUARD_PYDANTIC_AI_LATEST:-2.78.0}"
PY="$VENV/bin/python"
source "$ROOT/scripts/venv_lib.sh"

ready() { venv_has "$PY" pydantic-ai-slim "$SLIM_VERSION" "pytest pytest_asyncio pytest_examples httpx mypy ruff" "pydantic_ai_harness torch"; }

if ready; then
    echo "Pydantic AI latest venv ready: $VENV (pydantic-ai-slim $SLIM_VERSION, no harness)" >&2
else
    echo "creating the Pydantic AI latest venv in $VENV (pydantic-ai-slim $SLIM_VERSION, no harness, ~1 min)..." >&2
    rm -rf "$VENV"
    "$(find_python 3.11 "${MEMGUARD_PY311:-}")" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
    # CI's pins for everything both ends share; the Pydantic AI packages are this venv's own.
    constraints="$(mktemp)"
    trap 'rm -f "$constraints"' EXIT
    grep -v -E '^(pydantic-ai-slim|pydantic-graph|pydantic-ai-harness)==' "$ROOT/.ci/constraints.txt" > "$constraints"
    "$PY" -m pip install -q -c "$constraints" "pydantic-ai-slim==$SLIM_VERSION" "pydantic-graph==$SLIM_VERSION" \
        "httpx>=0.27,<1" "pytest>=8" "pytest-asyncio>=0.24" "pytest-examples>=0.0.15,<0.1" "hypothesis>=6.100" "ruff==0.17.6" "mypy==2.4.1" >&2
fi

# The checkout's own packages, every time (the venv may outlive the checkout it was made from),
# without dependencies: the core needs only pydantic and httpx (installed above),
# and the integration's `[test]` extra would bring the harness.
"$PY" -m pip install -q --no-deps -e "$ROOT" -e "$ROOT/integrations/pydantic_ai" >&2
ready || { echo "the Pydantic AI latest venv in $VENV is not usable (the harness or torch must not be there)" >&2; exit 1; }
echo "$PY"
