"""Reviewing a rewrite of the run's history before the next agent's first call.

A handoff filter (`Handoff.input_filter`, `RunConfig.handoff_input_filter`, nested handoff
history) and a `session_input_callback` rewrite what the next agent sees for the rest of the run,
so the decision is taken in the hook itself, before the rewrite takes effect: the gate is asked
before the hook runs (a cooling conversation's hook is not called), the next agent is probed with
the request its first call sends (built as the Runner builds it, `sdk.next_request`), and the
winning probe waits in the `ProbeStore` for that call, which it answers only if the call is the
identical request (so a run whose model is wrapped by `MemGuardModel` pays one extra call per
review, two otherwise).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from agents import Agent, Model, RunConfig, RunContextWrapper
from memguard import CompactionEvent, Decision, Gate, Guard, Verdict

from openai_agents_memguard.hooks import bind_fallbacks, check_fallbacks, hook_name, notify
from openai_agents_memguard.items import from_view, gate_view, to_view
from openai_agents_memguard.probing import RequestProbe, probe_model
from openai_agents_memguard.reuse import MemGuardModel, ProbeStore, store_for
from openai_agents_memguard.sdk import next_request, resolve_model

__all__ = ["Rewrite", "RewriteHook", "RewriteReviewer"]

T = TypeVar("T")


@dataclass
class Rewrite:
    """One rewrite under review: the next agent, its instructions and the gate's answer."""

    agent: Agent[Any]
    wrapper: RunContextWrapper[Any]
    instructions: str | None
    before: list[Any]
    gate: Gate

    @property
    def view(self) -> list[Any]:
        return to_view(self.before, self.instructions)


class RewriteReviewer:
    """What a history-rewrite wrapper shares: the guard, the run's config, the store, the user's hook."""

    def __init__(self, guard: Guard, *, run_config: RunConfig | None, model: Model | None, store: ProbeStore,
                 strategy: str, on_decision: Callable[[Decision], Any] | None, hook: str) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        if model is not None and not isinstance(model, Model):
            raise TypeError(f"model must be an agents.Model instance, got {type(model).__name__}")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise TypeError(f"run_config must be an agents.RunConfig, got {type(run_config).__name__}")
        self.guard = guard
        self.run_config = run_config
        self.model = model
        self.store = store
        self.strategy = strategy
        self.on_decision = on_decision
        self.hook = hook

    async def open(self, agent: Agent[Any], wrapper: RunContextWrapper[Any], before: Sequence[Any],
                   conversation_id: str | None) -> Rewrite:
        """Ask the gate about `before` (the next agent's input without the rewrite)."""
        instructions = await agent.get_system_prompt(wrapper)
        items = list(before)
        view = gate_view(items, instructions, audit=self.guard.mode == "audit", conversation_id=conversation_id)
        gate = self.guard.gate(view, conversation_id=conversation_id)
        return Rewrite(agent, wrapper, instructions, items, gate)

    async def skip(self, rewrite: Rewrite) -> Decision:
        """Publish a cooling step (the wrapped hook was not called)."""
        decision = await self.guard.askip(rewrite.gate, rewrite.view, strategy=self.strategy)
        notify(self.on_decision, decision)
        return decision

    async def review(self, rewrite: Rewrite, proposed: Sequence[Any], fallbacks: Sequence[Any] | None) -> Decision:
        """Review `proposed` against `rewrite.before`; the winning probe waits for the identical call."""
        model = probe_model(rewrite.agent, resolve_model(rewrite.agent, self.run_config, self.model))
        request = await next_request(rewrite.agent, rewrite.wrapper, self.run_config, rewrite.before,
                                     audit=rewrite.gate.audit)
        probe = RequestProbe(model, request)
        fields: dict[str, Any] = dict(
            strategy=self.strategy,
            conversation_id=rewrite.gate.conversation_id,
            metadata={"framework": "openai-agents", "hook": self.hook, "agent": rewrite.agent.name},
        )
        if rewrite.gate.audit:
            # Audit: the views are built on the guard's worker, off the run's path. Both lists are
            # this review's own (`open` copied `before`; `proposed` is copied here), and their items
            # are dicts made afresh for this review (`input_of` normalizes every item into a new
            # dict, `sdk.turn_input`; nested values are the SDK's item records, which it does not
            # edit): the Runner builds the next agent's input from its own items, never these.
            before, instructions, after = rewrite.before, rewrite.instructions, list(proposed)
            event = CompactionEvent.deferred(lambda: (to_view(before, instructions), to_view(after, instructions)),
                                             **fields)
        else:
            event = CompactionEvent(before=rewrite.view, candidate=to_view(proposed, rewrite.instructions), **fields)
        decision = await self.guard.areview(event, probe, gate=rewrite.gate, fallbacks=fallbacks)
        notify(self.on_decision, decision)
        won = probe.probe_for(decision.response)
        if won is not None and not rewrite.gate.audit:
            self.store.put(won.request.key(model), won.response)
        return decision


