"""`MemGuardCondenser`: a condenser that lets memguard decide on every condensation it proposes.

OpenHands asks the agent's condenser for a `View` or a `Condensation` at the start of each step.
A `Condensation` is an event: the agent emits it and ends the step, and the next step's view
applies it. The guard reviews each `Condensation` the wrapped condenser proposes, against the
full view, probing the agent's LLM (with its tools) on both contexts:

- commit: the `Condensation` itself is returned;
- veto, under a SOFT requirement (event count): the view comes back unchanged, nothing is lost;
- under a HARD requirement (token overflow, an explicit `CondensationRequest`) a veto would bring
  the agent straight back (after a context-window error, in a loop), so the review runs with a
  hard budget: the lowest-risk candidate that can be stored is committed (verdict ``forced``);
- a fallback that only forgets events (and adds at most one summary) becomes a `Condensation`;
  one that edits messages (observation masking) becomes a new `View` for this step;
- audit mode returns the wrapped condenser's result at once and scores in the background.

The guard, the scorer, the probe LLM, tools and fallbacks are runtime state: they are not
serialized with the agent. A restored agent works again once `guard_agent` (or `attach`) gives
its condenser a guard.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from memguard import CompactionEvent, Decision, Guard, Verdict, to_messages
from openhands.sdk.agent.base import AgentBase
from openhands.sdk.context.condenser import CondenserBase
from openhands.sdk.context.condenser.base import CondensationRequirement
from openhands.sdk.context.view import View
from openhands.sdk.event import Condensation
from openhands.sdk.llm import LLM
from openhands.sdk.llm.call_context import resolve_llm_call_context
from openhands.sdk.tool import ToolDefinition
from pydantic import PrivateAttr, field_validator

from openhands_memguard.fallbacks import bind_fallbacks, check_fallbacks, strategy_name
from openhands_memguard.probe import AgentProbe, tools_of
from openhands_memguard.requirement import requirement_after_proposal, requirement_of
from openhands_memguard.views import GuardView, assistant_turns

__all__ = ["MemGuardCondenser", "guard_agent"]

logger = logging.getLogger("memguard.openhands")

AgentT = TypeVar("AgentT", bound=AgentBase)


@dataclass
class _Review:
    """Everything one review of one proposed `Condensation` needs."""

    view: GuardView
    proposal: Condensation
    event: CompactionEvent
    probe: AgentProbe
    hard: bool
    fallbacks: tuple[Any, ...] | None


def _hard_budget(guard: Guard, review: _Review) -> int | None:
    """Under HARD, a budget every candidate smaller than the full view fits: no veto, lowest risk wins.

    The wrapped condenser sized its own proposal for the real limit (in the agent LLM's tokens);
    a candidate that still overflows brings a context-window error, a new request and a new HARD
    review of the now smaller, stored view, so the rounds end.
    """
    if not review.hard:
        return None
    return max(1, guard.count_tokens(to_messages(review.event.before)) - 1)


def _conversation_id() -> str | None:
    """The running conversation's id: OpenHands scopes it around every agent step."""
    return resolve_llm_call_context(None).session_id


class _VetoClock:
    """When the guard last vetoed each conversation here, so cooling steps can skip the inner condenser.

    Mirrors the guard's own cooldown rule (after a veto at step ``s``, ``cooldown=N`` skips the
    steps ``s .. s+N``) from the decisions this condenser received; bounded like the guard's own
    table.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._vetoed_at: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, decision: Decision) -> None:
        if decision.verdict is Verdict.VETO and decision.reviewed and decision.mode == "enforce":
            with self._lock:
                self._vetoed_at[decision.conversation_id] = decision.step
                self._vetoed_at.move_to_end(decision.conversation_id)
                while len(self._vetoed_at) > self._size:
                    self._vetoed_at.popitem(last=False)

    def cooling(self, conversation_id: str, step: int, cooldown: int) -> bool:
        with self._lock:
            last = self._vetoed_at.get(conversation_id)
        return last is not None and last <= step <= last + cooldown


def _same_objects(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class MemGuardCondenser(CondenserBase):
    """Guard any OpenHands condenser with MemRM.

    ``MemGuardCondenser(inner, guard)`` wraps `inner`; `guard_agent` installs it around an
    agent's own condenser. Probes use `llm` and `tools` when given, else the ``agent_llm`` the
    agent passes to `condense` and the tools in the conversation's system prompt event (the
    agent's own, as it offered them). `fallbacks` (memguard strategies or other condensers) are
    tried, in order, before the guard's own chain. `strategy` names the proposal in audit records
    and the RM's perturbation tag. `on_decision` is called with each `Decision`.
    """

    inner: CondenserBase
    strategy: str | None = None

    _guard: Guard | None = PrivateAttr(default=None)
    _llm: LLM | None = PrivateAttr(default=None)
    _tools: tuple[ToolDefinition[Any, Any], ...] = PrivateAttr(default=())
    _fallbacks: tuple[Any, ...] = PrivateAttr(default=())
    _on_decision: Callable[[Decision], Any] | None = PrivateAttr(default=None)
    _last_decision: Decision | None = PrivateAttr(default=None)
    _vetoes: _VetoClock = PrivateAttr(default_factory=_VetoClock)

    def __init__(
        self,
        inner: CondenserBase | None = None,
        guard: Guard | None = None,
        *,
        llm: LLM | None = None,
        tools: Sequence[ToolDefinition[Any, Any]] = (),
        fallbacks: Sequence[Any] = (),
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
        **data: Any,
    ) -> None:
        if inner is not None:
            data["inner"] = inner
        data["strategy"] = strategy
        super().__init__(**data)
        if guard is not None:
            self.attach(guard, llm=llm, tools=tools, fallbacks=fallbacks, on_decision=on_decision)
        elif llm is not None or tools or fallbacks or on_decision is not None:
            raise ValueError("llm, tools, fallbacks and on_decision need a guard: MemGuardCondenser(inner, guard, ...)")

    @field_validator("inner")
    @classmethod
    def _not_guarded_twice(cls, inner: CondenserBase) -> CondenserBase:
        if isinstance(inner, MemGuardCondenser):  # pydantic turns only ValueError into a ValidationError
            raise ValueError(
                "the condenser is already a MemGuardCondenser: attach a guard to it instead of wrapping it")
        return inner

    def attach(
        self,
        guard: Guard,
        *,
        llm: LLM | None = None,
        tools: Sequence[ToolDefinition[Any, Any]] = (),
        fallbacks: Sequence[Any] = (),
        on_decision: Callable[[Decision], Any] | None = None,
    ) -> MemGuardCondenser:
        """Give this condenser its runtime parts (after a restore, or to change them); returns self."""
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        if llm is not None and not isinstance(llm, LLM):
            raise TypeError(f"llm must be an openhands LLM, got {type(llm).__name__}")
        self._guard = guard
        self._llm = llm
        self._tools = tuple(tools)
        self._fallbacks = check_fallbacks(fallbacks)
        self._on_decision = on_decision
        return self

    @property
    def guard(self) -> Guard | None:
        """The attached guard (None after a restore, until one is attached)."""
        return self._guard

    @property
    def last_decision(self) -> Decision | None:
        """The latest `Decision` (in audit mode, the pending one returned at once)."""
        return self._last_decision

    def get_llm(self) -> LLM | None:
        return self.inner.get_llm()

    def handles_condensation_requests(self) -> bool:
        return self.inner.handles_condensation_requests()

    # ------------------------------------------------------------------ condense

    def condense(self, view: View, agent_llm: LLM | None = None) -> View | Condensation:
        guard = self._require_guard()
        conversation_id = _conversation_id()
        if self._cooling(guard, view, agent_llm, conversation_id):
            return view
        result = self.inner.condense(view, agent_llm=agent_llm)
        if not isinstance(result, Condensation):
            return result
        review = self._prepare(guard, view, agent_llm, result, conversation_id)
        if guard.mode == "audit":
            self._record(guard.review(review.event, review.probe))
            return result
        decision = guard.review(review.event, review.probe, fallbacks=review.fallbacks,
                                hard_budget=_hard_budget(guard, review))
        return self._outcome(decision, review)

    async def acondense(self, view: View, agent_llm: LLM | None = None) -> View | Condensation:
        guard = self._require_guard()
        conversation_id = _conversation_id()
        if self._cooling(guard, view, agent_llm, conversation_id):
            return view
        result = await self.inner.acondense(view, agent_llm=agent_llm)
        if not isinstance(result, Condensation):
            return result
        review = self._prepare(guard, view, agent_llm, result, conversation_id)
        if guard.mode == "audit":  # scored on the guard's worker thread: the blocking probe
            self._record(await guard.areview(review.event, review.probe))
            return result
        budget = await asyncio.to_thread(_hard_budget, guard, review)  # counting may tokenize a long view
        decision = await guard.areview(review.event, review.probe.acall, fallbacks=review.fallbacks,
                                       hard_budget=budget)
        return self._outcome(decision, review)

    # ------------------------------------------------------------------ steps

    def _require_guard(self) -> Guard:
        if self._guard is None:
            raise RuntimeError(
                "MemGuardCondenser has no guard: guards are not serialized with the agent. "
                "After restoring an agent, call guard_agent(agent, guard) or agent.condenser.attach(guard)"
            )
        return self._guard

    def _cooling(self, guard: Guard, view: View, agent_llm: LLM | None, conversation_id: str | None) -> bool:
        """True while a recent veto holds for a SOFT requirement: skip the inner condenser's LLM call.

        The guard would veto without a review anyway; asking the inner condenser first would
        spend a summarisation call on a condensation that cannot be committed.
        """
        if guard.mode != "enforce" or conversation_id is None or guard.cooldown == 0:
            return False
        if not self._vetoes.cooling(conversation_id, assistant_turns(view.events), guard.cooldown):
            return False
        return requirement_of(self.inner, view, agent_llm) is CondensationRequirement.SOFT

    def _prepare(self, guard: Guard, view: View, agent_llm: LLM | None, proposal: Condensation,
                 conversation_id: str | None) -> _Review:
        llm = self._llm or agent_llm
        if llm is None:
            raise ValueError("MemGuardCondenser needs the agent's LLM to probe: pass llm=..., "
                             "or let the agent call condense (it passes its own)")
        guard_view = GuardView(view)
        hard = requirement_after_proposal(self.inner, view, agent_llm) is CondensationRequirement.HARD
        identity = {"conversation_id": conversation_id} if conversation_id is not None else {}
        event = CompactionEvent(
            before=guard_view.messages,
            candidate=guard_view.apply(proposal),
            strategy=self.strategy or strategy_name(self.inner),
            step=guard_view.step,
            metadata={"framework": "openhands", "condenser": type(self.inner).__name__,
                      "requirement": "hard" if hard else "soft"},
            **identity,
        )
        return _Review(
            view=guard_view,
            proposal=proposal,
            event=event,
            probe=AgentProbe(llm, self._tools or tools_of(view.events), guard_view),
            hard=hard,
            fallbacks=bind_fallbacks(self._fallbacks, guard.fallbacks, guard_view, agent_llm, hard=hard),
        )

    def _outcome(self, decision: Decision, review: _Review) -> View | Condensation:
        self._record(decision)
        if decision.verdict is Verdict.VETO:
            if not review.hard:
                return review.view.view
            logger.warning("memguard: nothing could be committed under a HARD requirement; using the %s "
                           "condensation so the agent does not loop", type(self.inner).__name__)
            return review.proposal
        if _same_objects(decision.messages, review.event.candidate):
            return review.proposal
        result = review.view.as_result(decision.messages)
        if review.hard and not isinstance(result, Condensation):  # PersistableOnly keeps this out
            logger.warning("memguard: the chosen candidate cannot be stored under a HARD requirement; "
                           "using the %s condensation", type(self.inner).__name__)
            return review.proposal
        return result

    def _record(self, decision: Decision) -> None:
        self._last_decision = decision
        self._vetoes.record(decision)
        if self._on_decision is None:
            return
        try:
            self._on_decision(decision)
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the agent
            logger.error("memguard: on_decision hook failed (%s)", type(exc).__name__)


def guard_agent(
    agent: AgentT,
    guard: Guard,
    *,
    llm: LLM | None = None,
    tools: Sequence[ToolDefinition[Any, Any]] = (),
    fallbacks: Sequence[Any] = (),
    strategy: str | None = None,
    on_decision: Callable[[Decision], Any] | None = None,
) -> AgentT:
    """A copy of `agent` whose condenser is guarded by `guard` (the agent itself is unchanged).

    Probes use the agent's own LLM and tools unless `llm`/`tools` are given. An agent whose
    condenser is already a `MemGuardCondenser` (a restored one) gets the guard attached instead
    of a second wrapper.
    """
    if not isinstance(agent, AgentBase):
        raise TypeError(f"agent must be an OpenHands agent, got {type(agent).__name__}")
    if not agent.supports_condenser:
        raise ValueError(f"{type(agent).__name__} manages its own context: there is no condenser to guard")
    condenser = agent.condenser
    if condenser is None:
        raise ValueError(
            "the agent has no condenser to guard: give it one, e.g. "
            "Agent(..., condenser=LLMSummarizingCondenser(llm=..., max_size=80, keep_first=4))"
        )
    options: dict[str, Any] = {"llm": llm, "tools": tools, "fallbacks": fallbacks, "on_decision": on_decision}
    if isinstance(condenser, MemGuardCondenser):
        guarded = condenser.model_copy(update={"strategy": strategy} if strategy is not None else {})
        guarded.attach(guard, **options)
    else:
        guarded = MemGuardCondenser(condenser, guard, strategy=strategy, **options)
    return agent.model_copy(update={"condenser": guarded})
