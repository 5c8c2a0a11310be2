"""`condense`/`acondense` called directly: what comes back is the caller's own object where unchanged.

The wrapped condensers here are written for the test: a `RollingCondenser` that states its
requirement, and a bare `CondenserBase` that does not (then an unhandled condensation request in
the view makes it HARD).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from memguard import Guard, Score, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink
from openhands.sdk.context.condenser import CondenserBase, NoOpCondenser, PipelineCondenser, RollingCondenser
from openhands.sdk.context.condenser.base import CondensationRequirement
from openhands.sdk.context.view import View
from openhands.sdk.event import Condensation
from openhands.sdk.llm import LLM
from pydantic import PrivateAttr

from oh_doubles import agent_llm, make_agent, run
from openhands_memguard import GuardView, MemGuardCondenser


def _condensation(view: View) -> Condensation:
    return Condensation(forgotten_event_ids={e.id for e in view.events[2:-3]}, summary="Commands ran up to step 9.",
                        summary_offset=2, llm_response_id="fixed")


class StatedCondenser(RollingCondenser):
    requirement: CondensationRequirement | None = CondensationRequirement.SOFT
    _made: list[Condensation] = PrivateAttr(default_factory=list)

    def condensation_requirement(self, view: View, agent_llm: LLM | None = None) -> CondensationRequirement | None:
        return self.requirement

    def get_condensation(self, view: View, agent_llm: LLM | None = None) -> Condensation:
        self._made.append(_condensation(view))
        return self._made[-1]


class SilentCondenser(CondenserBase):
    _made: list[Condensation] = PrivateAttr(default_factory=list)

    def condense(self, view: View, agent_llm: LLM | None = None) -> View | Condensation:
        self._made.append(_condensation(view))
        return self._made[-1]


@pytest.fixture(scope="module")
def view() -> View:
    return run(make_agent(agent_llm(), None)).state.view


def condense(condenser: MemGuardCondenser, view: View, mode: str) -> Any:
    llm = agent_llm()
    if mode == "sync":
        return condenser.condense(view, agent_llm=llm)
    return asyncio.run(condenser.acondense(view, agent_llm=llm))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_commit_returns_the_inner_condensation_itself(view, mode):
    inner = StatedCondenser()
    guarded = MemGuardCondenser(inner, Guard(ConstantScorer(0.0), identical_is_safe=False))
    assert condense(guarded, view, mode) is inner._made[-1]
    assert guarded.last_decision is not None and guarded.last_decision.verdict is Verdict.COMMIT


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_soft_veto_returns_the_view_itself(view, mode):
    guarded = MemGuardCondenser(StatedCondenser(), Guard(ConstantScorer(1.0), identical_is_safe=False))
    assert condense(guarded, view, mode) is view
    assert guarded.last_decision is not None and guarded.last_decision.verdict is Verdict.VETO


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_hard_requirement_is_forced(view, mode):
    inner = StatedCondenser(requirement=CondensationRequirement.HARD)
    guarded = MemGuardCondenser(inner, Guard(ConstantScorer(1.0), identical_is_safe=False))
    assert condense(guarded, view, mode) is inner._made[-1]
    decision = guarded.last_decision
    assert decision is not None and decision.verdict is Verdict.FORCED


@pytest.mark.parametrize("requested", [False, True])
def test_a_condenser_that_states_no_requirement_is_judged_by_the_view(view, requested):
    inner = SilentCondenser()
    guarded = MemGuardCondenser(inner, Guard(ConstantScorer(1.0), identical_is_safe=False))
    seen = view.model_copy(update={"unhandled_condensation_request": requested})
    result = condense(guarded, seen, "sync")
    assert result is (inner._made[-1] if requested else seen)
    assert guarded.last_decision is not None
    assert guarded.last_decision.verdict is (Verdict.FORCED if requested else Verdict.VETO)


def test_no_condensation_proposed_means_no_review(view):
    guarded = MemGuardCondenser(StatedCondenser(requirement=None), Guard(ConstantScorer(1.0)))
    assert guarded.condense(view, agent_llm=agent_llm()) is view
    assert guarded.last_decision is None


@pytest.mark.parametrize(("members", "verdict"), [
    (lambda: [NoOpCondenser(), StatedCondenser(requirement=CondensationRequirement.HARD)], Verdict.FORCED),
    (lambda: [NoOpCondenser(), StatedCondenser()], Verdict.VETO),
])
def test_a_pipeline_takes_its_strongest_member_requirement(view, members, verdict):
    guard = Guard(ConstantScorer(1.0), identical_is_safe=False)
    guarded = MemGuardCondenser(PipelineCondenser(condensers=members()), guard)
    guarded.condense(view, agent_llm=agent_llm())
    assert guarded.last_decision is not None and guarded.last_decision.verdict is verdict


class HeldScorer:
    """Scores 0.0 once `release` is set: the worker lags behind the agent until then."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def score(self, prompts: list[str]) -> list[Score]:
        assert self.release.wait(30)
        return [Score(p_harmful=0.0, n_tokens=1) for _ in prompts]


def test_an_audit_review_sees_its_step_s_events_though_openhands_extends_the_view_in_place(view):
    # OpenHands hands the condenser its cached View and appends later events to it in place; the
    # worker, lagging behind, must build the review's views from the events of the review's step.
    scorer, sink = HeldScorer(), RecordingSink()
    live = View(events=list(view.events))
    inner = SilentCondenser()
    guarded = MemGuardCondenser(inner, Guard(scorer, mode="audit", sinks=[sink], identical_is_safe=False))
    expected = GuardView(View(events=list(view.events))).apply(_condensation(view))
    condense(guarded, View(events=list(view.events)), "sync")  # its scoring holds the worker
    assert condense(guarded, live, "sync") is inner._made[-1]
    live.events.extend(view.events[1:5])  # the agent goes on before the worker built anything
    live.unhandled_condensation_request = True
    scorer.release.set()
    assert guarded.guard is not None and guarded.guard.flush(30)
    decision = sink.decisions[-1]
    assert len(sink.decisions) == 2 and decision.verdict is Verdict.AUDIT and decision.reviewed
    assert [m["content"] for m in decision.messages] == [m["content"] for m in expected]
    guarded.guard.close()
