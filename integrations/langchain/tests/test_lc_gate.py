"""The gate is asked before the wrapped compaction (issue 20, item 9; issue 21, context editing).

During a cooldown the middleware must not run the inner compaction at all: no summariser call,
no context edit. `ContextEditingMiddleware` re-proposes its edit at every model call (it edits a
copy of the request and never the state), so it is guarded per call with the same rules.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain.agents.middleware import ClearToolUsesEdit, ContextEditingMiddleware, SummarizationMiddleware
from langchain_core.messages import HumanMessage
from memguard import Guard, Verdict
from memguard.testing.contract import RecordingSink

from langchain_memguard import MemGuardMiddleware
from lc_doubles import FACT, CountingEdit, FactAgentModel, FixedSummarizer, PrefixScorer, make_agent, signature

TASK = "Find the fact, then report it."


def harmful_when_forgotten() -> PrefixScorer:
    return PrefixScorer({"ls -la": 0.97, "done, I forgot": 0.97})


def run(agent, mode):
    inputs = {"messages": [HumanMessage(TASK)]}
    state = agent.invoke(inputs) if mode == "sync" else asyncio.run(agent.ainvoke(inputs))
    return state["messages"]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("cooldown", [1, 2, 3])
def test_cooldown_never_pays_the_summarizer(mode, cooldown):
    summarizer = FixedSummarizer()
    inner = SummarizationMiddleware(model=summarizer, trigger=("messages", 6), keep=("messages", 2))
    sink = RecordingSink()
    guard = Guard(harmful_when_forgotten(), cooldown=cooldown, sinks=[sink])
    messages = run(make_agent(FactAgentModel(n_steps=10), [MemGuardMiddleware(inner, guard)]), mode)

    reviews = [d for d in sink.decisions if d.reviewed]
    skips = [d for d in sink.decisions if d.skipped == "cooldown"]
    assert reviews and all(d.verdict is Verdict.VETO for d in reviews)
    assert skips, "the cooldown skipped nothing"
    assert summarizer.calls == len(reviews)  # one summary per review, none thrown away
    assert f"the fact is {FACT}" in messages[-1].content
    # Exactly `cooldown` steps are skipped after each veto (the last veto may reach the end).
    steps = [d.step for d in sink.decisions]
    for veto in reviews[:-1]:
        skipped = [d.step for d in skips if veto.step < d.step <= veto.step + cooldown]
        assert skipped == list(range(veto.step + 1, veto.step + cooldown + 1)), steps


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_context_editing_is_guarded_per_call_and_not_computed_during_cooldown(mode):
    edit = CountingEdit(ClearToolUsesEdit(trigger=0, keep=1))
    sink = RecordingSink()
    guard = Guard(harmful_when_forgotten(), cooldown=2, sinks=[sink])
    plain = run(make_agent(FactAgentModel(n_steps=10)), "sync")
    messages = run(make_agent(FactAgentModel(n_steps=10),
                              [MemGuardMiddleware(ContextEditingMiddleware(edits=[edit]), guard)]), mode)

    reviews = [d for d in sink.decisions if d.reviewed]
    assert len(reviews) >= 2 and all(d.verdict is Verdict.VETO for d in reviews)
    assert any(d.skipped == "cooldown" for d in sink.decisions)
    assert edit.applied == len(reviews)  # the edit was computed for reviewed calls only
    assert signature(messages) == signature(plain)  # every edit vetoed: the run never forgot


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_context_editing_safe_edits_apply_to_their_call_only(mode):
    """A committed edit shapes that one model call; the state keeps every tool result."""
    edit = CountingEdit(ClearToolUsesEdit(trigger=0, keep=1))
    model = FactAgentModel()
    guard = Guard(PrefixScorer(default=0.02), identical_is_safe=False)
    messages = run(make_agent(model, [MemGuardMiddleware(ContextEditingMiddleware(edits=[edit]), guard)]), mode)
    assert "I forgot the fact" in messages[-1].content  # the committed edits made the agent forget
    assert any(FACT in str(m.content) for m in messages if m.type == "tool")  # ... but the state kept it
    assert edit.applied >= 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_context_over_the_models_window_is_never_vetoed(mode):
    """The model declares a 120-token window (`profile`) and refuses more: a veto would fail the
    step, so a step whose full context exceeds it must shrink, whatever the scorer says."""
    window = {"max_input_tokens": 120}
    plain = FactAgentModel(profile=window)
    with pytest.raises(Exception, match="tokens > 120"):
        run(make_agent(plain), "sync")  # never compacted: the run cannot finish
    compacting = run(make_agent(FactAgentModel(profile=window), [summarization()]), "sync")

    sink = RecordingSink()
    # on_error="closed": the full-context probe fails (the model refuses it), and still no veto.
    guard = Guard(harmful_when_forgotten(), sinks=[sink], cooldown=0, on_error="closed")
    messages = run(make_agent(FactAgentModel(profile=window), [MemGuardMiddleware(summarization(), guard)]), mode)
    reviews = [d for d in sink.decisions if d.reviewed]
    assert reviews and not any(d.verdict is Verdict.VETO for d in sink.decisions)
    assert signature(messages) == signature(compacting)


def summarization() -> SummarizationMiddleware:
    return SummarizationMiddleware(model=FixedSummarizer(), trigger=("messages", 6), keep=("messages", 2))
