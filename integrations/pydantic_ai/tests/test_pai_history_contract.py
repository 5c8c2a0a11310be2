"""memguard's integration contract on Pydantic AI's core compaction hook, `compact_history` (2.78+)."""

from __future__ import annotations

import pytest

from pai_contract import PydanticAIContract, StreamedContract

pytest.importorskip("pydantic_ai.capabilities.compaction", reason="needs pydantic-ai-slim 2.78+ (compact_history)")

from pai_history import SummarizeHistory

pytestmark = pytest.mark.compact_history


class TestCompactHistoryContract(PydanticAIContract):
    """`run_sync` and `run` with a summarizer on the `compact_history` hook."""

    make_compaction = SummarizeHistory


class TestCompactHistoryStreamingContract(StreamedContract):
    """`run_stream_sync` and `run_stream_events` with the same summarizer."""

    make_compaction = SummarizeHistory
