"""docs/strands.md: each Python block is a test item of its own (`docs/strands.md:42-60`), run here
because strands-agents lives in this venv (the page's front matter says `test_env: strands`)."""

from __future__ import annotations

import pytest
from tests.docs_harness import example_id, page_examples, run_block

EXAMPLES = page_examples("strands")


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_doc_block(example, request):
    run_block(example, EXAMPLES, request)
