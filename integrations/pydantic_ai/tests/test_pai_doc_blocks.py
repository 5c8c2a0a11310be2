"""docs/pydantic_ai.md: each Python block is a test item of its own (`docs/pydantic_ai.md:42-60`).

The page runs in both Pydantic AI environments: blocks fenced ``requires="compact_history"`` where
pydantic-ai-slim has the core hook (2.78), ``requires="harness"`` where pydantic-ai-harness is
installed (2.62), the rest in both.
"""

from __future__ import annotations

import importlib.util

import pytest
from pydantic_ai.capabilities import AbstractCapability
from tests.docs_harness import example_id, page_examples, run_block

EXAMPLES = page_examples("pydantic_ai_latest")
REQUIREMENTS = {
    "compact_history": hasattr(AbstractCapability, "compact_history"),
    "harness": importlib.util.find_spec("pydantic_ai_harness") is not None,
}


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_doc_block(example, request):
    run_block(example, EXAMPLES, request, REQUIREMENTS)