class RewriteHook(Generic[T]):
    """Base of the history-rewrite wrappers: the hook's result type `T`, reviewed as the next agent's input."""

    hook = "history_rewrite"

    def __init__(self, inner: Any, guard: Guard, *, run_config: RunConfig | None, model: Model | None,
                 fallbacks: Sequence[Any], strategy: str | None, on_decision: Callable[[Decision], Any] | None,
                 store: ProbeStore | None) -> None:
        if not callable(inner):
            raise TypeError(f"inner must be a {self.hook} (a callable), got {type(inner).__name__}")
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        self.inner = inner
        self.fallbacks = check_fallbacks(fallbacks)
        self.reviewer = RewriteReviewer(
            guard, run_config=run_config, model=model, store=store if store is not None else store_for(guard),
            strategy=strategy or hook_name(inner), on_decision=on_decision, hook=self.hook)

    @property
    def guard(self) -> Guard:
        return self.reviewer.guard

    @property
    def store(self) -> ProbeStore:
        return self.reviewer.store

    def wrap_model(self, model: Model) -> MemGuardModel:
        """`model` wrapped so the winning probe answers the next agent's first call."""
        return MemGuardModel(model, self.store, guard=self.guard, on_decision=self.reviewer.on_decision)

    def input_of(self, result: T) -> list[Any]:
        """The next agent's model input when the hook returned `result`."""
        raise NotImplementedError

    def from_items(self, unchanged: T, items: list[Any]) -> T:
        """A strategy's messages (as SDK items) as the hook's result."""
        raise NotImplementedError

    async def guarded(self, agent: Agent[Any], wrapper: RunContextWrapper[Any], unchanged: T,
                      conversation_id: str | None, run: Callable[[], Awaitable[T]],
                      to_hook: Callable[[list[Any]], tuple[Any, ...]]) -> T:
        """Gate, run the hook (`run`), review its result against `unchanged`, and return what wins."""
        rewrite = await self.reviewer.open(agent, wrapper, self.input_of(unchanged), conversation_id)
        if not rewrite.gate.review:
            await self.reviewer.skip(rewrite)
            return unchanged
        proposed = await run()
        proposed_input = self.input_of(proposed)
        if proposed_input == rewrite.before:
            return proposed
        produced: list[tuple[list[Any], T]] = []

        def to_view_of(result: Any) -> list[Any]:
            view = to_view(self.input_of(result), rewrite.instructions)
            produced.append((view, result))
            return view

        decision = await self.reviewer.review(rewrite, proposed_input,
                                              bind_fallbacks(self.fallbacks, self.guard, to_hook, to_view_of))
        if decision.verdict in (Verdict.AUDIT, Verdict.COMMIT):
            return proposed
        if decision.verdict is Verdict.VETO:
            return unchanged
        for view, result in produced:  # a fallback hook's own result
            if view == decision.messages:
                return result
        return self.from_items(unchanged, from_view(decision.messages)[1])
