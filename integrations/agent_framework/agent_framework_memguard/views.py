"""Agent Framework messages shown to memguard, and back, without loss.

An Agent Framework `Message` holds a role and a list of `Content` items (text, function calls,
function results, reasoning, media, usage, ...); memguard's `Message` is one OpenAI-style turn.
`to_view` gives each message one turn, except a tool message, which gives one ``tool`` turn per
function result (the OpenAI shape MemRM was trained on). Every view turn remembers the message it
shows (memguard's own `source` mechanism), so `from_view` hands back the agent's very own object
wherever nothing changed, a copy with only the changed content replaced where something did (ids,
annotations, compaction flags and hidden content kept), and a fresh message for a turn memguard
wrote. Content the model does not read as text (reasoning, usage, opaque provider items) is not
shown to MemRM and travels with the message that holds it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from agent_framework import ChatResponse, Content
from agent_framework import Message as AFMessage
from agent_framework._compaction import GROUP_ANNOTATION_KEY, SUMMARY_OF_MESSAGE_IDS_KEY
from memguard import SUMMARY_PREFIX, Message

from agent_framework_memguard.state import structural_copy

__all__ = ["INSTRUCTIONS", "PART", "from_view", "is_summary", "response_view", "to_view"]

PART = "agent_framework_part"
"""Extra view field: the index, in the shown message's `contents`, of the function result a tool turn shows."""

INSTRUCTIONS = "agent_framework_instructions"
"""Extra view field marking the system turn that shows the run's instructions (view only, never sent back)."""

_HIDDEN = frozenset({"text_reasoning", "usage"})


def is_summary(message: AFMessage) -> bool:
    """Whether `message` is a summary: a text message a compaction strategy wrote in place of others.

    Args:
        message: An Agent Framework message.

    Returns:
        True when its group annotation names the messages it summarises and it holds no function
        call or result.
    """
    annotation = message.additional_properties.get(GROUP_ANNOTATION_KEY)
    return (isinstance(annotation, Mapping) and bool(annotation.get(SUMMARY_OF_MESSAGE_IDS_KEY))
            and not any(c.type in ("function_call", "function_result") for c in message.contents))


def to_view(messages: Sequence[AFMessage], instructions: str | Sequence[str] | None = None) -> list[Message]:
    """memguard's view of `messages`: the turns MemRM reads, in order.

    Args:
        messages: The messages the model is sent (pass the included ones: a compaction's excluded
            messages are not part of the context).
        instructions: The run's instructions (`options["instructions"]`), shown as a leading
            system turn: MemRM's training views open with the agent's system prompt.

    Returns:
        One view turn per message (one per function result for tool messages). A summary a
        strategy inserted reads ``"[Summary] " + text`` as a user turn, the way MemRM saw
        summaries in training.
    """
    view: list[Message] = []
    text = _instructions_text(instructions)
    if text:
        view.append(Message.model_validate({"role": "system", "content": text, INSTRUCTIONS: True}))
    for message in messages:
        view.extend(_shown(message))
    return view


def response_view(response: ChatResponse[Any]) -> Message:
    """The assistant turn MemRM judges for a model response.

    Args:
        response: The model's response.

    Returns:
        One assistant `Message` with the texts and function calls of all its messages.
    """
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for message in response.messages:
        turn = _assistant_fields(message)
        if turn["content"]:
            texts.append(turn["content"])
        calls.extend(turn.get("tool_calls") or [])
    fields: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
    if calls:
        fields["tool_calls"] = calls
    return Message.model_validate(fields)


def from_view(view: Sequence[Any]) -> list[AFMessage]:
    """The agent's messages for a view: its own objects where nothing changed.

    Args:
        view: A view made by `to_view`, possibly changed by a memguard strategy (turns dropped,
            contents replaced, turns added).

    Returns:
        Agent Framework messages: the very objects `to_view` was given for unchanged turns; for a
        changed turn, a copy of its message with only the shown content replaced (message id,
        annotations, flags and hidden content kept); a new message for a turn with no source.
        The instructions turn is dropped (it lives in the run's options, not in the history).
    """
    out: list[AFMessage] = []
    items = [item if isinstance(item, Message) else Message.model_validate(item) for item in view]
    for source, turns in _runs(items):
        if source is None:
            out.extend(_new_message(turn) for turn in turns)
        else:
            out.append(_rebuilt(source, turns))
    return out


# ---------------------------------------------------------------------- what MemRM reads


def _instructions_text(instructions: str | Sequence[str] | None) -> str:
    if instructions is None:
        return ""
    if isinstance(instructions, str):
        return instructions
    return "\n".join(part for part in instructions if isinstance(part, str) and part.strip())


def _shown(message: AFMessage) -> list[Message]:
    if is_summary(message):
        return [_mark({"role": "user", "content": SUMMARY_PREFIX + message.text}, message)]
    results = [(i, c) for i, c in enumerate(message.contents) if c.type == "function_result"]
    if results:
        return [_mark(_result_fields(content, index), message) for index, content in results]
    if message.role == "assistant":
        return [_mark(_assistant_fields(message), message)]
    return [_mark({"role": message.role, "content": _plain_text(message.contents)}, message)]


