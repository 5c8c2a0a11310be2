"""memguard's integration contract on a real ADK `App` and `InMemoryRunner`, with an offline model.

Both of ADK's compaction paths: in-flow (token threshold, before a model call; the app's
token-threshold config also compacts after each run, so its reviews cost up to two calls there:
test_adk_costs checks one per in-flow review exactly), post-invocation (a sliding window after
every second run), SSE streaming, and ADK's default summarizer (`inner=None`: an
`LlmEventSummarizer` over the agent's own model). Sync runs use `Runner.run`, async ones
`Runner.run_async`. The must-reduce variant sets `hard_token_limit` below every prompt.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, ClassVar

from google.adk.agents.run_config import RunConfig, StreamingMode
from google.adk.apps.base_events_summarizer import BaseEventsSummarizer
from google.adk.runners import InMemoryRunner
from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode, Variant

from adk_doubles import (
    SCRIPTS,
    DroppingSummarizer,
    Outcome,
    Script,
    ScriptedLlm,
    Shape,
    arun_conversation,
    make_app,
    run_conversation,
    streamed,
    transcript,
    usage,
)
from google_adk_memguard import guard_app

_FIELDS = {field.name for field in dataclasses.fields(AgentRun)}


class _Contract(IntegrationContract):
    shape: ClassVar[Shape] = "in_flow"
    streaming: ClassVar[bool] = False
    extra_calls_per_review = 2
    must_reduce_variant = True

    def make_summarizer(self) -> BaseEventsSummarizer | None:
        return DroppingSummarizer()

    def script(self, conversation: int) -> Script:
        script = SCRIPTS[self.shape]
        if conversation == 0:
            return script
        return Script((f"{script.turns[0]} (conversation {conversation})", *script.turns[1:]), script.steps_per_turn)

    def _build(self, variant: Variant, guard: Guard | None) -> tuple[Any, ScriptedLlm, Any]:
        llm = ScriptedLlm(steps_per_turn=SCRIPTS[self.shape].steps_per_turn)
        inner = None if variant == "plain" else self.make_summarizer()
        app = make_app(llm, inner, self.shape, compacting=variant != "plain")
        if guard is not None:  # must_reduce: past the hard limit from the first proposal on
            app = guard_app(app, guard, **({"hard_token_limit": 1} if variant == "must_reduce" else {}))
        return app, llm, inner

    def _result(self, outcome: Outcome, llm: ScriptedLlm, inner: Any) -> AgentRun:
        fields: dict[str, Any] = {
            "transcript": transcript(outcome),
            "model_calls": llm.n_calls,
            "compactions": llm.summaries if inner is None else inner.calls,
            "requests": list(llm.signatures),
            "streamed": streamed(outcome),  # the events the runner yields (partial ones too, under SSE)
            "usage": usage(outcome),
        }
        return AgentRun(**{name: value for name, value in fields.items() if name in _FIELDS})

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode, conversation: int = 0) -> AgentRun:
        if mode == "async":
            return asyncio.run(self.arun_agent(variant, guard, conversation=conversation))
        app, llm, inner = self._build(variant, guard)
        outcome = run_conversation(app, self.script(conversation), session_id=f"session-{conversation}",
                                   streaming=self.streaming, mode="sync")
        return self._result(outcome, llm, inner)

    async def arun_agent(self, variant: Variant, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        app, llm, inner = self._build(variant, guard)
        config = RunConfig(streaming_mode=StreamingMode.SSE if self.streaming else StreamingMode.NONE,
                           max_llm_calls=500)
        outcome = await arun_conversation(InMemoryRunner(app=app), app, self.script(conversation),
                                          session_id=f"session-{conversation}", config=config)
        return self._result(outcome, llm, inner)


class TestInFlowContract(_Contract):
    """Token-threshold compaction: reviewed before the model call, the winning probe served."""


class TestPostInvocationContract(_Contract):
    """Sliding-window compaction after every second run: two probes per review."""

    shape = "post_invocation"


class TestStreamingContract(_Contract):
    """In-flow compaction in SSE-streamed runs (probes stream too; a served response arrives whole)."""

    streaming = True


class TestDefaultSummarizerContract(_Contract):
    """`inner=None`: ADK's own `LlmEventSummarizer` over the agent's model, built on first use."""

    def make_summarizer(self) -> BaseEventsSummarizer | None:
        return None
