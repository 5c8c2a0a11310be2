"""memguard's integration contract on a real Strands `Agent`, once per path Strands reduces on.

- before a model call, ``per_turn``: ``SlidingWindowConversationManager(window_size=5, per_turn=True)``
  (a window that leaves nothing to trim at the end of the invocation, and a cooldown long enough
  that a vetoed run is not reviewed there either: only pending-call reviews, one extra call each);
- before a model call, proactive: ``SummarizingConversationManager(proactive_compression=...)``;
- end of invocation: ``SlidingWindowConversationManager`` after each of two invocations (nothing
  is pending, so both probes are extra: two calls per review).

Each class's ``must_reduce`` variant is the overflow scenario (the model raises
``ContextWindowOverflowException`` past a size) with that class's kind of manager, which must reduce.

Sync runs call ``agent(prompt)``; async runs consume ``agent.stream_async(prompt)``.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode, Variant
from strands.agent.conversation_manager import ConversationManager

from sa_doubles import CountingSliding, Run, arun, manager_for, run, transcript
from strands_memguard import MemGuardConversationManager


def _agent_run(result: Run, inner: ConversationManager | None) -> AgentRun:
    return AgentRun(
        transcript=(result.outputs, transcript(result.agent.messages)),
        model_calls=result.model.calls,  # probes included
        compactions=getattr(inner, "reductions", 0),  # the inner manager's reductions that really ran
        requests=list(result.model.requests),  # model id + settings + tool specs + tool choice + system prompt
        streamed=result.streamed,  # what a callback handler / stream_async consumer saw
        usage=dict(result.agent.event_loop_metrics.accumulated_usage),
    )


class _StrandsContract(IntegrationContract):
    path: ClassVar[str]

    must_reduce_variant = True

    def inner(self) -> ConversationManager:
        return manager_for(self.path)

    def overflow_inner(self) -> ConversationManager:
        """The manager of the must-reduce variant (a context-window overflow)."""
        return manager_for("overflow")

    def _scenario(self, variant: Variant | str, guard: Guard | None) -> tuple[str, ConversationManager | None, Any]:
        path = "overflow" if variant == "must_reduce" else self.path
        if variant == "plain":
            return path, None, None
        inner = self.overflow_inner() if variant == "must_reduce" else self.inner()
        manager = inner if guard is None else MemGuardConversationManager(inner, guard)
        return path, manager, inner

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode, conversation: int = 0) -> AgentRun:
        if mode == "async":
            return asyncio.run(self.arun_agent(variant, guard, conversation=conversation))
        path, manager, inner = self._scenario(variant, guard)
        return _agent_run(run(path, manager, "sync", conversation=conversation), inner)

    async def arun_agent(self, variant: Variant, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        path, manager, inner = self._scenario(variant, guard)
        return _agent_run(await arun(path, manager, conversation=conversation), inner)


class TestPerTurnContract(_StrandsContract):
    path = "per_turn"
    guard_options: ClassVar[dict[str, Any]] = {"cooldown": 10}

    def inner(self) -> ConversationManager:
        return CountingSliding(window_size=5, per_turn=True)

    def overflow_inner(self) -> ConversationManager:
        return CountingSliding(window_size=40, per_turn=True)  # trims only when the model overflows


class TestProactiveContract(_StrandsContract):
    path = "proactive"


class TestEndOfInvocationContract(_StrandsContract):
    path = "end"
    extra_calls_per_review = 2

    def overflow_inner(self) -> ConversationManager:
        return CountingSliding(window_size=40)
