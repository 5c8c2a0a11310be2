"""deepagents: why its own SummarizationMiddleware is refused, and the two ways that work instead
(docs/langchain.md, "Deep Agents"). Runs in the deepagents venv only."""

from __future__ import annotations

import pytest
from deepagents import create_deep_agent
from deepagents.backends import StateBackend
from deepagents.middleware.summarization import SummarizationMiddleware as DeepSummarization
from deepagents.middleware.summarization import SummarizationToolMiddleware
from langchain.agents.middleware import SummarizationMiddleware
from langchain_core.messages import HumanMessage
from memguard import Guard, Verdict
from memguard.testing.contract import RecordingSink

from langchain_memguard import MemGuardCallbackHandler, MemGuardMiddleware
from lc_doubles import FACT, FactAgentModel, FixedSummarizer, PrefixScorer, bash, signature

TASK = "Find the fact, then report it."
SYSTEM = "You are a careful programmer."


def harmful_when_forgotten() -> PrefixScorer:
    return PrefixScorer({"ls -la": 0.97, "done, I forgot": 0.97})


def deep_summarization() -> DeepSummarization:
    return DeepSummarization(model=FixedSummarizer(), backend=StateBackend(), trigger=("messages", 6),
                             keep=("messages", 2))


def test_deepagents_own_summarization_is_refused_with_the_alternatives():
    summarization = deep_summarization()
    for middleware in (summarization, SummarizationToolMiddleware(summarization)):
        with pytest.raises(TypeError, match="offloads the history") as refused:
            MemGuardMiddleware(middleware, Guard(harmful_when_forgotten()))
        message = str(refused.value)
        assert "MemGuardCallbackHandler" in message and 'name="SummarizationMiddleware"' in message


def test_a_guarded_langchain_summarization_replaces_the_deep_agent_default_in_place():
    sink = RecordingSink()
    guard = Guard(harmful_when_forgotten(), sinks=[sink], cooldown=0)
    inner = SummarizationMiddleware(model=FixedSummarizer(), trigger=("messages", 6), keep=("messages", 2))
    guarded = MemGuardMiddleware(inner, guard, name="SummarizationMiddleware")
    agent = create_deep_agent(model=FactAgentModel(), tools=[bash], system_prompt=SYSTEM, middleware=[guarded])
    state = agent.invoke({"messages": [HumanMessage(TASK)]})

    assert sink.reviews and all(d.verdict is Verdict.VETO for d in sink.decisions)
    assert f"the fact is {FACT}" in state["messages"][-1].content
    # deepagents' own summarisation is gone (replaced, not doubled): nothing offloaded, no summary event.
    assert not any(path.startswith("/conversation_history/") for path in state.get("files") or {})
    assert state.get("_summarization_event") is None


def test_the_callback_audits_deepagents_own_summarization_and_changes_nothing():
    plain_model = FactAgentModel()
    expected = create_deep_agent(model=plain_model, tools=[bash], system_prompt=SYSTEM,
                                 middleware=[deep_summarization()]).invoke({"messages": [HumanMessage(TASK)]})

    sink = RecordingSink()
    guard = Guard(harmful_when_forgotten(), mode="audit", sinks=[sink])
    handler = MemGuardCallbackHandler(guard, probe_model=FactAgentModel())  # the agent's own model
    model = FactAgentModel()
    agent = create_deep_agent(model=model, tools=[bash], system_prompt=SYSTEM, middleware=[deep_summarization()])
    state = agent.invoke({"messages": [HumanMessage(TASK)]}, {"callbacks": [handler]})
    assert guard.flush(30)
    guard.close()

    assert signature(state["messages"]) == signature(expected["messages"])
    assert len(model.inputs) == len(plain_model.inputs)  # the probes ran on the handler's probe model
    assert handler.detected >= 1 and len(sink.decisions) == handler.detected
    first = sink.decisions[0]
    assert first.verdict is Verdict.AUDIT and first.p_harmful == pytest.approx(0.97)
    assert first.recorded_action == "echo step 4" and first.candidates[0].proposed_action.startswith("ls -la")
