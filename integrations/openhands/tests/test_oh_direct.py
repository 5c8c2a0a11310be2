"""`condense`/`acondense` called directly: what comes back is the caller's own object where unchanged.

The wrapped condensers here are written for the test: a `RollingCondenser` that states its
requirement, and a bare `CondenserBase` that does not (then an unhandled condensation request in
the view makes it HARD).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from memguard import Guard, Verdict
from memguard.testing.contract import ConstantScorer
from openhands.sdk.context.condenser import CondenserBase, NoOpCondenser, PipelineCondenser, RollingCondenser
from openhands.sdk.context.condenser.base import CondensationRequirement
from openhands.sdk.context.view import View
from openhands.sdk.event import Condensation
from openhands.sdk.llm import LLM
from pydantic import PrivateAttr

from oh_doubles import agent_llm, make_agent, run
from openhands_memguard import MemGuardCondenser


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
