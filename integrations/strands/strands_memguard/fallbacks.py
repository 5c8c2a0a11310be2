"""Strands conversation managers as memguard fallbacks, and readable names for managers.

A fallback may be a memguard strategy (`ObservationMasking`, `RecentWindow`, any function of the
view) or another Strands conversation manager (say a `SlidingWindowConversationManager` that keeps
more). A manager reduces an agent, not a message list, so `ManagerStrategy` runs a copy of it on a
copy of the messages, behind a stand-in agent that answers everything else (the model, the aux
model) from the real one: the agent and the manager the user passed are never touched.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memguard import as_strategy
from strands.agent.conversation_manager import ConversationManager

from strands_memguard.views import StrandsView

__all__ = ["ManagerStrategy", "check_fallbacks", "strategy_name"]


def strategy_name(manager: Any) -> str:
    """A readable strategy name for audit records and MemRM's perturbation tag.

    Args:
        manager: A Strands conversation manager.

    Returns:
        The class name in snake case without ``ConversationManager``, with its window or summary
        settings: ``SlidingWindowConversationManager(window_size=40)`` gives ``sliding_window_40``,
        ``SummarizingConversationManager()`` gives ``summarizing_0.3_keep_10``.
    """
    name = type(manager).__name__.removesuffix("ConversationManager") or type(manager).__name__
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    window = getattr(manager, "window_size", None)
    if isinstance(window, int) and not isinstance(window, bool):
        return f"{name}_{window}"
    ratio, keep = getattr(manager, "summary_ratio", None), getattr(manager, "preserve_recent_messages", None)
    if isinstance(ratio, float) and isinstance(keep, int):
        return f"{name}_{ratio:g}_keep_{keep}"
    return name


class _ScratchAgent:
    """The agent as a conversation manager sees it, holding its own list of messages."""

    def __init__(self, agent: Any, messages: list[Any]) -> None:
        self.__dict__["_agent"] = agent
        self.__dict__["messages"] = messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_agent"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "messages":
            raise AttributeError(f"a fallback manager may only change the messages, not {name!r}")
        self.__dict__["messages"] = value


@dataclass(frozen=True)
class ManagerStrategy:
    """A Strands conversation manager as a memguard strategy, bound to one review.

    Its ``reduce_context`` runs on a copy of the messages (a manager edits them in place: pins,
    truncated tool results) with a copy of the manager (its counters and summary stay as they
    were); messages it left as they were come back as the review's own objects. The agent and
    the manager the user passed are never touched.
    """

    manager: ConversationManager
    """The fallback manager (copied for each call)."""
    agent: Any
    """The agent, answering for everything but the messages (the model, the aux model)."""
    view: StrandsView
    """The review's view, to convert turns back and forth."""
    name: str
    """The strategy's name in records (see `strategy_name`)."""

    def __call__(self, turns: Sequence[Any]) -> list[dict[str, Any]]:
        originals = self.view.from_view(turns)
        scratch = copy.deepcopy(originals)
        back = {id(copied): original for copied, original in zip(scratch, originals, strict=True)}
        manager = copy.copy(self.manager)
        stand_in = _ScratchAgent(self.agent, scratch)
        manager.reduce_context(stand_in)  # type: ignore[arg-type]  # duck-typed: messages + the real agent
        result = [back[id(m)] if id(m) in back and m == back[id(m)] else m for m in stand_in.messages]
        return self.view.to_view(result, summary=manager.get_state().get("summary_message"))


def check_fallbacks(fallbacks: Sequence[Any]) -> tuple[Any, ...]:
    """Validate fallbacks up front: a clear error now rather than at the first review."""
    for fallback in fallbacks:
        if not isinstance(fallback, ConversationManager):
            as_strategy(fallback)
    return tuple(fallbacks)


def bind_fallbacks(fallbacks: Sequence[Any], guard_chain: Sequence[Any], agent: Any,
                   view: StrandsView) -> tuple[Any, ...] | None:
    """The chain for one review: these fallbacks, then the guard's own; None keeps the guard's."""
    if not fallbacks:
        return None
    bound = [ManagerStrategy(f, agent, view, strategy_name(f)) if isinstance(f, ConversationManager) else f
             for f in fallbacks]
    return (*bound, *guard_chain)
