"""`MemGuardCondenser`: a condenser that lets memguard decide on every condensation it proposes.

OpenHands asks the agent's condenser for a `View` or a `Condensation` at the start of each step.
A `Condensation` is an event: the agent emits it and ends the step, and the next step's view
applies it. The guard reviews each `Condensation` the wrapped condenser proposes, against the
full view, probing the agent's LLM (with its tools) on both contexts:

- commit: the `Condensation` itself is returned;
- veto, under a SOFT requirement (event count): the view comes back unchanged, nothing is lost;
- under a HARD requirement (token overflow, an explicit `CondensationRequest`) a veto would bring
  the agent straight back (after a context-window error, in a loop), so the gate is asked with
  ``must_reduce=True``: never skipped, never vetoed; the proposal, a storable fallback, or the
  lowest-risk candidate that can be stored is committed (verdict ``forced``);
- the gate is asked before the wrapped condenser (each stage of a `PipelineCondenser`) runs:
  during a cooldown it is not asked at all;
- a fallback that only forgets events (and adds at most one summary) becomes a `Condensation`;
  one that edits messages (observation masking) becomes a new `View` for this step;
- audit mode returns the wrapped condenser's result at once and scores in the background (the
  guard's views of the events are built there, on the guard's worker).

The guard, the scorer, the probe LLM, tools and fallbacks are runtime state: they are not
serialized with the agent. A restored agent works again once `guard_agent` (or `attach`) gives
its condenser a guard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from memguard import CompactionEvent, Decision, Gate, Guard, Verdict
from memguard.guard import conversation_key
from openhands.sdk.agent.base import AgentBase
from openhands.sdk.context.condenser import CondenserBase, PipelineCondenser
from openhands.sdk.context.condenser.base import CondensationRequirement
from openhands.sdk.context.view import View
from openhands.sdk.event import Condensation
from openhands.sdk.llm import LLM
from openhands.sdk.llm.call_context import resolve_llm_call_context
from openhands.sdk.tool import ToolDefinition
from pydantic import PrivateAttr, field_validator

from openhands_memguard.fallbacks import bind_fallbacks, check_fallbacks, strategy_name
from openhands_memguard.probe import AgentProbe, tools_of
from openhands_memguard.requirement import requirement_after_proposal
from openhands_memguard.views import GuardView, assistant_turns

__all__ = ["MemGuardCondenser", "guard_agent"]

logger = logging.getLogger("memguard.openhands")

AgentT = TypeVar("AgentT", bound=AgentBase)


@dataclass(frozen=True)
class _Stage:
    """One condenser the guard reviews on its own: the wrapped one, or one stage of a pipeline."""

    condenser: CondenserBase
    strategy: str
    tag: str | None = None  # a pipeline stage's own cooldown key, beside the conversation's

    def conversation(self, conversation_id: str | None, view: GuardView | None) -> str | None:
        if self.tag is None:
            return conversation_id
        base = conversation_id if conversation_id is not None else conversation_key(view.messages if view else [])
        return f"{base}/{self.tag}"


@dataclass
class _Review:
    """Everything one review of one proposal (a `Condensation`, or a transformed `View`) needs."""

    view: GuardView | None  # None: an audit review, its views built on the guard's worker (`_AuditViews`)
    proposal: View | Condensation
    event: CompactionEvent
    probe: AgentProbe
    hard: bool
    fallbacks: tuple[Any, ...] | None


class _AuditViews:
    """An audit review's `CompactionEvent.deferred` build: the views, made on the guard's worker.

    OpenHands hands the condenser its cached `View`, which it extends in place as events are
    appended; the events themselves are frozen. So the agent's path copies only the lists of
    event references (and the request flag), and the worker turns them into the guard's views,
    giving the probe the `GuardView` that maps its contexts back to events.
    """

    def __init__(self, view: View, result: View | Condensation, probe: AgentProbe) -> None:
        self.view = View.model_construct(events=list(view.events),
                                         unhandled_condensation_request=view.unhandled_condensation_request)
        self.result = result if isinstance(result, Condensation) else View.model_construct(events=list(result.events))
        self.probe = probe

    def __call__(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        guard_view = GuardView(self.view)
        self.probe.view = guard_view
        result = self.result
        candidate = guard_view.apply(result) if isinstance(result, Condensation) else guard_view.show(result.events)
        return guard_view.messages, candidate


def _conversation_id() -> str | None:
    """The running conversation's id: OpenHands scopes it around every agent step."""
    return resolve_llm_call_context(None).session_id


