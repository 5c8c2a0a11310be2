#!/usr/bin/env bash
# Create, idempotently, a virtual environment for the LangChain integration's tests beside the main
# one, which has the newest LangChain that langchain-memguard declares. Two kinds:
#
#   oldest      the oldest LangChain it declares (langchain 1.2.9: the first with ExtendedModelResponse,
#               which MemGuardMiddleware returns), pinned by .ci/constraints-langchain-oldest.txt
#   deepagents  deepagents (its own SummarizationMiddleware, refused by MemGuardMiddleware; audited by
#               the callback), pinned by .ci/constraints-deepagents.txt: deepagents pulls the
#               Anthropic and Google GenAI SDKs, whose pins (tenacity, websockets) differ from the
#               main venv's, so it cannot share that venv
#
# Neither has torch: their tests score with stub scorers, never the in-process model. Usage:
#   scripts/setup_langchain_venv.sh oldest|deepagents [VENV_DIR]   # default: .langchain-<kind>-venv
#   PY="$(scripts/setup_langchain_venv.sh oldest | tail -n 1)"
#   "$PY" -m pytest -q integrations/langchain/tests
# The last line printed on stdout is the venv's python; progress goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KIND="${1:?usage: setup_langchain_venv.sh oldest|deepagents [VENV_DIR]}"
case "$KIND" in
    oldest) CONSTRAINTS="$ROOT/.ci/constraints-langchain-oldest.txt"; TOP=(langchain langchain-core langgraph) ;;
    deepagents) CONSTRAINTS="$ROOT/.ci/constraints-deepagents.txt"; TOP=(deepagents langchain) ;;
    *) echo "unknown kind $KIND: oldest or deepagents" >&2; exit 2 ;;
esac
VENV="${2:-$ROOT/.langchain-$KIND-venv}"
PY="$VENV/bin/python"

# Ready when every pinned top-level package has its pinned version and torch is absent.
ready() {
    [ -x "$PY" ] && "$PY" - "$CONSTRAINTS" "${TOP[@]}" <<'PY' 2>/dev/null
import importlib.metadata as md, importlib.util, re, sys
pins = dict(re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
            for line in open(sys.argv[1]) if re.match(r"[A-Za-z0-9_.-]+==", line))
ok = all(md.version(name) == pins[name] for name in sys.argv[2:])
ok = ok and all(importlib.util.find_spec(m) for m in ("pytest", "pytest_asyncio", "hypothesis"))
sys.exit(0 if ok and importlib.util.find_spec("torch") is None else 1)
PY
}

if ready; then
    echo "LangChain $KIND venv ready: $VENV" >&2
else
    echo "creating the LangChain $KIND venv in $VENV (a minute or two)..." >&2
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q -c "$CONSTRAINTS" "${TOP[@]}" "pytest>=8" "pytest-asyncio>=0.24" "hypothesis>=6.100" >&2
fi

# The checkout's own packages, every time (the venv may outlive the checkout it was made from):
# the core without extras (pydantic, httpx) and the integration, without touching the pins above.
"$PY" -m pip install -q -c "$CONSTRAINTS" -e "$ROOT" >&2
"$PY" -m pip install -q --no-deps -e "$ROOT/integrations/langchain" >&2
ready || { echo "LangChain $KIND venv in $VENV is not usable after install (torch must not be there)" >&2; exit 1; }
echo "$PY"
