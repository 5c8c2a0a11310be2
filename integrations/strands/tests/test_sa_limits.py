"""The limits the docs state, as Strands enforces them (so a Strands release that changes them shows here)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from memguard import Guard
from memguard.testing.contract import ConstantScorer, RecordingSink
from strands import Agent
from strands.agent.conversation_manager import NullConversationManager

from sa_doubles import ScriptedModel, build_agent, manager_for, run
from strands_memguard import MemGuardConversationManager


def _manager() -> MemGuardConversationManager:
    return MemGuardConversationManager(manager_for("per_turn"), Guard(ConstantScorer(0.0)))


def test_context_manager_makes_strands_ignore_the_conversation_manager():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent = Agent(model=ScriptedModel(), conversation_manager=_manager(), context_manager="auto",
                      callback_handler=None)
    assert isinstance(agent.conversation_manager, NullConversationManager)
    assert any("ignoring co-provided conversation_manager" in str(w.message) for w in caught)


class StatefulModel(ScriptedModel):
    @property
    def stateful(self) -> bool:
        return True


def test_a_stateful_model_rejects_a_conversation_manager():
    with pytest.raises(ValueError, match="stateful model"):
        Agent(model=StatefulModel(), conversation_manager=_manager(), callback_handler=None)


def test_a_manager_assigned_after_construction_misses_the_before_model_call_hooks():
    first = manager_for("per_turn")
    agent, _, _ = build_agent("per_turn", first)
    late = _manager()
    agent.conversation_manager = late  # Strands registered the first manager's hooks at construction
    agent("Find the fact, then report it.")
    assert first.reductions > 0, "the first manager kept reducing before each model call, unguarded"
    assert late.inner.reductions <= 1  # only the end of the invocation reached the guarded manager


def test_probes_never_go_through_the_agent(monkeypatch: Any):
    calls: list[Any] = []
    original = Agent.__call__

    def spy(self: Agent, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Agent, "__call__", spy)
    sink = RecordingSink()
    result = run("end", MemGuardConversationManager(manager_for("end"), Guard(ConstantScorer(0.0), sinks=[sink])))
    assert sink.reviews and len(calls) == len(result.outputs)  # only the test's own prompts