def _mark(fields: dict[str, Any], source: AFMessage) -> Message:
    return Message.model_validate(fields)._mark_source(source)


def _assistant_fields(message: AFMessage) -> dict[str, Any]:
    calls = [_call_fields(c) for c in message.contents if c.type == "function_call"]
    texts = [c.text for c in message.contents if c.type == "text" and c.text]
    fields: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
    if calls:
        fields["tool_calls"] = calls
    return fields


def _call_fields(content: Content) -> dict[str, Any]:
    arguments = content.arguments
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False, default=str)
    function = {"name": content.name or "tool", "arguments": arguments}
    return {"id": content.call_id, "type": "function", "function": function}


def _result_fields(content: Content, index: int) -> dict[str, Any]:
    return {"role": "tool", "content": _result_text(content.result), "tool_call_id": content.call_id, PART: index}


def _result_text(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    if isinstance(result, Content):
        return result.text or ""
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(result)


def _plain_text(contents: Sequence[Content]) -> str:
    """Text items as they are; media and other visible items named, so MemRM knows they were there."""
    lines: list[str] = []
    for content in contents:
        if content.type == "text":
            lines.append(content.text or "")
        elif content.type in _HIDDEN:
            continue
        elif content.type == "error":
            lines.append(f"[error] {content.message or ''}".rstrip())
        elif content.uri or content.media_type:
            lines.append(f"[{content.media_type or content.type} {content.uri or ''}]".replace(" ]", "]"))
        else:
            lines.append(f"[{content.type}]")
    return "\n".join(lines)


# ---------------------------------------------------------------------- back to Agent Framework


def _runs(items: list[Message]) -> Iterator[tuple[AFMessage | None, list[Message]]]:
    """Consecutive view turns grouped by the message they show (None: a turn memguard wrote)."""
    current: AFMessage | None = None
    group: list[Message] = []
    for item in items:
        if (item.model_extra or {}).get(INSTRUCTIONS):
            continue
        source = item.source if isinstance(item.source, AFMessage) else None
        if group and source is not current:
            yield current, group
            group = []
        if source is None:
            yield None, [item]
            continue
        current = source
        group.append(item)
    if group:
        yield current, group


def _rebuilt(source: AFMessage, turns: list[Message]) -> AFMessage:
    shown = _shown(source)
    if len(turns) == len(shown) and all(t.unchanged_since_source() for t in turns):
        return source
    message = copy.copy(source)
    message.additional_properties = structural_copy(source.additional_properties)
    if is_summary(source):
        text = turns[0].text().removeprefix(SUMMARY_PREFIX)
        message.contents = [_replace_text(source.contents, text)] + [c for c in source.contents if c.type != "text"]
        return message
    if any(c.type == "function_result" for c in source.contents):
        by_part = {(t.model_extra or {}).get(PART): t for t in turns}
        contents = []
        for index, content in enumerate(source.contents):
            if content.type != "function_result":
                contents.append(content)
            elif index in by_part:
                turn = by_part[index]
                same = turn.unchanged_since_source() or turn.text() == _result_text(content.result)
                contents.append(content if same else _with_result(content, turn.text()))
        message.contents = contents
        return message
    (turn,) = turns[:1]
    message.contents = _rebuilt_contents(source.contents, turn)
    return message


def _rebuilt_contents(contents: list[Content], turn: Message) -> list[Content]:
    """The message's contents with the turn's text and calls; hidden items kept in place."""
    text = turn.text() if turn.role != "assistant" else (turn.content if isinstance(turn.content, str) else "")
    kept_calls = {call.get("id") for call in turn.tool_calls or [] if isinstance(call, Mapping)}
    out: list[Content] = []
    text_written = False
    for content in contents:
        if content.type == "text":
            if not text_written and text:
                out.append(_replace_text([content], text))
                text_written = True
        elif content.type == "function_call":
            if content.call_id in kept_calls:
                out.append(content)
        else:
            out.append(content)
    if text and not text_written:
        out.insert(0, Content.from_text(text))
    return out


def _replace_text(contents: Sequence[Content], text: str) -> Content:
    first = next((c for c in contents if c.type == "text"), None)
    if first is None:
        return Content.from_text(text)
    if first.text == text:
        return first
    replaced = copy.copy(first)
    replaced.text = text
    return replaced


def _with_result(content: Content, text: str) -> Content:
    replaced = copy.copy(content)
    replaced.result = text
    replaced.items = None
    return replaced


def _new_message(turn: Message) -> AFMessage:
    """A message for a turn memguard (a fallback strategy) wrote: text, calls or a tool result."""
    role = str(turn.role)
    if role == "tool":
        return AFMessage("tool", [Content.from_function_result(turn.tool_call_id or "", result=turn.text())])
    contents: list[Content] = [Content.from_text(turn.text())] if turn.text() else []
    for call in turn.tool_calls or []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            contents.append(Content.from_function_call(
                str(call.get("id") or ""), str(function.get("name") or "tool"), arguments=function.get("arguments")))
    return AFMessage(role, contents)
