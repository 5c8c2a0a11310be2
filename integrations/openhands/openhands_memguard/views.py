"""How an OpenHands view is shown to MemRM, and how the guard's answer becomes events again.

The guard works on OpenAI-style dicts. `GuardView` turns a `View`'s events into one dict per
LLM message, the way `LLMConvertibleEvent.events_to_messages` builds them (the actions of one
LLM response are one assistant turn with several tool calls), with three differences that keep
the text MemRM reads as it was in training (protocol §3-4):

- a condensation summary is its own user turn ``"[Summary] " + text`` (OpenHands sends it as a
  plain user message, merged with a neighbouring user message when there is one);
- consecutive user events stay separate turns;
- calls of a shell tool (OpenHands' ``terminal``) are shown as ``bash`` calls, so the command
  renders as ``$ command`` and the next action as the command itself.

Every dict carries the ids of the events it stands for (``MARK``), so any list of dicts the guard
hands back (the full context, a condensed one, a fallback's) maps back to events: unchanged
dicts to the very same event objects, edited ones to a `GuardedMessageEvent` that sends the
edited message instead.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from memguard import restore_messages, to_messages
from memguard.messages import MessageFormat
from memguard.protocol import SUMMARY_PREFIX
from openhands.sdk.context.view import View
from openhands.sdk.event import ActionEvent, Condensation, LLMConvertibleEvent
from openhands.sdk.event.condenser import CondensationSummaryEvent
from openhands.sdk.event.llm_convertible import MessageEvent, ObservationBaseEvent, SystemPromptEvent
from openhands.sdk.event.types import SourceType
from openhands.sdk.llm import ImageContent, Message, MessageToolCall, TextContent
from pydantic import Field

__all__ = [
    "MARK",
    "SHELL_TOOLS",
    "GuardView",
    "GuardedMessageEvent",
    "assistant_turns",
    "message_to_dict",
]

MARK = "openhands_event_ids"
"""Key, in each dict the guard sees, of the ids of the OpenHands events the dict stands for."""

SHELL_TOOLS: frozenset[str] = frozenset({"terminal", "execute_bash", "bash"})
"""Tools whose ``command`` argument is a shell command: shown to MemRM as ``bash`` calls."""

_SOURCES: dict[str, SourceType] = {"assistant": "agent", "user": "user"}


class GuardedMessageEvent(LLMConvertibleEvent):
    """A message the guard changed (a masked observation, a fallback's own turn).

    Lives only in the `View` a fallback returns for one step; it is never stored in the
    conversation, which keeps the original events.
    """

    message: Message
    """The message to send instead."""
    replaces: list[str] = Field(default_factory=list)
    """The ids of the events whose message this replaces (empty: a new message)."""

    def to_llm_message(self) -> Message:
        """The edited message.

        See `openhands.sdk.event.LLMConvertibleEvent.to_llm_message`.

        Returns:
            A deep copy of `message`.
        """
        return self.message.model_copy(deep=True)


def _content_value(content: Sequence[TextContent | ImageContent]) -> Any:
    """Text-only content as one string (as OpenHands' string serializer sends it), else parts."""
    if all(isinstance(item, TextContent) for item in content):
        return "\n".join(item.text for item in content if isinstance(item, TextContent))
    parts: list[dict[str, Any]] = []
    for item in content:
        if isinstance(item, TextContent):
            parts.append({"type": "text", "text": item.text})
        else:
            parts.extend({"type": "image_url", "image_url": {"url": url}} for url in item.image_urls)
    return parts


def _content_items(value: Any) -> list[TextContent | ImageContent]:
    if value is None:
        return []
    if isinstance(value, str):
        return [TextContent(text=value)]
    if isinstance(value, list):
        items: list[TextContent | ImageContent] = []
        for part in value:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                items.append(TextContent(text=part["text"]))
            elif isinstance(part, Mapping) and isinstance(part.get("image_url"), Mapping):
                items.append(ImageContent(image_urls=[str(part["image_url"].get("url", ""))]))
            else:
                items.append(TextContent(text=part if isinstance(part, str) else json.dumps(part, default=str)))
        return items
    return [TextContent(text=str(value))]


def message_to_dict(message: Message, shell_tools: Iterable[str] = SHELL_TOOLS) -> dict[str, Any]:
    """An OpenHands `Message` as the OpenAI-style dict MemRM's renderer reads.

    Args:
        message: The message.
        shell_tools: Tools whose calls are shown as ``bash`` calls, so the command renders as
            ``$ command``, as in training.

    Returns:
        The dict: role, content (text-only content as one string), tool calls, tool call id, name.
    """
    shells = frozenset(shell_tools)
    out: dict[str, Any] = {"role": message.role, "content": _content_value(message.content)}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "bash" if call.name in shells else call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def _groups(events: Sequence[LLMConvertibleEvent]) -> list[list[LLMConvertibleEvent]]:
    """Events grouped into LLM messages: the actions of one LLM response form one group."""
    groups: list[list[LLMConvertibleEvent]] = []
    for event in events:
        previous = groups[-1][-1] if groups else None
        if (isinstance(event, ActionEvent) and isinstance(previous, ActionEvent)
                and event.llm_response_id == previous.llm_response_id):
            groups[-1].append(event)
        else:
            groups.append([event])
    return groups


def _fields(message: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(message.get(key) for key in ("role", "content", "tool_calls", "tool_call_id", "name"))


class GuardView:
    """One `View` as the guard sees it, remembering every event it showed to map answers back.

    Events become one dict per LLM message, as `LLMConvertibleEvent.events_to_messages` builds
    them, except that a condensation summary is its own ``[Summary]`` user turn, consecutive user
    events stay separate turns, and shell tool calls are shown as ``bash`` calls (the text MemRM
    read in training). Every dict carries the ids of its events (`MARK`), so any list of dicts
    the guard hands back maps back to events.

    Args:
        view: The agent's view at this step.
        shell_tools: Tools whose calls are shown as ``bash`` calls.
    """

    def __init__(self, view: View, *, shell_tools: Iterable[str] = SHELL_TOOLS) -> None:
        self.view = view
        """The agent's view at this step."""
        self.shell_tools = frozenset(shell_tools)
        self._events: dict[str, LLMConvertibleEvent] = {}
        self._shown: dict[tuple[str, ...], dict[str, Any]] = {}
        self._call_names: dict[str, str] = {}
        self._condensations: list[Condensation] = []
        self.messages: list[dict[str, Any]] = self.show(view.events)
        """The full context, one dict per LLM message."""

    @property
    def step(self) -> int:
        """Assistant turns in the full context (the guard's default step)."""
        return assistant_turns(self.view.events)

    # ------------------------------------------------------------------ events -> dicts

    def show(self, events: Sequence[LLMConvertibleEvent]) -> list[dict[str, Any]]:
        """The dicts for `events`.

        Args:
            events: Events of this view, or new ones (a condenser's summary).

        Returns:
            One dict per LLM message; a group of events shown before comes back as the same dict
            object.
        """
        return [self._dict_for(group) for group in _groups(events)]

    def _dict_for(self, group: list[LLMConvertibleEvent]) -> dict[str, Any]:
        key = tuple(event.id for event in group)
        shown = self._shown.get(key)
        if shown is not None:
            return shown
        for event in group:
            self._events[event.id] = event
            if isinstance(event, ActionEvent):
                self._call_names[event.tool_call.id] = event.tool_call.name
        if len(group) == 1 and isinstance(group[0], CondensationSummaryEvent):
            shown = {"role": "user", "content": SUMMARY_PREFIX + group[0].summary}
        else:
            shown = message_to_dict(_message_of(group), self.shell_tools)
        shown[MARK] = list(key)
        self._shown[key] = shown
        return shown

    def apply(self, condensation: Condensation) -> list[dict[str, Any]]:
        """The context after `condensation`, as the guard sees it.

        The condensation is remembered, so `as_result` returns that very object when the guard
        chooses its context.

        Args:
            condensation: A condensation of this view.

        Returns:
            The condensed context's dicts.
        """
        self._condensations.append(condensation)
        return self.show(condensation.apply(list(self.view.events)))

    def response(self, message: Message) -> dict[str, Any]:
        """The agent's next message (a probe's answer) as MemRM reads actions.

        Args:
            message: The LLM's answer.

        Returns:
            Its dict (see `message_to_dict`).
        """
        return message_to_dict(message, self.shell_tools)

    # ------------------------------------------------------------------ dicts -> events

    def to_events(self, messages: Sequence[Any]) -> list[LLMConvertibleEvent]:
        """The events a list of guard messages stands for.

        Args:
            messages: Guard messages (dicts, or memguard `Message`s).

        Returns:
            The original events wherever a message is unchanged; a `CondensationSummaryEvent`
            for a new summary; a `GuardedMessageEvent` for an edited or new message.
        """
        events: list[LLMConvertibleEvent] = []
        for message in _as_dicts(messages):
            ids = message.get(MARK)
            key = tuple(ids) if isinstance(ids, list) else None
            shown = self._shown.get(key) if key is not None else None
            if shown is not None and key is not None and _fields(message) == _fields(shown):
                events.extend(self._events[event_id] for event_id in key)
            elif shown is None and _is_summary(message):
                events.append(CondensationSummaryEvent(summary=message["content"][len(SUMMARY_PREFIX):]))
            else:
                events.append(self._rewritten(message, key if shown is not None else None))
        return events

    def _rewritten(self, message: Mapping[str, Any], key: tuple[str, ...] | None) -> GuardedMessageEvent:
        role = message.get("role", "user")
        if key is not None:
            base = _message_of([self._events[event_id] for event_id in key])
            shown = self._shown[key]
            update: dict[str, Any] = {}
            if message.get("content") != shown.get("content"):
                update["content"] = _content_items(message.get("content"))
            if message.get("tool_calls") != shown.get("tool_calls"):
                update["tool_calls"] = self._tool_calls(message.get("tool_calls"))
            rebuilt = base.model_copy(update=update)
        else:
            rebuilt = Message(
                role=role if role in ("user", "system", "assistant", "tool") else "user",
                content=_content_items(message.get("content")),
                tool_calls=self._tool_calls(message.get("tool_calls")),
                tool_call_id=message.get("tool_call_id"),
                name=message.get("name") or (self._call_names.get(message.get("tool_call_id") or "")
                                             if role == "tool" else None),
            )
        return GuardedMessageEvent(
            id=f"{key[0]}-memguard-{uuid.uuid4().hex[:8]}" if key else f"memguard-{uuid.uuid4().hex}",
            source=_SOURCES.get(str(role), "environment"),
            message=rebuilt,
            replaces=list(key or ()),
        )

    def _tool_calls(self, calls: Any) -> list[MessageToolCall] | None:
        if not calls:
            return None
        out = []
        for call in calls:
            function = call.get("function") or {}
            call_id = str(call.get("id") or f"memguard-{uuid.uuid4().hex[:8]}")
            arguments = function.get("arguments")
            out.append(MessageToolCall(
                id=call_id,
                name=self._call_names.get(call_id, function.get("name") or "tool"),
                arguments=arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
                origin="completion",
            ))
        return out

    # ------------------------------------------------------------------ what a condenser returns

    def as_condensation(self, events: Sequence[LLMConvertibleEvent]) -> Condensation | None:
        """`events` as a `Condensation` of the view, when they only forget events and add one summary.

        Args:
            events: The events of a candidate context.

        Returns:
            The proposal's (or a condenser fallback's) own `Condensation` when it is that one, a
            new `Condensation`, or None when the events reorder, edit or add more than a summary
            (or change nothing).
        """
        position = {event.id: index for index, event in enumerate(self.view.events)}
        kept: list[int] = []
        summary: tuple[int, str] | None = None
        for index, event in enumerate(events):
            if event.id in position:
                kept.append(position[event.id])
            elif isinstance(event, CondensationSummaryEvent) and summary is None:
                summary = (index, event.summary)
            else:
                return None
        if kept != sorted(set(kept)):
            return None
        forgotten = {event.id for index, event in enumerate(self.view.events) if index not in set(kept)}
        if not forgotten and summary is None:
            return None
        target = (forgotten, summary[1] if summary else None, summary[0] if summary else None)
        for known in self._condensations:  # the proposal itself, or a condenser fallback's
            shown = (known.summary, known.summary_offset) if known.has_summary_metadata else (None, None)
            if (known.forgotten_event_ids, *shown) == target:
                return known
        return Condensation(
            forgotten_event_ids=forgotten,
            summary=summary[1] if summary else None,
            summary_offset=summary[0] if summary else None,
            llm_response_id=f"memguard-{uuid.uuid4().hex}",
        )

    def as_result(self, messages: Sequence[Any]) -> View | Condensation:
        """What the condenser returns for the guard's chosen messages.

        Args:
            messages: The context the guard chose.

        Returns:
            A `Condensation` when the choice only forgets events and adds at most one summary,
            else a new `View` (it lasts this step only).
        """
        events = self.to_events(messages)
        condensation = self.as_condensation(events)
        if condensation is not None:
            return condensation
        return View(events=events, unhandled_condensation_request=self.view.unhandled_condensation_request)

    def persistable(self, messages: Sequence[Any]) -> bool:
        """Whether `messages` can be stored as a `Condensation`, and so resolve a HARD requirement.

        Args:
            messages: A candidate context.

        Returns:
            True when `as_condensation` accepts its events.
        """
        return self.as_condensation(self.to_events(messages)) is not None


def assistant_turns(events: Sequence[LLMConvertibleEvent]) -> int:
    """How many assistant messages `events` make (the step the guard counts and cools down on)."""
    turns = 0
    for group in _groups(events):
        first = group[0]
        if isinstance(first, ActionEvent):
            turns += 1
        elif isinstance(first, MessageEvent):
            turns += first.llm_message.role == "assistant"
        elif not isinstance(first, (ObservationBaseEvent, SystemPromptEvent, CondensationSummaryEvent)):
            turns += first.to_llm_message().role == "assistant"
    return turns


def _message_of(group: list[LLMConvertibleEvent]) -> Message:
    messages = LLMConvertibleEvent.events_to_messages(group)
    if len(messages) != 1:  # never for a group built by _groups; kept as a clear failure
        raise ValueError(f"events {[e.id for e in group]} do not form one LLM message")
    return messages[0]


def _is_summary(message: Mapping[str, Any]) -> bool:
    content = message.get("content")
    return message.get("role") == "user" and isinstance(content, str) and content.startswith(SUMMARY_PREFIX)


def _as_dicts(messages: Sequence[Any]) -> list[Mapping[str, Any]]:
    """Guard messages as dicts: dicts pass through, memguard `Message`s are converted back."""
    if all(isinstance(message, Mapping) for message in messages):
        return list(messages)
    return list(restore_messages(to_messages(list(messages)), MessageFormat.OPENAI))
