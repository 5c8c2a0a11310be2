"""Pydantic AI messages shown to memguard, and back, without loss.

A Pydantic AI `ModelRequest` holds several parts (system prompt, user prompt, tool returns,
retries, a summary); memguard's `Message` is one OpenAI-style turn. `MessageBridge.to_view` gives
each visible request part its own `Message` and each `ModelResponse` one assistant `Message`,
tagged with a reference to where it came from. `from_view` groups them back: a message whose view
is unchanged comes back as the agent's very own object; a changed one is rebuilt from the original
with only the changed parts replaced (ids, timestamps, metadata and hidden parts kept); a message
memguard added is built fresh. Parts the model never reads as text (instruction deltas, tool
availability, settings changes) stay hidden from MemRM and travel with the message that holds
them. A provider's compaction (a response holding only `CompactionPart`s) is shown as the summary
it is, its text when the provider returns one, a placeholder when it is encrypted; it can be kept
or dropped, never edited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from memguard import Message
from pydantic_ai.messages import (
    BaseToolReturnPart,
    CompactionPart,
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    RetryFeedbackPart,
    RetryPromptPart,
    SystemPromptPart,
    TextContent,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

__all__ = ["ENCRYPTED_SUMMARY", "INSTRUCTIONS_REF", "REF", "SUMMARY_PREFIX", "MessageBridge"]

REF = "pydantic_ai_ref"
"""The extra `Message` field naming the Pydantic AI message (and part) a view message shows."""

INSTRUCTIONS_REF = "instructions"
"""`REF` of the system turn that shows the agent's instructions (view only, never sent back)."""

SUMMARY_PREFIX = "[Summary] "
"""How MemRM saw summaries in training (protocol §4): a user turn starting with this."""

ENCRYPTED_SUMMARY = "(a compaction by the model's provider: the summary is encrypted and only the provider can read it)"
"""What MemRM reads for a provider's compaction whose summary is encrypted."""


@dataclass(frozen=True)
class _Shown:
    """One view message as first made: where it came from and what it looked like."""

    key: int
    part: int | None  # index into the request's parts; None for a response
    fields: dict[str, Any]
    items: tuple[int, ...] = ()  # user prompt list content: original item index of each shown item


