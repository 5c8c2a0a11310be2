"""memguard's integration contract on a real `agent_framework.Agent` with the framework's own compaction.

A scripted offline agent (a chat client built from the framework's layers, see `maf_doubles`)
whose next action depends on what it still sees, compacted by a real Agent Framework strategy
(`SlidingWindowStrategy`, `ToolResultCompactionStrategy`, `ContextWindowCompactionStrategy`),
unguarded or guarded by `MemGuardCompaction` (strategy and chat middleware). Agent Framework is
async only: every run is `await agent.run(...)`, plain or streamed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, ClassVar

from agent_framework import (
    ContextWindowCompactionStrategy,
    SlidingWindowStrategy,
    SummarizationStrategy,
    ToolResultCompactionStrategy,
)
from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode

from agent_framework_memguard import MemGuardCompaction
from maf_doubles import TASK, ScriptedChatClient, SummarizerClient, history, make_agent, transcript


def sliding_window() -> Any:
    return SlidingWindowStrategy(keep_last_groups=2)


def tool_results() -> Any:
    return ToolResultCompactionStrategy(keep_last_tool_call_groups=1)


def summarization() -> Any:
    return SummarizationStrategy(client=SummarizerClient(), target_count=2, threshold=1)


def context_window() -> Any:
    """Compacts only when the context is over the model's input budget (both thresholds at 100%)."""
    return ContextWindowCompactionStrategy(max_context_window_tokens=400, max_output_tokens=100,
                                           tool_eviction_threshold=1.0, truncation_threshold=1.0,
                                           keep_last_tool_call_groups=1)


def agent_run(**fields: Any) -> AgentRun:
    """An `AgentRun` with the fields this memguard's contract knows (older ones lack the newer fields)."""
    known = {f.name for f in dataclasses.fields(AgentRun)}
    return AgentRun(**{name: value for name, value in fields.items() if name in known})


class _Counting:
    """Counts the compactions the inner (wrapped) strategy made.

    Agent Framework calls a strategy before every model call and the strategy decides whether to
    compact (it returns whether it changed the list), so an invocation that returns False is no
    compaction: what the contract's `compactions` counts is the invocations that compacted. A
    guard that called the strategy during a cooldown would count more compactions than reviews.
    """

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.tokenizer = getattr(strategy, "tokenizer", None)
        self.input_budget_tokens = getattr(strategy, "input_budget_tokens", None)
        self.calls = 0

    async def __call__(self, messages: list[Any]) -> bool:
        changed: bool = await self.strategy(messages)
        self.calls += changed
        return changed


class _Contract(IntegrationContract):
    modes: ClassVar[tuple[RunMode, ...]] = ("async",)
    stream: ClassVar[bool] = False
    make_compaction = staticmethod(sliding_window)
    must_reduce_variant: ClassVar[bool] = True

    def run_agent(self, variant: Any, guard: Guard | None, *, mode: RunMode, conversation: int = 0) -> AgentRun:
        assert mode == "async", "Agent Framework runs are async"
        return asyncio.run(self.arun_agent(variant, guard, conversation=conversation))

    async def arun_agent(self, variant: Any, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        task = TASK if conversation == 0 else f"{TASK} #{conversation}"
        client = ScriptedChatClient(task=task)
        compaction: Any = None
        counting: _Counting | None = None
        middleware: list[Any] = []
        if variant != "plain":
            counting = _Counting(context_window() if variant == "must_reduce" else self.make_compaction())
            compaction = counting
            if guard is not None:
                compaction = MemGuardCompaction(counting, guard)
                middleware.append(compaction)
        agent = make_agent(client, compaction=compaction, middleware=middleware)
        session = agent.create_session(session_id=f"conversation-{conversation}")
        streamed: list[str] | None = None
        if self.stream:
            stream = agent.run(task, session=session, stream=True)
            streamed = [update.text async for update in stream]
            response = await stream.get_final_response()
        else:
            response = await agent.run(task, session=session)
            # What a non-streaming caller sees: the messages the run hands back.
            streamed = [message.text for message in response.messages]
        return agent_run(
            transcript=(response.text, transcript(history(session))),
            model_calls=client.calls,
            compactions=None if counting is None else counting.calls,
            requests=list(client.requests),
            streamed=streamed,
            usage=dict(response.usage_details or {}),
        )


class TestSlidingWindowContract(_Contract):
    """`SlidingWindowStrategy`: excludes all but the last groups (the first tool result with them)."""


class TestToolResultCompactionContract(_Contract):
    """`ToolResultCompactionStrategy`: collapses older tool-call groups into inserted summary messages."""

    make_compaction = staticmethod(tool_results)


class TestSummarizationContract(_Contract):
    """`SummarizationStrategy`: an LLM summary (its own client) replaces older groups."""

    make_compaction = staticmethod(summarization)


class TestStreamingContract(_Contract):
    """Streamed runs (`agent.run(..., stream=True)`): the winning probe is replayed as the step's stream."""

    stream = True
