"""docs/google_adk.md: each Python block is a test item of its own (`docs/google_adk.md:42-60`), run here
because google-adk lives in this venv (the page's front matter says `test_env: google_adk`)."""

from __future__ import annotations

import pytest
from tests.docs_harness import example_id, page_examples, run_block

EXAMPLES = page_examples("google_adk")


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_doc_block(example, request):
    run_block(example, EXAMPLES, request)
