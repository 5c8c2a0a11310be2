"""Audit mode is invisible to the run: its probes are not billed, not streamed, not in the run's context.

Both compaction hooks: `before_model_request` (a capability of the user's own, both ends of the
range) and `compact_history` (2.78+).
"""

from __future__ import annotations

from typing import Any

import pytest
from memguard import Guard, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink
from pydantic_ai._run_context import get_current_run_context
from pydantic_ai.messages import ModelMessage
from pydantic_ai.usage import UsageLimits

from pai_doubles import TASK, ScriptedModel, make_agent, stream_events, transcript
from pydantic_ai_memguard import MemGuardCompaction
from test_pai_contract import KeepTaskAndLastStep


class ContextRecordingModel(ScriptedModel):
    """Notes, for every call, whether it ran inside an agent run's context."""

    def __init__(self) -> None:
        super().__init__()
        self.in_run: list[bool] = []

    def _note(self, messages: list[ModelMessage], info: Any) -> Any:
        self.in_run.append(get_current_run_context() is not None)
        return super()._note(messages, info)


def summarize_history() -> Any:
    from pai_history import SummarizeHistory

    return SummarizeHistory()


KINDS = [
    pytest.param(KeepTaskAndLastStep, id="before_model_request"),
    pytest.param(summarize_history, id="compact_history", marks=pytest.mark.compact_history),
]


@pytest.mark.parametrize("make", KINDS)
def test_audit_probes_are_not_billed_to_the_run(make):
    """A run that fits `UsageLimits(request_limit=N)` unguarded fits it under audit (issue 20, item 3)."""
    compacting = make_agent(ScriptedModel(), [make()]).run_sync(TASK)
    limit = UsageLimits(request_limit=compacting.usage.requests)
    sink = RecordingSink()
    guard = Guard(ConstantScorer(1.0), mode="audit", sinks=[sink], identical_is_safe=False)
    model = ScriptedModel()
    try:
        result = make_agent(model, [MemGuardCompaction(make(), guard)]).run_sync(TASK, usage_limits=limit)
        assert guard.flush(30.0)
    finally:
        guard.close()
    assert transcript(result.all_messages()) == transcript(compacting.all_messages())
    assert result.usage == compacting.usage
    assert sink.decisions and all(d.verdict is Verdict.AUDIT and d.p_harmful == 1.0 for d in sink.decisions)
    assert model.calls == compacting.usage.requests + len(sink.decisions)  # the probes did happen


@pytest.mark.parametrize("make", KINDS)
def test_audit_adds_nothing_to_the_stream_and_probes_outside_the_run(make):
    unguarded_events, compacting = stream_events(make_agent(ScriptedModel(), [make()]))
    sink = RecordingSink()
    guard = Guard(ConstantScorer(0.2), mode="audit", sinks=[sink], identical_is_safe=False)
    model = ContextRecordingModel()
    try:
        events, result = stream_events(make_agent(model, [MemGuardCompaction(make(), guard)]))
        assert guard.flush(30.0)
    finally:
        guard.close()
    assert events == unguarded_events
    assert transcript(result.all_messages()) == transcript(compacting.all_messages())
    assert result.usage == compacting.usage
    assert sink.decisions and all(not d.pending for d in sink.decisions)
    assert model.in_run.count(False) == len(sink.decisions)  # each audit probe ran outside the run's context