class MessageBridge:
    """One conversion of an agent's messages, remembering the originals to convert back exactly.

    A Pydantic AI `ModelRequest` holds several parts; memguard's `Message` is one OpenAI-style
    turn. The view gives each visible request part its own `Message` and each `ModelResponse` one
    assistant `Message`, tagged (`REF`) with where it came from. Parts the model never reads as
    text (instruction deltas, tool availability) stay hidden from MemRM and travel with the
    message that holds them. Use one bridge for one review: it remembers what it showed.

    Args:
        instructions: The agent's instructions, shown as a leading system turn: MemRM's training
            views start with the agent's system prompt, and Pydantic AI agents usually carry
            theirs as instructions. None: no system turn.
    """

    def __init__(self, instructions: str | None = None) -> None:
        self.instructions = instructions
        """The instructions that lead the view (None: none)."""
        self._originals: dict[int, ModelMessage] = {}
        self._keys: dict[int, int] = {}
        self._shown: dict[str, _Shown] = {}
        self._trailing: dict[int | None, list[ModelMessage]] = {}

    # ------------------------------------------------------------------ to memguard

    def to_view(self, messages: Sequence[ModelMessage]) -> list[Message]:
        """memguard's view of `messages`: instructions first, summaries as ``[Summary]`` user turns.

        A provider's compaction is shown as the summary it is: its text, or `ENCRYPTED_SUMMARY`
        when only the provider can read it.

        Args:
            messages: The agent's history.

        Returns:
            One `Message` per visible request part and per response, each tagged with `REF`.
        """
        view: list[Message] = []
        if self.instructions:
            view.append(Message.model_validate({"role": "system", "content": self.instructions, REF: INSTRUCTIONS_REF}))
        previous: int | None = None
        trailing: dict[int | None, list[ModelMessage]] = {}
        for message in messages:
            key = self._key(message)
            shown = self._show(message, key)
            if shown:
                view.extend(shown)
                previous = key
            else:  # nothing MemRM can read: it travels with the message before it
                trailing.setdefault(previous, []).append(message)
        for after, hidden in trailing.items():
            self._trailing.setdefault(after, hidden)
        return view

    def response_view(self, response: ModelResponse) -> Message:
        """The assistant turn MemRM judges for a model response.

        Args:
            response: A model's answer (a probe's, or the run's own).

        Returns:
            Its text and tool calls as one assistant `Message`.
        """
        (message,) = self._show(response, self._key(response))
        return message

    def _key(self, message: ModelMessage) -> int:
        key = self._keys.get(id(message))
        if key is None or self._originals[key] is not message:
            key = len(self._originals)
            self._originals[key] = message
            self._keys[id(message)] = key
        return key

    def _show(self, message: ModelMessage, key: int) -> list[Message]:
        if isinstance(message, ModelResponse):
            fields = _response_fields(message)
            return [self._remember(fields, _Shown(key, None, fields), str(key))]
        out = []
        for index, part in enumerate(message.parts):
            shown = _request_part_fields(part)
            if shown is None:
                continue
            fields, items = shown
            out.append(self._remember(fields, _Shown(key, index, fields, items), f"{key}:{index}"))
        return out

    def _remember(self, fields: dict[str, Any], shown: _Shown, ref: str) -> Message:
        message = Message.model_validate({**fields, REF: ref})
        self._shown[ref] = replace(shown, fields=message.model_dump())
        return message

    # ------------------------------------------------------------------ back to Pydantic AI

    def from_view(self, messages: Sequence[Any]) -> list[ModelMessage]:
        """The agent's messages for a view, without loss.

        A message whose view is unchanged comes back as the agent's very own object; a changed
        one is rebuilt from the original with only the changed parts replaced (ids, timestamps,
        metadata and hidden parts kept); a message memguard added is built fresh.

        Args:
            messages: A view from `to_view` (of this bridge), or a strategy's compaction of one.

        Returns:
            The history as Pydantic AI keeps it.

        Raises:
            ValueError: The view edits a provider's compaction, which can be kept or dropped only.
        """
        out: list[ModelMessage] = list(self._trailing.get(None, ()))
        new_parts: list[ModelRequestPart] = []
        group: list[tuple[Message, _Shown]] = []

        def flush_group() -> None:
            if group:
                key = group[0][1].key
                out.append(self._rebuild(key, group))
                out.extend(self._trailing.get(key, ()))
                group.clear()

        def flush_new() -> None:
            if new_parts:
                out.append(ModelRequest(parts=list(new_parts)))
                new_parts.clear()

        for item in messages:
            message = item if isinstance(item, Message) else Message.model_validate(item)
            ref = (message.model_extra or {}).get(REF)
            if ref == INSTRUCTIONS_REF:
                continue
            shown = self._shown.get(ref) if isinstance(ref, str) else None
            if shown is None:  # a message memguard (a fallback strategy) wrote
                flush_group()
                if message.role == "assistant":
                    flush_new()
                    out.append(_new_response(message))
                else:
                    new_parts.append(_new_request_part(message))
                continue
            flush_new()
            if group and (group[0][1].key != shown.key or shown.part is None):
                flush_group()
            group.append((message, shown))
            if shown.part is None:
                flush_group()
        flush_group()
        flush_new()
        return out

    def _rebuild(self, key: int, group: list[tuple[Message, _Shown]]) -> ModelMessage:
        original = self._originals[key]
        if isinstance(original, ModelResponse):
            message, shown = group[0]
            if message.model_dump() == shown.fields:
                return original
            if _provider_compaction(original):
                raise ValueError("a provider's compaction can be kept or dropped, not edited")
            return _changed_response(original, message)
        present = {shown.part: (message, shown) for message, shown in group}
        parts: list[ModelRequestPart] = []
        for index, part in enumerate(original.parts):
            if _request_part_fields(part) is None:
                parts.append(part)  # hidden parts stay with their message
            elif index in present:
                message, shown = present[index]
                same = message.model_dump() == shown.fields
                parts.append(part if same else _changed_request_part(part, message, shown))
        if len(parts) == len(original.parts) and all(a is b for a, b in zip(parts, original.parts, strict=True)):
            return original
        return replace(original, parts=parts)


# ---------------------------------------------------------------------- what MemRM reads


def _request_part_fields(part: ModelRequestPart) -> tuple[dict[str, Any], tuple[int, ...]] | None:
    """The view turn of a request part, or None for a part the model does not read as text."""
    if isinstance(part, SystemPromptPart):
        return {"role": "system", "content": part.content}, ()
    if isinstance(part, UserPromptPart):
        if isinstance(part.content, str):
            return {"role": "user", "content": part.content}, ()
        items, index = _user_items(part.content)
        return {"role": "user", "content": items}, index
    if isinstance(part, BaseToolReturnPart):
        return {
            "role": "tool",
            "content": part.model_response_str(),
            "tool_call_id": part.tool_call_id,
            "name": part.tool_name,
        }, ()
    if isinstance(part, RetryPromptPart):  # deprecated, but a stored history may hold one
        if part.tool_name is None:
            return {"role": "user", "content": part.model_response()}, ()
        return {
            "role": "tool",
            "content": part.model_response(),
            "tool_call_id": part.tool_call_id,
            "name": part.tool_name,
        }, ()
    if isinstance(part, RetryFeedbackPart):
        return {"role": "user", "content": part.model_response()}, ()
    if isinstance(part, CompactionPart) and part.content and part.provider_name is None:
        return {"role": "user", "content": SUMMARY_PREFIX + part.content}, ()
    return None


def _user_items(content: Sequence[Any]) -> tuple[list[dict[str, Any]], tuple[int, ...]]:
    """A multi-part user prompt as text items (files named, not inlined); cache points left out."""
    items: list[dict[str, Any]] = []
    index: list[int] = []
    for position, item in enumerate(content):
        if isinstance(item, str):
            text = item
        elif isinstance(item, TextContent):
            text = item.content
        elif getattr(item, "kind", None) == "cache-point":
            continue
        else:
            where = getattr(item, "url", None) or getattr(item, "media_type", None) or ""
            text = f"[{getattr(item, 'kind', type(item).__name__)} {where}]".replace(" ]", "]")
        items.append({"type": "text", "text": text})
        index.append(position)
    return items, tuple(index)