def _same_objects(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class MemGuardCondenser(CondenserBase):
    """Guard any OpenHands condenser with MemRM.

    OpenHands asks the agent's condenser for a `View` or a `Condensation` at the start of each
    step. Each proposal of the wrapped condenser is reviewed against the full view, the agent's
    LLM probed (with its tools) on both contexts; a `Condensation` ends the step, so a probe is
    never the step's response and a review costs two extra LLM calls. Commit returns the
    proposal. A veto under a SOFT requirement (event count) returns the view unchanged. Under a
    HARD requirement (token overflow, an explicit `CondensationRequest`) a veto would bring the
    agent straight back, so that review must reduce: the proposal, a storable fallback, or the
    lowest-risk candidate that can be stored is committed. During a cooldown the wrapped
    condenser (each stage of a `PipelineCondenser`) is not asked at all. Audit mode returns the
    wrapped condenser's result at once and scores in the background.

    `guard_agent` installs it around an agent's own condenser. The guard, the probe LLM, tools
    and fallbacks are runtime state, not serialized with the agent: a restored agent works again
    once `guard_agent` (or `attach`) gives its condenser a guard.

    Args:
        inner: The condenser to guard; each stage of a `PipelineCondenser` is reviewed on its own.
        guard: The guard; None leaves it to `attach` (OpenHands restoring an agent passes none).
        llm: The LLM to probe (default: the ``agent_llm`` the agent passes to `condense`).
        tools: The tools to probe with (default: those in the conversation's system prompt
            event, as the agent offered them).
        fallbacks: memguard strategies or other condensers, tried in order before the guard's own
            chain.
        strategy: The proposal's name in audit records and MemRM's perturbation tag (default:
            from the condenser, see `strategy_name`).
        on_decision: Called with each `Decision`; an exception it raises is logged, never raised
            into the agent.
        **data: Other fields, as pydantic passes them when OpenHands restores an agent.

    Raises:
        ValueError: `llm`, `tools`, `fallbacks` or `on_decision` are given without a guard, or
            `inner` is already a `MemGuardCondenser` (a pydantic `ValidationError`).
        TypeError: `guard` is not a `Guard`, `llm` is not an OpenHands `LLM`, or a fallback is
            neither a condenser nor a memguard strategy.
    """

    inner: CondenserBase
    """The guarded condenser (serialized with the agent)."""
    strategy: str | None = None
    """The proposal's name in audit records (None: from the condenser)."""

    _guard: Guard | None = PrivateAttr(default=None)
    _llm: LLM | None = PrivateAttr(default=None)
    _tools: tuple[ToolDefinition[Any, Any], ...] = PrivateAttr(default=())
    _fallbacks: tuple[Any, ...] = PrivateAttr(default=())
    _on_decision: Callable[[Decision], Any] | None = PrivateAttr(default=None)
    _last_decision: Decision | None = PrivateAttr(default=None)

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
        """Give this condenser its runtime parts: after a restore, or to change them.

        Args:
            guard: The guard.
            llm: The LLM to probe (default: the agent's, passed to `condense`).
            tools: The tools to probe with (default: the agent's, from the conversation).
            fallbacks: memguard strategies or other condensers, tried before the guard's own chain.
            on_decision: Called with each `Decision`.

        Returns:
            This condenser.

        Raises:
            TypeError: `guard` is not a `Guard`, `llm` is not an OpenHands `LLM`, or a fallback is
                neither a condenser nor a memguard strategy.
        """
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
        """The wrapped condenser's LLM.

        See `openhands.sdk.context.condenser.CondenserBase.get_llm`.

        Returns:
            The LLM the wrapped condenser uses, if any.
        """
        return self.inner.get_llm()

    def handles_condensation_requests(self) -> bool:
        """Whether the wrapped condenser handles a `CondensationRequest`.

        See `openhands.sdk.context.condenser.CondenserBase.handles_condensation_requests`.

        Returns:
            The wrapped condenser's answer.
        """
        return self.inner.handles_condensation_requests()

    # ------------------------------------------------------------------ condense

    def _stages(self) -> list[_Stage]:
        """Each stage of a `PipelineCondenser` is reviewed on its own input; any other condenser is one stage."""
        if not isinstance(self.inner, PipelineCondenser):
            return [_Stage(self.inner, self.strategy or strategy_name(self.inner))]
        stages = []
        for index, condenser in enumerate(self.inner.condensers):
            name = strategy_name(condenser)
            stages.append(_Stage(condenser, f"{self.strategy}/{name}" if self.strategy else name, f"stage-{index}"))
        return stages

    def condense(self, view: View, agent_llm: LLM | None = None) -> View | Condensation:
        """Ask the wrapped condenser, and review what it proposes (see the class).

        See `openhands.sdk.context.condenser.CondenserBase.condense`.

        Returns:
            The proposal, a fallback's `Condensation` (or `View`, for this step only), or `view`
            unchanged (a veto, a cooldown, or nothing proposed).

        Raises:
            RuntimeError: No guard is attached (a restored agent before `attach`).
            ValueError: A proposal needs a review and there is no LLM to probe.
        """
        guard = self._require_guard()
        conversation_id = _conversation_id()
        result: View | Condensation = view
        for stage in self._stages():
            if isinstance(result, Condensation):  # a pipeline stops at its first condensation
                break
            result = self._condense_stage(guard, stage, result, agent_llm, conversation_id)
        return result

    async def acondense(self, view: View, agent_llm: LLM | None = None) -> View | Condensation:
        """`condense` for async agents: the probes await ``LLM.agenerate``.

        See `openhands.sdk.context.condenser.CondenserBase.acondense`.

        Returns:
            What `condense` returns.

        Raises:
            RuntimeError: No guard is attached (a restored agent before `attach`).
            ValueError: A proposal needs a review and there is no LLM to probe.
        """
        guard = self._require_guard()
        conversation_id = _conversation_id()
        result: View | Condensation = view
        for stage in self._stages():
            if isinstance(result, Condensation):
                break
            result = await self._acondense_stage(guard, stage, result, agent_llm, conversation_id)
        return result

    def _condense_stage(self, guard: Guard, stage: _Stage, view: View, agent_llm: LLM | None,
                        conversation_id: str | None) -> View | Condensation:
        gate, guard_view = self._gate(guard, stage, view, agent_llm, conversation_id)
        if not gate.review:  # cooling down: the wrapped condenser is not asked (no summary paid for)
            self._record(guard.skip(gate, (guard_view or GuardView(view)).messages, strategy=stage.strategy))
            return view
        result = stage.condenser.condense(view, agent_llm=agent_llm)
        review = self._prepare(guard, gate, stage, view, agent_llm, result, guard_view)
        if review is None:
            return result
        decision = guard.review(review.event, review.probe, gate=gate, fallbacks=review.fallbacks)
        return self._outcome(decision, review)

    async def _acondense_stage(self, guard: Guard, stage: _Stage, view: View, agent_llm: LLM | None,
                               conversation_id: str | None) -> View | Condensation:
        gate, guard_view = self._gate(guard, stage, view, agent_llm, conversation_id)
        if not gate.review:
            before = (guard_view or GuardView(view)).messages
            self._record(await guard.askip(gate, before, strategy=stage.strategy))
            return view
        result = await stage.condenser.acondense(view, agent_llm=agent_llm)
        review = self._prepare(guard, gate, stage, view, agent_llm, result, guard_view)
        if review is None:
            return result
        probe = review.probe.acall if not gate.audit else review.probe  # audit: the worker's blocking probe
        decision = await guard.areview(review.event, probe, gate=gate, fallbacks=review.fallbacks)
        return self._outcome(decision, review)

    # ------------------------------------------------------------------ steps

    def _require_guard(self) -> Guard:
        if self._guard is None:
            raise RuntimeError(
                "MemGuardCondenser has no guard: guards are not serialized with the agent. "
                "After restoring an agent, call guard_agent(agent, guard) or agent.condenser.attach(guard)"
            )
        return self._guard

    def _gate(self, guard: Guard, stage: _Stage, view: View, agent_llm: LLM | None,
              conversation_id: str | None) -> tuple[Gate, GuardView | None]:
        """The core's gate, asked before the stage runs: HARD requirements must reduce (never skipped, never vetoed)."""
        hard = requirement_after_proposal(stage.condenser, view, agent_llm) is CondensationRequirement.HARD
        guard_view = GuardView(view) if conversation_id is None else None  # a derived id reads the opening
        gate = guard.gate(None if guard_view is None else guard_view.messages,
                          conversation_id=stage.conversation(conversation_id, guard_view),
                          step=assistant_turns(view.events), must_reduce=hard)
        return gate, guard_view

    def _prepare(self, guard: Guard, gate: Gate, stage: _Stage, view: View, agent_llm: LLM | None,
                 result: View | Condensation, guard_view: GuardView | None) -> _Review | None:
        """The review of what the stage returned, or None when it proposed nothing."""
        if isinstance(result, View) and (result is view or _same_objects(result.events, view.events)):
            return None
        llm = self._llm or agent_llm
        if llm is None:
            raise ValueError("MemGuardCondenser needs the agent's LLM to probe: pass llm=..., "
                             "or let the agent call condense (it passes its own)")
        tools = self._tools or tools_of(view.events)
        fields: dict[str, Any] = {
            "strategy": stage.strategy,
            "conversation_id": gate.conversation_id,
            "metadata": {"framework": "openhands", "condenser": type(stage.condenser).__name__,
                         "requirement": "hard" if gate.must_reduce else "soft",
                         "proposal": "condensation" if isinstance(result, Condensation) else "view"},
        }
        if gate.audit:  # the views are built on the guard's worker; the gate counted the same step
            probe = AgentProbe(llm, tools, None, isolated=True)
            views = _AuditViews(view, result, probe)
            return _Review(view=None, proposal=result, event=CompactionEvent.deferred(views, step=gate.step, **fields),
                           probe=probe, hard=gate.must_reduce, fallbacks=None)
        guard_view = guard_view or GuardView(view)
        candidate = guard_view.apply(result) if isinstance(result, Condensation) else guard_view.show(result.events)
        event = CompactionEvent(before=guard_view.messages, candidate=candidate, step=guard_view.step, **fields)
        return _Review(
            view=guard_view,
            proposal=result,
            event=event,
            probe=AgentProbe(llm, tools, guard_view),
            hard=gate.must_reduce,
            fallbacks=bind_fallbacks(self._fallbacks, guard.fallbacks, guard_view, agent_llm, hard=gate.must_reduce),
        )

    def _outcome(self, decision: Decision, review: _Review) -> View | Condensation:
        self._record(decision)
        if decision.verdict is Verdict.AUDIT or review.view is None:  # only an audit review defers its view
            return review.proposal
        if decision.verdict is Verdict.VETO:
            if not review.hard:
                return review.view.view
            logger.warning("memguard: nothing could be committed under a HARD requirement; using the %s "
                           "condensation so the agent does not loop", decision.proposed_strategy)
            return review.proposal
        if _same_objects(decision.messages, review.event.candidate):
            return review.proposal
        result = review.view.as_result(decision.messages)
        if review.hard and not isinstance(result, Condensation):  # PersistableOnly keeps this out
            logger.warning("memguard: the chosen candidate cannot be stored under a HARD requirement; "
                           "using the %s proposal", decision.proposed_strategy)
            return review.proposal
        return result

    def _record(self, decision: Decision) -> None:
        self._last_decision = decision
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
    """A copy of `agent` whose condenser is guarded by `guard`; the agent itself is unchanged.

    An agent whose condenser is already a `MemGuardCondenser` (a restored one) gets the guard
    attached instead of a second wrapper.

    Args:
        agent: The OpenHands agent.
        guard: The guard.
        llm: The LLM to probe (default: the agent's own).
        tools: The tools to probe with (default: the agent's own).
        fallbacks: memguard strategies or other condensers, tried before the guard's own chain.
        strategy: The proposal's name in audit records (default: from the condenser).
        on_decision: Called with each `Decision`.

    Returns:
        The copy, with a `MemGuardCondenser` as its condenser.

    Raises:
        TypeError: `agent` is not an OpenHands agent, or an option has the wrong type (see
            `MemGuardCondenser`).
        ValueError: The agent manages its own context, or has no condenser to guard.
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
