"""How badly a condensation is needed: SOFT (a veto may keep the view) or HARD (it may not).

`RollingCondenser.condensation_requirement` answers for the SDK's own condensers: for
`LLMSummarizingCondenser`, event count alone is SOFT, token overflow or an explicit
`CondensationRequest` is HARD. A condenser that does not say is judged by the view: an unhandled
condensation request is HARD (the agent asked for it after a context-window error, or the user
did), anything else SOFT.
"""

from __future__ import annotations

from typing import Literal

from openhands.sdk.context.condenser import CondenserBase, NoOpCondenser, PipelineCondenser, RollingCondenser
from openhands.sdk.context.condenser.base import CondensationRequirement
from openhands.sdk.context.view import View
from openhands.sdk.llm import LLM

__all__ = ["UNKNOWN", "Requirement", "requirement_after_proposal", "requirement_of"]

UNKNOWN: Literal["unknown"] = "unknown"
Requirement = CondensationRequirement | None | Literal["unknown"]


def _strongest(requirements: list[Requirement]) -> Requirement:
    if UNKNOWN in requirements:
        return UNKNOWN
    if CondensationRequirement.HARD in requirements:
        return CondensationRequirement.HARD
    if CondensationRequirement.SOFT in requirements:
        return CondensationRequirement.SOFT
    return None


def requirement_of(condenser: CondenserBase, view: View, llm: LLM | None) -> Requirement:
    """The condenser's own requirement for `view`, or UNKNOWN when it cannot tell us.

    UNKNOWN is also the answer for a pipeline holding a condenser that transforms views by
    itself: skipping such a pipeline would change the agent's context.
    """
    if isinstance(condenser, RollingCondenser):
        return condenser.condensation_requirement(view, agent_llm=llm)
    if isinstance(condenser, NoOpCondenser):
        return None
    if isinstance(condenser, PipelineCondenser):
        return _strongest([requirement_of(c, view, llm) for c in condenser.condensers])
    inner = getattr(condenser, "inner", None)  # a MemGuardCondenser (or another wrapper) inside
    if isinstance(inner, CondenserBase):
        return requirement_of(inner, view, llm)
    return UNKNOWN


def requirement_after_proposal(condenser: CondenserBase, view: View, llm: LLM | None) -> CondensationRequirement:
    """SOFT or HARD, once `condenser` has proposed a condensation of `view`."""
    found = requirement_of(condenser, view, llm)
    if found is CondensationRequirement.HARD:
        return CondensationRequirement.HARD
    if found is not CondensationRequirement.SOFT and view.unhandled_condensation_request:
        return CondensationRequirement.HARD
    return CondensationRequirement.SOFT
