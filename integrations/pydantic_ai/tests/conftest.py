"""Which end of the supported Pydantic AI range this venv holds, and the tests that need it.

pydantic-ai-memguard supports pydantic-ai-slim 2.62 to 2.78. CI tests both ends, each in a venv of
its own: 2.62 with pydantic-ai-harness 0.62 (compaction in `before_model_request`; the main venv)
and 2.78 without the harness (the core `compact_history` hook;
`scripts/setup_pydantic_ai_latest_venv.sh`). Modules that import the harness are not collected
where it is missing, and tests marked `compact_history` are skipped where the hook is missing.
`MEMGUARD_PYDANTIC_AI_END=oldest|newest` (CI sets it) makes a venv that lacks its end's pieces
an error instead of a silent skip.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
from pydantic_ai.capabilities import AbstractCapability

HAS_HARNESS = importlib.util.find_spec("pydantic_ai_harness") is not None
HAS_COMPACT_HISTORY = hasattr(AbstractCapability, "compact_history")
HARNESS_MODULES = (
    "test_pai_capability.py",
    "test_pai_fallbacks.py",
    "test_pai_harness_contract.py",
)

collect_ignore = [] if HAS_HARNESS else list(HARNESS_MODULES)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compact_history: needs Pydantic AI's compact_history hook (2.78+)")
    end = os.environ.get("MEMGUARD_PYDANTIC_AI_END", "")
    if end not in ("", "oldest", "newest"):
        raise pytest.UsageError(f"MEMGUARD_PYDANTIC_AI_END must be 'oldest', 'newest' or unset, not {end!r}")
    if end == "oldest" and not HAS_HARNESS:
        raise pytest.UsageError("MEMGUARD_PYDANTIC_AI_END=oldest, but pydantic-ai-harness is not installed")
    if end == "newest" and not HAS_COMPACT_HISTORY:
        raise pytest.UsageError("MEMGUARD_PYDANTIC_AI_END=newest, but this pydantic-ai-slim lacks compact_history")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_COMPACT_HISTORY:
        return
    skip = pytest.mark.skip(reason="needs pydantic-ai-slim with the compact_history hook (2.78+)")
    for item in items:
        if item.get_closest_marker("compact_history") is not None:
            item.add_marker(skip)