def _provider_compaction(response: ModelResponse) -> bool:
    return bool(response.parts) and all(isinstance(part, CompactionPart) for part in response.parts)


def _response_fields(response: ModelResponse) -> dict[str, Any]:
    if _provider_compaction(response):  # what the provider kept of the history, as MemRM saw summaries
        texts = [part.content for part in response.parts if isinstance(part, CompactionPart) and part.content]
        return {"role": "user", "content": SUMMARY_PREFIX + ("\n\n".join(texts) if texts else ENCRYPTED_SUMMARY)}
    calls = [
        {
            "id": part.tool_call_id,
            "type": "function",
            "function": {"name": part.tool_name, "arguments": part.args_as_json_str()},
        }
        for part in response.parts
        if isinstance(part, ToolCallPart)
    ]
    return {"role": "assistant", "content": response.text, "tool_calls": calls or None}


# ---------------------------------------------------------------------- changed and new messages


def _changed_request_part(part: ModelRequestPart, message: Message, shown: _Shown) -> ModelRequestPart:
    """`part` with the view's changes applied: everything the view does not show is kept."""
    text = message.text()
    if isinstance(part, UserPromptPart):
        return replace(part, content=_user_content(part, message, shown))
    if isinstance(part, BaseToolReturnPart):
        changes: dict[str, Any] = {
            "content": text,
            "tool_call_id": message.tool_call_id or part.tool_call_id,
            "tool_name": message.name or part.tool_name,
        }
        return replace(part, **changes)
    if isinstance(part, RetryPromptPart):
        return replace(part, content=text, tool_call_id=message.tool_call_id or part.tool_call_id)
    if isinstance(part, CompactionPart):
        return replace(part, content=text.removeprefix(SUMMARY_PREFIX))
    if isinstance(part, (SystemPromptPart, RetryFeedbackPart)):
        return replace(part, content=text)
    return part


def _user_content(part: UserPromptPart, message: Message, shown: _Shown) -> Any:
    content = message.content
    if not isinstance(content, list) or isinstance(part.content, str):
        return message.text()
    before = shown.fields.get("content") or []
    hidden = [i for i in range(len(part.content)) if i not in shown.items]  # cache points: kept in place
    rebuilt: list[Any] = []
    for position, item in enumerate(content):
        if position < len(shown.items):
            while hidden and hidden[0] < shown.items[position]:
                rebuilt.append(part.content[hidden.pop(0)])
        if position < len(before) and item == before[position]:
            rebuilt.append(part.content[shown.items[position]])
        elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
            rebuilt.append(item["text"])
        else:
            rebuilt.append(str(item))
    rebuilt.extend(part.content[i] for i in hidden)
    return rebuilt


def _changed_response(original: ModelResponse, message: Message) -> ModelResponse:
    """The response with the view's text and tool calls; thinking, files and native tools kept."""
    calls = {}
    for call in message.tool_calls or []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            calls[call.get("id")] = function
    parts: list[ModelResponsePart] = []
    text_done = False
    for part in original.parts:
        if isinstance(part, TextPart):
            if not text_done and message.content:
                parts.append(part if part.content == message.content else replace(part, content=message.text()))
            text_done = True
        elif isinstance(part, ToolCallPart):
            function = calls.pop(part.tool_call_id, None)
            if function is None:
                continue
            same = function.get("name") == part.tool_name and function.get("arguments") == part.args_as_json_str()
            changes: dict[str, Any] = {
                "tool_name": str(function.get("name") or part.tool_name),
                "args": function.get("arguments"),
            }
            parts.append(part if same else replace(part, **changes))
        else:
            parts.append(part)
    if not text_done and message.content:
        parts.insert(0, TextPart(content=message.text()))
    parts.extend(_new_call(cid, function) for cid, function in calls.items())
    return replace(original, parts=parts)


def _new_request_part(message: Message) -> ModelRequestPart:
    text = message.text()
    if message.role == "system":
        return SystemPromptPart(content=text)
    if message.role == "tool" and message.tool_call_id:
        return ToolReturnPart(tool_name=message.name or "tool", content=text, tool_call_id=message.tool_call_id)
    return UserPromptPart(content=text)


def _new_response(message: Message) -> ModelResponse:
    parts: list[ModelResponsePart] = [TextPart(content=message.text())] if message.content else []
    for call in message.tool_calls or []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            parts.append(_new_call(call.get("id"), function))
    return ModelResponse(parts=parts)


def _new_call(call_id: Any, function: Mapping[str, Any]) -> ToolCallPart:
    arguments = function.get("arguments")
    part = ToolCallPart(str(function.get("name") or "tool"), arguments if isinstance(arguments, (str, dict)) else None)
    if call_id:
        part.tool_call_id = str(call_id)
    return part
