#!/usr/bin/env bash
# Create, idempotently, a Python 3.11 virtual environment the Google ADK integration's tests run in.
#
# google-adk pins OpenTelemetry, tenacity and websockets below what the main venv's constraints hold
# (.ci/constraints.txt), so it cannot share that venv; it needs no torch either: its tests score with
# stub scorers (memguard.testing's ConstantScorer and doubles), never the in-process model. CI builds
# one venv per google-adk version it tests (the oldest and the newest of the supported range). Usage:
#   scripts/setup_google_adk_venv.sh [VENV_DIR] [ADK_VERSION]   # default: .google-adk-venv, 2.13.0
#   PY="$(scripts/setup_google_adk_venv.sh ~/.cache/memguard/google-adk-2.13.0 2.13.0 | tail -n 1)"
#   "$PY" -m pytest -q integrations/google_adk/tests
#   .ci/lint integrations/google_adk    # with that venv's bin/ first on PATH (mypy is installed there)
# The last line printed on stdout is the venv's python; progress goes to stderr.
# MEMGUARD_PY311 names the interpreter to build it from (default: python3.11, else python3 if 3.11).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.google-adk-venv}"
ADK_VERSION="${2:-${MEMGUARD_GOOGLE_ADK_VERSION:-2.13.0}}"
PY="$VENV/bin/python"
source "$ROOT/scripts/venv_lib.sh"
# Test and lint tools, pinned like the main venv's (.ci/constraints.txt, memguard[lint]).
TOOLS=("pytest==9.2.0" "pytest-asyncio==1.5.0" "pytest-examples==0.0.18" "mypy==2.4.1" "ruff==0.17.6")

ready() { venv_has "$PY" google-adk "$ADK_VERSION" "pytest pytest_asyncio pytest_examples mypy ruff httpx pydantic"; }

if ready; then
    echo "Google ADK venv ready: $VENV (google-adk $ADK_VERSION)" >&2
else
    echo "creating the Google ADK venv in $VENV (google-adk $ADK_VERSION, ~0.4 GB, a few minutes)..." >&2
    rm -rf "$VENV"
    "$(find_python 3.11 "${MEMGUARD_PY311:-}")" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q "google-adk==$ADK_VERSION" "${TOOLS[@]}" >&2
fi

# The checkout's own packages, every time (the venv may outlive the checkout it was made from).
# --no-deps for the integration: its google-adk requirement is already met by the pinned version.
"$PY" -m pip install -q -e "$ROOT" >&2
"$PY" -m pip install -q --no-deps -e "$ROOT/integrations/google_adk" >&2
ready || { echo "Google ADK venv in $VENV is not usable after install (torch must not be there)" >&2; exit 1; }
echo "$PY"
