#!/usr/bin/env bash
# Create, idempotently, the Python 3.12 virtual environment the OpenHands integration's tests run in.
#
# openhands-sdk needs Python >= 3.12 and there is no CPU torch wheel for 3.12 here, so this venv has
# no torch: its tests score with stub scorers (or RemoteMemRM), never the in-process model. Usage:
#   scripts/setup_openhands_venv.sh [VENV_DIR]        # default: .openhands-venv beside pyproject.toml
#   PY="$(scripts/setup_openhands_venv.sh /path/to/venv | tail -n 1)"
#   "$PY" -m pytest -q integrations/openhands/tests
#   MYPYPATH=integrations/openhands "$PY" -m mypy --follow-imports=silent -p openhands_memguard
# The last line printed on stdout is the venv's python; progress goes to stderr.
# MEMGUARD_PY312 names the interpreter to build it from (default: python3.12, else pyenv's 3.12).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.openhands-venv}"
SDK_VERSION="${MEMGUARD_OPENHANDS_SDK_VERSION:-1.58.2}"
PY="$VENV/bin/python"
source "$ROOT/scripts/venv_lib.sh"

ready() { venv_has "$PY" openhands-sdk "$SDK_VERSION" "pytest pytest_asyncio pytest_examples httpx pydantic mypy"; }

if ready; then
    echo "OpenHands venv ready: $VENV (openhands-sdk $SDK_VERSION)" >&2
else
    echo "creating the OpenHands venv in $VENV (openhands-sdk $SDK_VERSION, ~0.5 GB, a few minutes)..." >&2
    "$(find_python 3.12 "${MEMGUARD_PY312:-}" "$HOME/.pyenv/versions/3.12.1/bin/python")" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q "openhands-sdk==$SDK_VERSION" "pytest>=8" "pytest-asyncio>=0.24" "pytest-examples>=0.0.15,<0.1" "httpx>=0.27,<1" "pydantic>=2.7,<3" mypy >&2
fi

# The checkout's own packages, every time (the venv may outlive the checkout it was made from).
# While the core still declares torch (issue 12 moves it to the `local` extra), install it without
# dependencies: importing the core needs only pydantic and httpx, both installed above.
if "$PY" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
sys.exit(0 if any(d.replace(" ", "").lower().startswith("torch") for d in deps) else 1)
PY
then
    "$PY" -m pip install -q --no-deps -e "$ROOT" >&2
else
    "$PY" -m pip install -q -e "$ROOT" >&2
fi
"$PY" -m pip install -q --no-deps -e "$ROOT/integrations/openhands" >&2
ready || { echo "OpenHands venv in $VENV is not usable after install (torch must not be there)" >&2; exit 1; }
echo "$PY"
