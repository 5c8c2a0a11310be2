"""memguard's integration contract with pydantic-ai-harness compaction (pydantic-ai-slim 2.62 + harness 0.62)."""

from __future__ import annotations

from typing import Any

from pydantic_ai_harness.compaction import ClearToolResults, SlidingWindowCompaction

from pai_contract import PydanticAIContract, StreamedContract


def sliding_window() -> Any:
    return SlidingWindowCompaction(max_messages=6, keep_messages=3)


def clear_tool_results() -> Any:
    return ClearToolResults(max_messages=4, keep_pairs=1)


class TestSlidingWindowContract(PydanticAIContract):
    """`run_sync` and `run` with `SlidingWindowCompaction` (drops the oldest messages)."""

    make_compaction = staticmethod(sliding_window)


class TestClearToolResultsContract(PydanticAIContract):
    """`run_sync` and `run` with `ClearToolResults` (blanks old tool outputs in place)."""

    make_compaction = staticmethod(clear_tool_results)


class TestSlidingWindowStreamingContract(StreamedContract):
    """Streamed runs with `SlidingWindowCompaction`."""

    make_compaction = staticmethod(sliding_window)
