"""Safer compactions to try when the proposal is judged harmful, and how the winner is applied in place.

Two kinds of fallback:

- an Agent Framework `CompactionStrategy` (`ToolResultCompactionStrategy`, `SlidingWindowStrategy`
  with a wider window, ...): `FrameworkFallback` runs it the way the framework does (grouping and
  token annotations, then the strategy) on copies of the messages as they were before the
  proposal, so it sees exactly what the proposal saw and touches none of the agent's objects. If
  it wins, the copies' new state is transplanted onto the agent's own objects;
- a memguard strategy (`ObservationMasking()`, `RecentWindow(...)`, a function of memguard
  messages), and the guard's own chain: it works on memguard's view; `apply_view` puts its result
  into the agent's list the framework's way: a message it dropped is excluded, a message it
  changed is excluded and followed by the changed copy, linked as its summary (so the tool loop's
  summary reconciliation carries it into the history, and nothing the agent had is deleted).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from agent_framework import Message as AFMessage
from agent_framework import TokenizerProtocol, apply_compaction, included_messages
from agent_framework._compaction import (
    EXCLUDE_REASON_KEY,
    EXCLUDED_KEY,
    GROUP_ANNOTATION_KEY,
    GROUP_ID_KEY,
    SUMMARIZED_BY_SUMMARY_ID_KEY,
    SUMMARY_OF_GROUP_IDS_KEY,
    SUMMARY_OF_MESSAGE_IDS_KEY,
    annotate_message_groups,
)
from memguard import Message

from agent_framework_memguard.state import ListState, Scratch
from agent_framework_memguard.views import to_view

__all__ = ["FrameworkFallback", "apply_view", "is_framework_strategy", "strategy_name"]


def strategy_name(strategy: Any) -> str:
    """A readable name for records and MemRM's perturbation tag.

    Args:
        strategy: A compaction strategy (an Agent Framework one, or a memguard one).

    Returns:
        Its `name` when it has one, else its class (or function) name in snake case without
        ``CompactionStrategy`` or ``Strategy`` (``sliding_window``, ``tool_result``).
    """
    name = getattr(strategy, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(strategy).__name__ if not inspect.isfunction(strategy) else strategy.__name__
    cls = cls.removesuffix("CompactionStrategy").removesuffix("Strategy") or cls
    return "".join("_" + c.lower() if c.isupper() else c for c in cls).lstrip("_")


def is_framework_strategy(obj: Any) -> bool:
    """True for an Agent Framework compaction strategy (an object with ``async __call__(messages) -> bool``).

    memguard strategies have a `name` or are plain functions of the message list.
    """
    if inspect.isfunction(obj) or inspect.ismethod(obj) or isinstance(getattr(obj, "name", None), str):
        return False
    return callable(obj) and inspect.iscoroutinefunction(type(obj).__call__)


class FrameworkFallback:
    """An Agent Framework strategy as a memguard fallback, run on copies of the pre-proposal messages.

    Called with the review's view, it runs the strategy the way the framework does (grouping and
    token annotations, then the strategy) on copies of the messages as they were before the
    proposal, so it sees exactly what the proposal saw and touches none of the agent's objects;
    it returns the result as memguard's view. If it wins, `scratch_for` finds its copies, whose
    new state is transplanted onto the agent's own objects.

    Args:
        strategy: The framework strategy.
        state: The agent's list as it was before the proposal.
        instructions: The run's instructions (the view's leading system turn).
        tokenizer: The request's tokenizer (None: the strategy's own, as the framework resolves it).
    """

    def __init__(self, strategy: Any, state: ListState, instructions: Any,
                 tokenizer: TokenizerProtocol | None = None) -> None:
        self.strategy = strategy
        """The framework strategy."""
        self.name = strategy_name(strategy)
        """Its name in records (see `strategy_name`)."""
        self._state = state
        self._instructions = instructions
        self._tokenizer = tokenizer
        self._runs: list[tuple[list[Message], Scratch]] = []

    async def __call__(self, messages: Sequence[Any]) -> list[Message]:
        """The strategy's compaction as memguard's view (`messages`, the full view, is not needed)."""
        del messages
        scratch = self._state.copies()
        await apply_compaction(scratch.messages, strategy=self.strategy, tokenizer=self._tokenizer)
        view = to_view(included_messages(scratch.messages), self._instructions)
        self._runs.append((view, scratch))
        return view

    def scratch_for(self, view: Sequence[Any]) -> Scratch | None:
        """The copies behind a view this fallback returned.

        Args:
            view: The view the guard chose.

        Returns:
            The `Scratch` that produced that very view, or None when it is not one of this
            fallback's views.
        """
        for shown, scratch in self._runs:
            if len(shown) == len(view) and all(a is b for a, b in zip(shown, view, strict=True)):
                return scratch
        return None


def apply_view(target: list[AFMessage], view: Sequence[Any], context: list[AFMessage], *, name: str) -> None:
    """Put a view-level compaction into the agent's list, the framework's way (nothing deleted).

    Args:
        target: The agent's list, in its pre-proposal state.
        view: The compacted view (what the guard chose).
        context: `from_view(view)`: the agent's objects, changed copies and new messages, in order.
        name: The strategy's name, in exclusion reasons and summary ids.
    """
    del view
    shown = {id(m) for m in context}
    by_message_id = {m.message_id: m for m in included_messages(target) if m.message_id}
    for message in included_messages(target):
        if id(message) not in shown:
            _exclude(message, name)
    position = 0
    for message in context:
        index = _index(target, message)
        if index is not None:
            position = index + 1
            continue
        source = by_message_id.get(message.message_id) if message.message_id else None
        if source is not None and source is not message:
            _link(message, source, name)
            position = (_index(target, source) or 0) + 1
        target.insert(position, message)
        position += 1
    annotate_message_groups(target)


def _index(messages: list[AFMessage], message: AFMessage) -> int | None:
    return next((i for i, m in enumerate(messages) if m is message), None)


def _exclude(message: AFMessage, name: str) -> None:
    message.additional_properties[EXCLUDED_KEY] = True
    message.additional_properties[EXCLUDE_REASON_KEY] = f"memguard_{name}"


def _link(copy: AFMessage, source: AFMessage, name: str) -> None:
    """`copy` stands in for `source`: the source is excluded, the copy is its summary."""
    summary_id = f"{source.message_id}~memguard_{name}"
    annotation = source.additional_properties.get(GROUP_ANNOTATION_KEY)
    group_id = annotation.get(GROUP_ID_KEY) if isinstance(annotation, dict) else None
    props = copy.additional_properties
    for key in (GROUP_ANNOTATION_KEY, EXCLUDED_KEY, EXCLUDE_REASON_KEY):
        props.pop(key, None)
    props[GROUP_ANNOTATION_KEY] = {
        SUMMARY_OF_MESSAGE_IDS_KEY: [source.message_id],
        SUMMARY_OF_GROUP_IDS_KEY: [group_id] if isinstance(group_id, str) else [],
    }
    copy.message_id = summary_id
    if isinstance(annotation, dict):
        annotation[SUMMARIZED_BY_SUMMARY_ID_KEY] = summary_id
    else:
        source.additional_properties[GROUP_ANNOTATION_KEY] = {SUMMARIZED_BY_SUMMARY_ID_KEY: summary_id}
    _exclude(source, name)
