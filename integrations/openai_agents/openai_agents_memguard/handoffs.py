"""`MemGuardHandoffFilter`: guard what a handoff lets the next agent see.

A handoff filter (`Handoff.input_filter`, or `RunConfig.handoff_input_filter` for every handoff)
receives the whole conversation (`HandoffInputData`: the run's input, the items generated
before the handoff turn, the turn's new items) and returns what the next agent gets for the rest
of the run; `nest_handoff_history` (the SDK's own, also `RunConfig(nest_handoff_history=True)`)
collapses the transcript into one summary message the same way. The guard wraps the filter:

- the gate first (a cooling conversation's filter is not called; the next agent sees everything);
- the filter proposes; the next agent (the handoff's target) is probed on the full and the
  filtered input, with the request its first call sends;
- commit: the filter's own `HandoffInputData`; veto: the data unchanged (the next agent sees the
  whole conversation, as without a filter); fallback: another handoff filter's data, or a memguard
  strategy's messages as the next agent's input history (the turn's items are still kept for the
  session).

To guard nested history, pass `nest_handoff_history` itself as the filter (an input filter takes
the place of `RunConfig(nest_handoff_history=True)`, which the SDK then does not apply):
``RunConfig(handoff_input_filter=MemGuardHandoffFilter(nest_handoff_history, guard, run_config=...))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agents import Agent, HandoffInputData, Model, RunConfig, RunContextWrapper
from agents.items import HandoffOutputItem
from memguard import Decision, Guard

from openai_agents_memguard.hooks import call_hook, hook_name
from openai_agents_memguard.reuse import ProbeStore
from openai_agents_memguard.rewrite import RewriteHook
from openai_agents_memguard.sdk import turn_input

__all__ = ["MemGuardHandoffFilter", "next_agent_input"]

HandoffFilter = Callable[[HandoffInputData], Any]


def next_agent_input(data: HandoffInputData) -> list[Any]:
    """The model input the next agent's first call is built from, as the Runner builds it.

    Args:
        data: The handoff's data (as a filter received or returned it).

    Returns:
        The input items.
    """
    generated = [*data.pre_handoff_items, *(data.input_items if data.input_items is not None else data.new_items)]
    return turn_input(data.input_history, generated)


def _target(data: HandoffInputData) -> Agent[Any]:
    for item in reversed(data.new_items):
        if isinstance(item, HandoffOutputItem) and isinstance(item.target_agent, Agent):
            return item.target_agent
    raise ValueError("MemGuardHandoffFilter: the handoff data names no target agent (no handoff output item)")


def _checked(hook: Any, result: Any) -> HandoffInputData:
    if not isinstance(result, HandoffInputData):
        raise TypeError(f"{hook_name(hook)} returned {type(result).__name__}, not a HandoffInputData")
    return result


class MemGuardHandoffFilter(RewriteHook[HandoffInputData]):
    """A handoff input filter whose rewrite of the next agent's history is reviewed by the guard.

    ```python
    config = RunConfig(model_settings=ModelSettings(temperature=0.2))
    config.handoff_input_filter = MemGuardHandoffFilter(nest_handoff_history, guard, run_config=config)
    Runner.run_sync(triage, task, run_config=config)
    ```

    The gate is asked first (a cooling conversation's filter is not called: the next agent sees
    everything). The filter then proposes, and the next agent is probed on the full and the
    filtered input with the request its first call sends. Commit: the filter's own data; veto:
    the data unchanged; fallback: another filter's data, or a strategy's messages as the next
    agent's input history. To guard nested history, pass `nest_handoff_history` itself as the
    filter. Set the run's model to ``wrap_model(model)`` so the winning probe answers the next
    agent's first call (a review then costs one extra model call, else two).

    Args:
        inner: The handoff filter to guard (`HandoffInputData -> HandoffInputData`, sync or async).
        guard: The guard that decides.
        run_config: The run's `RunConfig`, so the probes carry its model and `model_settings`.
        model: The model to probe when neither the target agent nor `run_config` holds a `Model` instance.
        fallbacks: Other handoff filters, or memguard strategies, tried in order before the guard's chain.
        strategy: The proposal's name in audit records (default: derived from `inner`).
        on_decision: Called with each `Decision`.
        conversation_id: A string or a function of the `HandoffInputData` (keys the guard's cooldown).
        store: Where the winning probe waits for the next agent's call (default: shared per guard).

    Raises:
        TypeError: An argument is not what it must be.
    """

    hook = "handoff_input_filter"

    def __init__(
        self,
        inner: HandoffFilter,
        guard: Guard,
        *,
        run_config: RunConfig | None = None,
        model: Model | None = None,
        fallbacks: Sequence[Any] = (),
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
        conversation_id: str | Callable[[HandoffInputData], str | None] | None = None,
        store: ProbeStore | None = None,
    ) -> None:
        super().__init__(inner, guard, run_config=run_config, model=model, fallbacks=fallbacks, strategy=strategy,
                         on_decision=on_decision, store=store)
        self.conversation_id = conversation_id

    def input_of(self, result: HandoffInputData) -> list[Any]:
        """The next agent's model input when the filter returns `result`.

        Args:
            result: The data a handoff filter returned.

        Returns:
            The input items (see `next_agent_input`).

        Raises:
            TypeError: `result` is not a `HandoffInputData`.
        """
        return next_agent_input(_checked(self.inner, result))

    def from_items(self, unchanged: HandoffInputData, items: list[Any]) -> HandoffInputData:
        """A strategy's items as handoff data: the next agent's whole input.

        Args:
            unchanged: The data the filter received; the turn's items stay for the session.
            items: The next agent's input items.

        Returns:
            `unchanged` with `items` as its input history and nothing else for the model.
        """
        return unchanged.clone(input_history=tuple(items), pre_handoff_items=(), input_items=())

    async def __call__(self, data: HandoffInputData) -> HandoffInputData:
        wrapper = data.run_context if data.run_context is not None else RunContextWrapper(None)
        cid = self.conversation_id(data) if callable(self.conversation_id) else self.conversation_id

        async def run() -> HandoffInputData:
            return _checked(self.inner, await call_hook(self.inner, data))

        # a fallback filter reads the original conversation, like the proposal
        return await self.guarded(_target(data), wrapper, data, cid, run, lambda messages: (data,))
