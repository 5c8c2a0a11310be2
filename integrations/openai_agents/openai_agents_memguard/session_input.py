"""`MemGuardSessionInput`: guard a `RunConfig.session_input_callback`.

With a session, the Runner builds a run's input from the stored history and the new turn's
items; `session_input_callback(history, new_items) -> items` replaces that concatenation (keep
the last N items, drop tool outputs, summarise: what the agent sees for the whole run; the
session itself stores only the new items). The guard wraps the callback:

- the gate first (a cooling conversation's callback is not called: history + new items);
- the callback proposes; the run's starting agent is probed on ``history + new_items`` and on the
  proposal, with the request its first call sends;
- commit: the callback's list; veto: ``history + new_items`` (the SDK's own combination, the very
  objects it passed in, so it still recognises which items are new and stores those); fallback:
  another callback's list, or a memguard strategy applied to ``history + new_items``.

The callback receives no agent, so the wrapper is told which agent the run starts with (`agent`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agents import Agent, Model, RunConfig, RunContextWrapper
from memguard import Decision, Guard

from openai_agents_memguard.hooks import call_hook, hook_name
from openai_agents_memguard.reuse import ProbeStore
from openai_agents_memguard.rewrite import RewriteHook
from openai_agents_memguard.sdk import turn_input

__all__ = ["MemGuardSessionInput"]

SessionInputCallback = Callable[[list[Any], list[Any]], Any]


def _checked(hook: Any, result: Any) -> list[Any]:
    if not isinstance(result, list):
        raise TypeError(f"{hook_name(hook)} returned {type(result).__name__}, not a list of input items")
    return result


class MemGuardSessionInput(RewriteHook[list[Any]]):
    """A `session_input_callback` whose rewrite of the run's input is reviewed by the guard.

    ```python
    config = RunConfig(model_settings=ModelSettings(temperature=0.2))
    config.session_input_callback = MemGuardSessionInput(keep_recent, guard, agent=agent, run_config=config)
    Runner.run_sync(agent, "next question", session=session, run_config=config)
    ```

    The gate is asked first (a cooling conversation's callback is not called: history plus new
    items). The callback then proposes, and the run's starting agent is probed on the full and
    the proposed input with the request its first call sends. Commit: the callback's list; veto:
    ``history + new_items``, the very objects the SDK passed in (so it still stores the new ones);
    fallback: another callback's list, or a strategy applied to ``history + new_items``. Set the
    run's model to ``wrap_model(model)`` so the winning probe answers the agent's first call.

    Args:
        inner: The callback to guard (`(history, new_items) -> list`, sync or async).
        guard: The guard that decides.
        agent: The agent the runs start with (probed).
        run_config: The run's `RunConfig`, so the probes carry its model and `model_settings`.
        model: The model to probe when neither the agent nor `run_config` holds a `Model` instance.
        context: The run context the agent's tools and instructions see.
        fallbacks: Other session input callbacks, or memguard strategies, tried before the guard's chain.
        strategy: The proposal's name in audit records (default: derived from `inner`).
        on_decision: Called with each `Decision`.
        conversation_id: Keys the guard's cooldown (say, the session id).
        store: Where the winning probe waits for the agent's first call (default: shared per guard).

    Raises:
        TypeError: An argument is not what it must be.
    """

    hook = "session_input_callback"

    def __init__(
        self,
        inner: SessionInputCallback,
        guard: Guard,
        *,
        agent: Agent[Any],
        run_config: RunConfig | None = None,
        model: Model | None = None,
        context: Any = None,
        fallbacks: Sequence[Any] = (),
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
        conversation_id: str | None = None,
        store: ProbeStore | None = None,
    ) -> None:
        if not isinstance(agent, Agent):
            raise TypeError(f"agent must be an agents.Agent, got {type(agent).__name__}")
        super().__init__(inner, guard, run_config=run_config, model=model, fallbacks=fallbacks, strategy=strategy,
                         on_decision=on_decision, store=store)
        self.agent = agent
        self.context = context
        self.conversation_id = conversation_id

    def input_of(self, result: list[Any]) -> list[Any]:
        """The run's model input when the callback returns `result`.

        Args:
            result: The items a session input callback returned.

        Returns:
            The input items, as the Runner prepares them.

        Raises:
            TypeError: `result` is not a list.
        """
        return turn_input(_checked(self.inner, result), [])

    def from_items(self, unchanged: list[Any], items: list[Any]) -> list[Any]:
        """A strategy's items as the callback's result: the list itself.

        Args:
            unchanged: History and new items, as the callback received them (not needed).
            items: The run's input items.

        Returns:
            `items`.
        """
        return items

    async def __call__(self, history: list[Any], new_items: list[Any]) -> list[Any]:
        async def run() -> list[Any]:
            return _checked(self.inner, await call_hook(self.inner, list(history), list(new_items)))

        return await self.guarded(self.agent, RunContextWrapper(self.context), [*history, *new_items],
                                  self.conversation_id, run, lambda messages: (list(history), list(new_items)))
