"""`MemGuardInputFilter`: guard a per-call input filter (`ToolOutputTrimmer`, yours) with MemRM.

`RunConfig(call_model_input_filter=f)` runs `f` right before every model call and changes only
that call's input, never the session. The filter sees the input, not the request: the model
settings, tools and per-turn `tool_choice` are resolved by the Runner around it. So the review
runs where the request is whole, in the run's model wrapped by `wrap_model` (`MemGuardModel`):

1. the guard's gate is asked first: during a cooldown the inner filter is not called at all;
2. the inner filter proposes; when it changed the input, the proposal is left with the call and
   the filter passes on the input unchanged;
3. at the call, the wrapped model probes that very request on the unfiltered and the filtered
   input, the guard scores the pair, and the call is answered by the winning probe: the filtered
   input's answer (commit), a fallback's (fallback), or the unfiltered input's (veto).

A review costs one extra model call (a sequential fallback one more each). A run whose model is
not wrapped sends the unfiltered input: nothing is trimmed unreviewed (an error is logged).
In audit mode the filter passes on the inner filter's input and the call goes out as it is; the
same probes run in the background.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from agents import Model, ModelResponse, ModelTracing
from agents.run import CallModelData, ModelInputData
from memguard import CompactionEvent, Decision, Gate, Guard, Verdict

from openai_agents_memguard.hooks import bind_fallbacks, call_hook, check_fallbacks, hook_name, notify
from openai_agents_memguard.items import from_view, gate_view, input_digest, to_view
from openai_agents_memguard.probing import RequestProbe
from openai_agents_memguard.requests import ModelRequest
from openai_agents_memguard.reuse import MemGuardModel, ProbeStore, expect_call, store_for
from openai_agents_memguard.sdk import dedup

__all__ = ["ConversationId", "MemGuardInputFilter", "filter_name"]

logger = logging.getLogger("memguard.openai_agents")

InputFilter = Callable[[CallModelData[Any]], Any]
ConversationId = str | Callable[[CallModelData[Any]], "str | None"] | None

filter_name = hook_name
"""A readable strategy name for an input filter (audit records, the RM's perturbation tag)."""


def _checked(input_filter: InputFilter, result: Any) -> ModelInputData:
    if not isinstance(result, ModelInputData):
        raise TypeError(f"{filter_name(input_filter)} returned {type(result).__name__}, not a ModelInputData")
    return result


def _fresh(data: CallModelData[Any], items: Sequence[Any], instructions: str | None) -> CallModelData[Any]:
    """The call's data with its own copy of the input list (filters may edit the list in place)."""
    return CallModelData(model_data=ModelInputData(input=list(items), instructions=instructions),
                         agent=data.agent, context=data.context)


def _unchanged(before: ModelInputData, after: ModelInputData) -> bool:
    if after is before:
        return True
    if before.instructions != after.instructions or len(before.input) != len(after.input):
        return False
    return all(a is b or a == b for a, b in zip(before.input, after.input, strict=True))


def _never_claimed(claimed: list[bool], owner: weakref.ref[MemGuardInputFilter]) -> None:
    found = owner()
    if not claimed[0] and found is not None:
        found.unwrapped()


class _FilteredCall:
    """One filtered model call, reviewed when it reaches the wrapped model (see `reuse.PendingCall`)."""

    def __init__(self, owner: MemGuardInputFilter, gate: Gate, data: CallModelData[Any], before: ModelInputData,
                 proposed: ModelInputData) -> None:
        self.owner = owner
        self.gate = gate
        self.data = data
        self.before = (before.instructions, dedup(before.input))
        self.proposed = (proposed.instructions, dedup(proposed.input))
        sent = self.proposed if gate.audit else self.before
        self._expected = input_digest(*sent)
        self._lock = threading.Lock()
        self._claimed = [False]
        weakref.finalize(self, _never_claimed, self._claimed, weakref.ref(owner))

    @property
    def claimed(self) -> bool:
        return self._claimed[0]

    def claim(self, request: ModelRequest) -> bool:
        if request.server_managed or not isinstance(request.input, list):
            return False
        with self._lock:
            if self._claimed[0] or input_digest(request.instructions, request.input) != self._expected:
                return False
            self._claimed[0] = True
            return True

    def _views(self) -> tuple[list[Any], list[Any]]:
        return to_view(self.before[1], self.before[0]), to_view(self.proposed[1], self.proposed[0])

    def _event(self) -> CompactionEvent:
        # Audit: the views are built on the guard's worker, off the run's path. The item lists are
        # this call's own (dedup made them), and their items are the dicts the SDK made for this
        # turn's input (it converts run items afresh for every call).
        fields: dict[str, Any] = dict(
            strategy=self.owner.strategy,
            conversation_id=self.gate.conversation_id,
            metadata={"framework": "openai-agents", "hook": "call_model_input_filter",
                      "filter": self.owner.strategy, "agent": self.data.agent.name},
        )
        if self.gate.audit:
            return CompactionEvent.deferred(self._views, **fields)
        before, candidate = self._views()
        return CompactionEvent(before=before, candidate=candidate, **fields)

    async def answer(self, model: Model, request: ModelRequest) -> ModelResponse | None:
        owner = self.owner
        if self.gate.audit:  # the call goes out as it is; the same probes, with no trace, in the background
            probe = RequestProbe(model, dataclasses.replace(request, tracing=ModelTracing.DISABLED))
            notify(owner.on_decision, await owner.guard.areview(self._event(), probe, gate=self.gate))
            return None
        probe = RequestProbe(model, request)
        decision = await owner.guard.areview(self._event(), probe, gate=self.gate,
                                       fallbacks=owner.fallbacks_for(self.data))
        notify(owner.on_decision, decision)
        if decision.verdict is Verdict.VETO:
            instructions, items = self.before
        else:
            instructions, items = from_view(decision.messages)
            items = dedup(items)
        won = probe.probe_for(decision.response)
        if won is not None and input_digest(won.request.instructions, won.request.input) == input_digest(
                instructions, items):
            return won.response
        return await request.with_input(instructions, items).get_response(model)


class MemGuardInputFilter:
    """A `call_model_input_filter` that lets MemRM decide whether `inner`'s edit is safe.

    ```python
    guarded = MemGuardInputFilter(ToolOutputTrimmer(recent_turns=2), guard)
    agent = Agent(name="coder", model=guarded.wrap_model(model), tools=[...])
    Runner.run_sync(agent, task, run_config=RunConfig(call_model_input_filter=guarded))
    ```

    The filter sees the input, not the request (the Runner resolves settings, tools and a
    per-turn `tool_choice` around it), so the review runs in the run's model wrapped by
    `wrap_model`: the gate is asked first (during a cooldown `inner` is not called), `inner`
    proposes, and the wrapped model probes the exact request on the unfiltered and the filtered
    input; the winning probe is the call's answer. A review costs one extra model call. A run
    whose model is not wrapped sends the unfiltered input (an error is logged): nothing is
    trimmed unreviewed. In audit mode the filtered input is sent and the probes run in the
    background.

    Args:
        inner: The input filter to guard (a `CallModelData -> ModelInputData` callable, sync or async).
        guard: The guard that decides.
        fallbacks: Tried in order before the guard's own chain: other input filters, or memguard strategies.
        strategy: The proposal's name in audit records (default: derived from `inner`).
        on_decision: Called with each `Decision` (errors are logged, never raised).
        conversation_id: A string or a function of the call's `CallModelData` (a thread or session id);
            keys the guard's cooldown. Without it the guard derives one from the conversation's opening.
        store: Where winning probes wait for their call (default: the one every wrapper of `guard` shares).

    Raises:
        TypeError: `inner`, `guard` or a fallback is not what it must be.
    """

    def __init__(
        self,
        inner: InputFilter,
        guard: Guard,
        *,
        fallbacks: Sequence[Any] = (),
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
        conversation_id: ConversationId = None,
        store: ProbeStore | None = None,
    ) -> None:
        if not callable(inner):
            raise TypeError(f"inner must be a call_model_input_filter (a callable), got {type(inner).__name__}")
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        self.inner = inner
        self.guard = guard
        self.strategy = strategy or filter_name(inner)
        self.fallbacks = check_fallbacks(fallbacks)
        self.on_decision = on_decision
        self.conversation_id = conversation_id
        self.store = store if store is not None else store_for(guard)
        self._warned = False

    def wrap_model(self, model: Model) -> MemGuardModel:
        """`model` wrapped so this filter's reviews run at its calls.

        Args:
            model: The model the run calls; set the result as the agent's or the run's model.

        Returns:
            A `MemGuardModel` that shares this filter's probe store.
        """
        return MemGuardModel(model, self.store, guard=self.guard, on_decision=self.on_decision)

    async def __call__(self, data: CallModelData[Any]) -> ModelInputData:
        expect_call(None)
        before = data.model_data
        conversation_id = self._conversation(data)
        view = gate_view(before.input, before.instructions, audit=self.guard.mode == "audit",
                         conversation_id=conversation_id)  # in audit mode at most the opening
        gate = self.guard.gate(view, conversation_id=conversation_id)
        if not gate.review:  # cooling down (enforce: `view` is the whole view): the inner filter is not asked
            notify(self.on_decision, await self.guard.askip(gate, view or [], strategy=self.strategy))
            return before
        proposed = _checked(self.inner, await call_hook(self.inner, _fresh(data, before.input, before.instructions)))
        if _unchanged(before, proposed):
            return proposed
        expect_call(_FilteredCall(self, gate, data, before, proposed))
        return proposed if gate.audit else before

    def fallbacks_for(self, data: CallModelData[Any]) -> tuple[Any, ...] | None:
        """This call's fallback chain: the input filters bound to its data, then the guard's own.

        Args:
            data: The call's `CallModelData`.

        Returns:
            The strategies to try in order, or None when this filter has no fallbacks of its own
            (the guard's chain applies).
        """

        def to_hook(messages: list[Any]) -> tuple[Any, ...]:
            instructions, items = from_view(messages)
            return (_fresh(data, items, instructions),)

        def to_view_of(result: Any) -> list[Any]:
            checked = _checked(self.inner, result)
            return to_view(checked.input, checked.instructions)

        return bind_fallbacks(self.fallbacks, self.guard, to_hook, to_view_of)

    def _conversation(self, data: CallModelData[Any]) -> str | None:
        cid = self.conversation_id(data) if callable(self.conversation_id) else self.conversation_id
        return None if cid is None else str(cid)

    def unwrapped(self) -> None:
        """Log, once per filter, that a proposal never reached a `MemGuardModel` (its call went out unfiltered)."""
        if not self._warned:
            self._warned = True
            logger.error(
                "memguard: a filtered call did not reach a MemGuardModel, so it was sent unfiltered and "
                "unreviewed: set the run's model to guarded.wrap_model(model) (agent.model or RunConfig.model)")
