"""memguard's integration contract on real `create_agent` graphs.

Every run streams (``stream``/``astream`` with ``stream_mode=["messages", "values"]``) under a
usage counter and with non-default model settings (`RunSettings`), and reports every `AgentRun`
field: the model calls and their request signatures (probes included), how many times the inner
compaction compacted (summariser calls, applied context edits), what the stream showed, the usage.

- `MemGuardMiddleware` around `SummarizationMiddleware` (a state compaction) and around
  `ContextEditingMiddleware` (a per-call request edit): the whole contract;
- `MemGuardCallbackHandler` (audit only): every test of what audit promises; the tests of
  enforce-mode verdicts do not apply to it and say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from langchain.agents.middleware import (
    AgentMiddleware,
    ClearToolUsesEdit,
    ContextEditingMiddleware,
    SummarizationMiddleware,
)
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RecordingSink, RunMode, Variant

from langchain_memguard import MemGuardCallbackHandler, MemGuardMiddleware
from lc_doubles import FACT, CountingEdit, FactAgentModel, FixedSummarizer, RunSettings, make_agent, signature
from lc_runs import TASK, StreamedRun, arun_streamed, run_streamed


def task(conversation: int) -> str:
    return TASK if conversation == 0 else f"{TASK} (conversation {conversation})"


@tool("bash")
def verbose_bash(command: str) -> str:
    """Run a shell command (verbose output)."""
    step = re.search(r"step (\d+)", command).group(1)
    return f"step {step}" + (f" {FACT}" if step == "1" else "") + "\n" + "log line\n" * 40


class _Built:
    """One agent of a contract run, with what its report counts."""

    def __init__(self, agent: Any, models: list[FactAgentModel], compactions: Callable[[], int],
                 callbacks: Sequence[Any] = ()) -> None:
        self.agent = agent
        self.models = models
        self.compactions = compactions
        self.callbacks = list(callbacks)

    def report(self, run: StreamedRun) -> AgentRun:
        return AgentRun(
            transcript=signature(run.messages),
            model_calls=sum(len(m.inputs) for m in self.models),
            compactions=self.compactions(),
            requests=[r for m in self.models for r in m.requests],
            streamed=run.streamed,
            usage=run.usage,
        )


class _LangChainContract(IntegrationContract):
    """The contract on a `create_agent` graph; subclasses choose the compaction and how it is guarded."""

    must_reduce_variant = True
    window: int = 120  # the model's declared input window in the must-reduce variant (tokens)

    def compaction(self) -> tuple[AgentMiddleware, Callable[[], int]]:
        """The inner compaction middleware and a count of the compactions it made."""
        raise NotImplementedError

    def agent_options(self, variant: Variant) -> dict[str, Any]:
        """Extra `make_agent`/model options for a variant (the must-reduce one declares a window)."""
        return {"model": {"profile": {"max_input_tokens": self.window}}} if variant == "must_reduce" else {}

    def guarded(self, inner: AgentMiddleware, guard: Guard,
                model: FactAgentModel) -> tuple[list[AgentMiddleware], list[Any]]:
        """The middleware list (and run callbacks) that guard `inner` in an agent run by `model`."""
        return [MemGuardMiddleware(inner, guard)], []

    def build(self, variant: Variant, guard: Guard | None, conversation: int) -> _Built:
        options = self.agent_options(variant)
        label = f" (conversation {conversation})" if conversation else ""
        model = FactAgentModel(label=label, **options.get("model", {}))
        inner, compactions = self.compaction()
        middleware: list[Any] = [RunSettings()]
        callbacks: list[Any] = []
        if variant == "compacting" or (variant != "plain" and guard is None):
            middleware.append(inner)
        elif variant != "plain":
            assert guard is not None
            guarding, callbacks = self.guarded(inner, guard, model)
            middleware.extend(guarding)
        agent = make_agent(model, middleware, checkpointer=InMemorySaver(), tools=options.get("tools"))
        models = [model, *(getattr(c, "probe_model", None) for c in callbacks)]
        return _Built(agent, [m for m in models if isinstance(m, FactAgentModel)], compactions, callbacks)

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode = "sync",
                  conversation: int = 0) -> AgentRun:
        built = self.build(variant, guard, conversation)
        run = run_streamed(built.agent, mode=mode, task=task(conversation), thread_id=f"conversation-{conversation}",
                           callbacks=built.callbacks)
        return built.report(run)

    async def arun_agent(self, variant: Variant, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        built = self.build(variant, guard, conversation)
        run = await arun_streamed(built.agent, task=task(conversation), thread_id=f"conversation-{conversation}",
                                  callbacks=built.callbacks)
        return built.report(run)


class _Summarization(_LangChainContract):
    def compaction(self) -> tuple[AgentMiddleware, Callable[[], int]]:
        summarizer = FixedSummarizer()
        inner = SummarizationMiddleware(model=summarizer, trigger=("messages", 6), keep=("messages", 2))
        return inner, lambda: summarizer.calls


class TestSummarizationContract(_Summarization):
    """`SummarizationMiddleware`, guarded: a state compaction, committed through a state update."""


class TestContextEditingContract(_LangChainContract):
    """`ContextEditingMiddleware`, guarded: it edits a copy of each request, so each call is guarded."""

    window = 250  # with verbose tool output and 3 steps: every edit is needed, and every edit fits

    def compaction(self) -> tuple[AgentMiddleware, Callable[[], int]]:
        edit = CountingEdit(ClearToolUsesEdit(trigger=0, keep=1))
        return ContextEditingMiddleware(edits=[edit]), lambda: edit.applied

    def agent_options(self, variant: Variant) -> dict[str, Any]:
        if variant != "must_reduce":
            return {}
        return {"model": {"profile": {"max_input_tokens": self.window}, "n_steps": 3}, "tools": [verbose_bash]}


_ENFORCE_ONLY = "MemGuardCallbackHandler only audits (it sees a compaction after the fact): no enforce verdicts"


class TestCallbackContract(_Summarization):
    """`MemGuardCallbackHandler` on an agent whose own `SummarizationMiddleware` compacts.

    The handler only audits, so every guard here audits (`make_guard`); the contract's tests of
    what audit promises run in full, and those of enforce-mode verdicts are not for it.
    """

    must_reduce_variant = False

    def make_guard(self, scorer: Any, sink: RecordingSink, **options: Any) -> Guard:
        return super().make_guard(scorer, sink, **{**options, "mode": "audit"})

    def guarded(self, inner: AgentMiddleware, guard: Guard,
                model: FactAgentModel) -> tuple[list[AgentMiddleware], list[Any]]:
        probe_model = FactAgentModel(**model.model_dump(include={"n_steps", "blocks", "label", "profile"}))
        return [inner], [MemGuardCallbackHandler(guard, probe_model=probe_model)]

    def test_safe_verdicts_end_like_the_unguarded_compaction(self, mode: RunMode) -> None:
        pytest.skip(_ENFORCE_ONLY)

    def test_harmful_verdicts_end_like_a_run_that_never_compacts(self, mode: RunMode) -> None:
        pytest.skip(_ENFORCE_ONLY)

    @pytest.mark.parametrize("on_error", ["open", "closed"])
    def test_scorer_failure_follows_on_error(self, mode: RunMode, on_error: str) -> None:
        pytest.skip(_ENFORCE_ONLY)

    def test_cooldown_skips_the_inner_compaction(self, mode: RunMode) -> None:
        pytest.skip(_ENFORCE_ONLY + " (and it never runs the compaction: the agent does)")

    @pytest.mark.parametrize("p_harmful", [0.0, 1.0], ids=["safe", "harmful"])
    def test_probes_carry_the_run_settings(self, mode: RunMode, p_harmful: float) -> None:
        pytest.skip(_ENFORCE_ONLY + "; test_audit_probes_are_requests_the_run_makes covers its probes")
