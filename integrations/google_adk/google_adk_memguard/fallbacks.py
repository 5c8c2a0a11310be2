"""Another events summarizer as a memguard fallback strategy.

memguard strategies are functions of the message view; an ADK session can only be compacted by a
compaction event. So a fallback here is another `BaseEventsSummarizer` (ADK's
`LlmEventSummarizer` with a prompt that keeps more, or one of your own): run over the same events
as the proposal, its event is turned into the request ADK would build with it, and committed like
the proposal when it wins. View-level strategies (`ObservationMasking`, ...) have no event to
commit and are refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.adk.apps.base_events_summarizer import BaseEventsSummarizer
from google.adk.events.event import Event
from memguard import Message

from google_adk_memguard.review import Candidates

__all__ = ["SummarizerStrategy", "check_fallbacks", "strategy_name"]


def strategy_name(summarizer: Any) -> str:
    """A readable strategy name for audit records and MemRM's perturbation tag.

    Args:
        summarizer: An events summarizer.

    Returns:
        Its class name in snake case (``llm_event_summarizer``).
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(summarizer).__name__).lower()


def check_fallbacks(fallbacks: Sequence[Any]) -> tuple[BaseEventsSummarizer, ...]:
    """`fallbacks` if every one is an events summarizer, else a `TypeError` that says why not."""
    for fallback in fallbacks:
        if not isinstance(fallback, BaseEventsSummarizer):
            raise TypeError(
                f"a fallback must be a BaseEventsSummarizer (ADK compacts a session only through a compaction "
                f"event), got {type(fallback).__name__}"
            )
    return tuple(fallbacks)


@dataclass(frozen=True)
class SummarizerStrategy:
    """A fallback summarizer bound to one review: its candidate is the request with its event applied.

    Called with the review's view, it runs the summarizer over the proposal's events and returns
    the view of the request ADK would build with its compaction event (the view unchanged when it
    proposes nothing).
    """

    summarizer: BaseEventsSummarizer
    """The fallback summarizer."""
    events: Sequence[Event]
    """The events the proposal summarized."""
    candidates: Candidates
    """The review's candidate set; the fallback's candidate joins it."""
    name: str
    """The strategy's name in records."""

    async def __call__(self, messages: Sequence[Message]) -> list[Message]:
        compaction = await self.summarizer.maybe_summarize_events(events=list(self.events))
        if compaction is None:
            return list(messages)  # nothing proposed: the context as it was
        return (await self.candidates.add(compaction)).view
