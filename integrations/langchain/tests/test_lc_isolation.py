"""Audit mode is invisible to the agent (issue 20, item 2): the middleware's background probes add
nothing to what a streaming consumer sees, to the run's usage, to its callbacks or to its state."""

from __future__ import annotations

import pytest
from langchain.agents.middleware import SummarizationMiddleware
from memguard import Guard, Verdict
from memguard.testing.contract import RecordingSink

from langchain_memguard import MemGuardMiddleware
from lc_doubles import FactAgentModel, FixedSummarizer, PrefixScorer, RunSettings, make_agent
from lc_runs import run_streamed


def summarization() -> SummarizationMiddleware:
    return SummarizationMiddleware(model=FixedSummarizer(), trigger=("messages", 6), keep=("messages", 2))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_audit_probes_add_nothing_to_stream_usage_callbacks_or_state(mode):
    unguarded_model = FactAgentModel()
    compacting = run_streamed(make_agent(unguarded_model, [RunSettings(), summarization()]), mode=mode)

    sink = RecordingSink()
    guard = Guard(PrefixScorer({"ls -la": 0.97, "done, I forgot": 0.97}), mode="audit", sinks=[sink],
                  identical_is_safe=False)
    model = FactAgentModel()
    audited = run_streamed(make_agent(model, [RunSettings(), MemGuardMiddleware(summarization(), guard)]), mode=mode)
    assert guard.flush(30)
    guard.close()

    reviews = [d for d in sink.decisions if d.verdict is Verdict.AUDIT and d.reviewed and not d.pending]
    assert reviews, "audit mode reviewed nothing"
    # The full-context probes did run (one per review), on the agent's own model ...
    assert len(model.inputs) == len(unguarded_model.inputs) + len(reviews)
    # ... and the run saw none of them: same stream, usage, callbacks and final state.
    assert audited.streamed == compacting.streamed
    assert audited.usage == compacting.usage
    assert audited.recorder.agent_calls == compacting.recorder.agent_calls
    assert audited.transcript == compacting.transcript


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_audit_true_audits_on_an_enforcing_guard_without_a_second_guard(mode):
    compacting = run_streamed(make_agent(FactAgentModel(), [summarization()]), mode=mode)
    sink = RecordingSink()
    guard = Guard(PrefixScorer({"ls -la": 0.97, "done, I forgot": 0.97}), sinks=[sink], identical_is_safe=False)
    audited = run_streamed(make_agent(FactAgentModel(), [MemGuardMiddleware(summarization(), guard, audit=True)]),
                           mode=mode)
    assert guard.flush(30)
    guard.close()
    assert audited.transcript == compacting.transcript and audited.streamed == compacting.streamed
    finished = [d for d in sink.decisions if not d.pending]
    assert finished and all(d.verdict is Verdict.AUDIT and d.p_harmful == pytest.approx(0.97) for d in finished)
    assert guard.stats()["audit_completed"] == len(finished)
