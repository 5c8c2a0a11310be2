"""memguard's integration contract on Pydantic AI's core compaction hook, `compact_history` (2.78+)."""

from __future__ import annotations

from typing import Any

import pytest

from pai_contract import PydanticAIContract, StreamedContract

pytest.importorskip("pydantic_ai.capabilities.compaction", reason="needs pydantic-ai-slim 2.78+ (compact_history)")

from pai_history import Overflowing, SummarizeHistory

pytestmark = pytest.mark.compact_history


class _MustReduce:
    """The must-reduce run: a model with a small context window, compacted only on overflow."""

    must_reduce_variant = True

    def make_must_reduce(self) -> tuple[Any, Any]:
        return Overflowing(), SummarizeHistory(max_messages=None)


class TestCompactHistoryContract(_MustReduce, PydanticAIContract):
    """`run_sync` and `run` with a summarizer on the `compact_history` hook."""

    make_compaction = SummarizeHistory


class TestCompactHistoryStreamingContract(_MustReduce, StreamedContract):
    """`run_stream_sync` and `run_stream_events` with the same summarizer."""

    make_compaction = SummarizeHistory
