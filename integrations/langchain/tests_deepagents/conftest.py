"""deepagents tests run in their own venv (scripts/setup_langchain_venv.sh deepagents); they share the
LangChain tests' doubles."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
