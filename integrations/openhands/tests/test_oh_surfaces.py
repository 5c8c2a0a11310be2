"""OpenHands SDK 1.58's other condensation surfaces: pipelines stage by stage, hard context resets,
the condensation-request capability, and the core's gate in place of a cooldown of our own."""

from __future__ import annotations

from typing import Any

import pytest
from memguard import Guard, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink
from openhands.sdk.context.condenser import CondenserBase, NoOpCondenser, PipelineCondenser
from openhands.sdk.context.view import View
from openhands.sdk.event import Condensation
from openhands.sdk.llm import LLM

from oh_doubles import TagScorer, agent_llm, make_agent, run, summarizing
from openhands_memguard import guard_agent
from openhands_memguard.condenser import MemGuardCondenser


class WindowView(CondenserBase):
    """A view transform of the user's own (not stored): the first two events and the last four."""

    def condense(self, view: View, agent_llm: LLM | None = None) -> View | Condensation:
        if len(view.events) <= 8:
            return view
        return View(events=[*view.events[:2], *view.events[-4:]])


def guarded(scorer: Any, condenser: CondenserBase, mode: str = "sync", **options: Any) -> tuple[Any, RecordingSink]:
    sink = RecordingSink()
    guard = Guard(scorer, sinks=[sink], identical_is_safe=False, **options)
    conversation = run(guard_agent(make_agent(agent_llm(), condenser), guard), mode)
    return conversation, sink


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_each_pipeline_stage_is_reviewed_on_its_own_input_with_its_own_cooldown(mode):
    scorer = TagScorer({"window_view": 0.9}, default=0.1)
    pipeline = PipelineCondenser(condensers=[WindowView(), summarizing(max_size=8)])
    conversation, sink = guarded(scorer, pipeline, mode, cooldown=2)
    by_stage: dict[str, list[Any]] = {}
    for decision in sink.decisions:
        by_stage.setdefault(decision.proposed_strategy, []).append(decision)
    window, summary = by_stage["window_view"], by_stage["llm_summarizing_keep_first_2_max_size_8"]
    assert {d.verdict for d in window} == {Verdict.VETO}  # the harmful view transform: vetoed every time
    assert Verdict.COMMIT in {d.verdict for d in summary}  # the other stage was still reviewed, and committed
    first_veto = window[0]
    assert first_veto.conversation_id.endswith("/stage-0")
    assert any(d.step == first_veto.step and d.reviewed for d in summary)  # same step: not silenced by stage 0
    assert any(isinstance(e, Condensation) for e in conversation.state.events)


def test_a_hard_context_reset_is_never_vetoed():
    # minimum_progress 0.99: the normal condensation gives up, so an explicit request falls back
    # to LLMSummarizingCondenser.hard_context_reset (everything after the system prompt summarised)
    condenser = summarizing(max_size=100).model_copy(update={"minimum_progress": 0.99})
    conversation, sink = guarded(ConstantScorer(1.0), condenser)
    conversation.condense()
    (decision,) = sink.decisions
    assert decision.verdict is not Verdict.VETO and decision.reviewed
    assert decision.candidates[0].p_harmful == 1.0  # scored all the same, and recorded
    reset = conversation.state.events[-1]
    assert isinstance(reset, Condensation) and reset.summary_offset == 1
    assert len(conversation.state.view.events) == 2  # the system prompt and the summary


def test_the_condensation_request_capability_is_the_wrapped_condensers():
    guard = Guard(ConstantScorer(0.0))
    assert MemGuardCondenser(summarizing(), guard).handles_condensation_requests() is True
    assert MemGuardCondenser(NoOpCondenser(), guard).handles_condensation_requests() is False
    assert MemGuardCondenser(PipelineCondenser(condensers=[NoOpCondenser(), summarizing()]),
                             guard).handles_condensation_requests() is True
    conversation = run(guard_agent(make_agent(agent_llm(), NoOpCondenser()), guard))
    with pytest.raises(ValueError, match="does not handle condensation requests"):
        conversation.condense()  # as the unguarded agent would
