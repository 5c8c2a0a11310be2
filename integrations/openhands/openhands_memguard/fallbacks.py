"""The fallback chain of one review: OpenHands condensers as strategies, and the HARD filter.

A fallback may be a memguard strategy (`ObservationMasking`, `RecentWindow`, any function of the
message list) or another OpenHands condenser (say an `LLMSummarizingCondenser` that keeps more).
Under a HARD requirement only what can be stored as a `Condensation` may be committed: a `View`
lasts one step, leaves the requirement standing, and so would bring the agent back here on every
step (or, after a context-window error, into a loop). `PersistableOnly` refuses the others.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from memguard.strategies import Strategy, as_strategy
from openhands.sdk.context.condenser import CondenserBase
from openhands.sdk.event import Condensation
from openhands.sdk.llm import LLM

from openhands_memguard.views import GuardView

__all__ = ["CondenserStrategy", "PersistableOnly", "bind_fallbacks", "check_fallbacks", "strategy_name"]


def strategy_name(condenser: CondenserBase) -> str:
    """A readable strategy name for audit records and MemRM's perturbation tag.

    Args:
        condenser: An OpenHands condenser.

    Returns:
        The class name in snake case without ``Condenser``, with ``keep_first`` and ``max_size``
        when it has both (``llm_summarizing_keep_first_4_max_size_80``).
    """
    name = type(condenser).__name__.removesuffix("Condenser") or type(condenser).__name__
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    keep_first, max_size = getattr(condenser, "keep_first", None), getattr(condenser, "max_size", None)
    if isinstance(keep_first, int) and isinstance(max_size, int):
        return f"{name}_keep_first_{keep_first}_max_size_{max_size}"
    return name


@dataclass(frozen=True)
class CondenserStrategy:
    """An OpenHands condenser used as a memguard fallback for one review.

    A condenser reads events, not messages, so it runs on the review's own view: the guard
    applies every fallback to the full context, which is that view. Called, it returns the
    condensed context as the guard's dicts.
    """

    condenser: CondenserBase
    """The condenser to run."""
    view: GuardView
    """The review's view of the full context."""
    agent_llm: LLM | None
    """The agent's LLM, passed on to the condenser."""
    name: str
    """The strategy's name in records (see `strategy_name`)."""

    def __call__(self, messages: Sequence[Any]) -> list[dict[str, Any]]:
        result = self.condenser.condense(self.view.view, agent_llm=self.agent_llm)
        if isinstance(result, Condensation):
            return self.view.apply(result)
        return self.view.show(result.events)


@dataclass(frozen=True)
class PersistableOnly:
    """A fallback allowed under a HARD requirement only when its result is a `Condensation`."""

    strategy: Any
    view: GuardView

    @property
    def name(self) -> str:
        return str(self.strategy.name)

    def __call__(self, messages: Sequence[Any]) -> Any:
        result = self.strategy(messages)
        if inspect.isawaitable(result):  # an async fallback: checked once the guard awaited it
            return self._checked_later(result)
        return self._checked(result)

    async def _checked_later(self, pending: Awaitable[Any]) -> Any:
        return self._checked(await pending)

    def _checked(self, result: Any) -> Any:
        if not self.view.persistable(result):
            raise ValueError(
                "its result edits messages, so it cannot be stored as a Condensation "
                "and cannot resolve a HARD requirement"
            )
        return result


def check_fallbacks(fallbacks: Sequence[Any]) -> tuple[Any, ...]:
    """Validate fallbacks up front (a clear error now rather than at the first review)."""
    for fallback in fallbacks:
        if not isinstance(fallback, CondenserBase):
            as_strategy(fallback)
    return tuple(fallbacks)


def bind_fallbacks(fallbacks: Sequence[Any], guard_chain: Sequence[Strategy], view: GuardView,
                   agent_llm: LLM | None, *, hard: bool) -> tuple[Any, ...] | None:
    """The chain for this review: our fallbacks, then the guard's own; None keeps the guard's.

    The strategies here hand back the guard's dicts (the caller's message type), not memguard's
    own `Message` objects: the guard accepts either from a fallback.
    """
    if not fallbacks and not hard:
        return None
    chain: list[Any] = [
        CondenserStrategy(f, view, agent_llm, strategy_name(f)) if isinstance(f, CondenserBase) else as_strategy(f)
        for f in fallbacks
    ]
    chain.extend(guard_chain)
    if hard:
        return tuple(PersistableOnly(strategy, view) for strategy in chain)
    return tuple(chain)
