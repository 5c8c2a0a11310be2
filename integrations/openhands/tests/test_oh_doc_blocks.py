"""docs/openhands.md: each Python block is a test item of its own (`docs/openhands.md:42-60`), run here
because OpenHands lives in this Python 3.12 venv (the page's front matter says `test_env: openhands`)."""

from __future__ import annotations

import pytest
from tests.docs_harness import example_id, page_examples, run_block

EXAMPLES = page_examples("openhands")


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_doc_block(example, request):
    run_block(example, EXAMPLES, request)
