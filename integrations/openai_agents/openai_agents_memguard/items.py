"""The SDK's input items as memguard messages, and back, without loss.

The Agents SDK speaks Responses API items (easy messages, ``function_call`` /
``function_call_output`` pairs, reasoning, hosted tool calls, compaction items, ...); MemRM was
trained on chat turns: a system prompt, user turns, assistant turns with tool calls, tool
results. `to_view` groups the items of one model response (reasoning, the assistant message, its
calls) into one assistant turn, so that one model call is one agent step, and puts the agent's
instructions in front as the system turn.

Every view message carries the items it was made from under `ITEMS_KEY` (memguard keeps unknown
message fields), so `from_view` gives back the very same item objects for every message a
strategy left alone, and rebuilds an edited message from its own items, keeping every field the
edit did not touch (ids, status, call ids, namespaces, parts). Nothing about the items is lost
on the way through the guard.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from memguard import OPENING_MESSAGES, SUMMARY_PREFIX

__all__ = [
    "INSTRUCTIONS_KEY",
    "ITEMS_KEY",
    "OPAQUE_SUMMARY",
    "from_view",
    "gate_view",
    "input_digest",
    "is_opaque",
    "opening_view",
    "to_view",
]

ITEMS_KEY = "openai_items"
"""The view-message field holding the SDK items the message stands for."""

INSTRUCTIONS_KEY = "openai_instructions"
"""Marks the view's leading system message as the agent's instructions (not an item)."""

OPAQUE_SUMMARY = "(compaction item: the summary is encrypted and only the OpenAI API can read it)"
"""What MemRM is shown for a server-side compaction item."""

# Calls answered by an output item of their own (matched by call_id): tool calls in the view.
_OUTPUT_OF_CALL: Mapping[str, str] = {
    "function_call": "function_call_output",
    "custom_tool_call": "custom_tool_call_output",
    "computer_call": "computer_call_output",
    "local_shell_call": "local_shell_call_output",
    "shell_call": "shell_call_output",
    "apply_patch_call": "apply_patch_call_output",
    "tool_search_call": "tool_search_output",
    "program": "program_output",
}
_OUTPUT_TYPES = frozenset(_OUTPUT_OF_CALL.values())
# Model-side items with no output item (hosted tools run inside the API): text in the turn.
_HOSTED = frozenset({
    "web_search_call", "file_search_call", "code_interpreter_call", "image_generation_call",
    "mcp_call", "mcp_list_tools", "mcp_approval_request",
})  # fmt: skip
_OPAQUE_TYPES = frozenset({"compaction", "item_reference"})
_ID_FIELDS = ("type", "id", "call_id", "status")
_MAX_INLINE = 2000


def _plain(item: Any) -> Any:
    """A pydantic item (an SDK output object) as its dict; dicts stay the same object."""
    if isinstance(item, Mapping):
        return item
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        return dump(exclude_unset=True)
    raise ValueError(f"not a Responses input item: {type(item).__name__}")


def _type_of(item: Mapping[str, Any]) -> str:
    kind = item.get("type")
    if kind is None and "role" in item:
        return "message"
    return str(kind)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _text_parts(content: Any) -> str:
    """An assistant message's text: output_text and refusal parts joined (the renderer drops lists)."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, Mapping):
            text = part.get("text") if part.get("text") is not None else part.get("refusal")
            if text is not None:
                texts.append(str(text))
        elif isinstance(part, str):
            texts.append(part)
    return "\n".join(texts)


def _hosted_line(item: Mapping[str, Any]) -> str:
    details = {k: v for k, v in item.items() if k not in _ID_FIELDS}
    return f"{_type_of(item)}({_json(details)[:_MAX_INLINE]})"


def _tool_call(item: Mapping[str, Any]) -> dict[str, Any]:
    kind = _type_of(item)
    if kind == "function_call":
        name, arguments = item.get("name") or "tool", item.get("arguments") or ""
    elif kind == "custom_tool_call":
        name, arguments = item.get("name") or "tool", _json({"input": item.get("input")})
    else:
        name = kind
        arguments = _json({k: v for k, v in item.items() if k not in _ID_FIELDS})
    return {"id": _call_id(item), "type": "function", "function": {"name": name, "arguments": arguments}}


def _call_id(item: Mapping[str, Any]) -> str:
    return str(item.get("call_id") or item.get("id") or "")


def _payload_field(item: Mapping[str, Any]) -> str:
    return "tools" if _type_of(item) == "tool_search_output" else "output"


def _tool_content(item: Mapping[str, Any]) -> Any:
    payload = item.get(_payload_field(item))
    if payload is None or isinstance(payload, (str, list)):
        return payload if payload is not None else ""
    return _json(payload)


def is_opaque(item: Any) -> bool:
    """Whether memguard cannot read `item`: a server-side compaction item or an item reference.

    A rewrite that brings such an item is audited, never enforced.

    Args:
        item: A Responses input item (a dict or an SDK object).

    Returns:
        True for ``compaction`` and ``item_reference`` items.

    Raises:
        ValueError: `item` is not a Responses input item.
    """
    return _type_of(_plain(item)) in _OPAQUE_TYPES


def _view_message(role: str, content: Any, items: list[Any], **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": role, "content": content, **fields}
    message[ITEMS_KEY] = items
    return message


def _single(item: Any) -> dict[str, Any]:
    """The view message of an item that is a turn of its own (user, system, outputs, others)."""
    data = _plain(item)
    kind = _type_of(data)
    if kind == "message":
        role = str(data.get("role") or "user")
        content = data.get("content")
        if role == "assistant":
            return _view_message("assistant", _text_parts(content), [item])
        return _view_message("system" if role == "developer" else role, content, [item])
    if kind in _OUTPUT_TYPES:
        return _view_message("tool", _tool_content(data), [item], tool_call_id=_call_id(data))
    if kind == "compaction":
        return _view_message("user", SUMMARY_PREFIX + OPAQUE_SUMMARY, [item])
    details = {k: v for k, v in data.items() if k != "type"}
    return _view_message(kind, _json(details)[:_MAX_INLINE], [item])


def _is_model_side(data: Mapping[str, Any]) -> bool:
    kind = _type_of(data)
    if kind == "message":
        return data.get("role") == "assistant"
    return kind in _OUTPUT_OF_CALL or kind in _HOSTED or kind == "reasoning"


def _assistant_turn(group: list[Any]) -> dict[str, Any]:
    """One model response (reasoning, message, calls) as one assistant turn."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in group:
        data = _plain(item)
        kind = _type_of(data)
        if kind == "message":
            text = _text_parts(data.get("content"))
            if text:
                texts.append(text)
        elif kind in _OUTPUT_OF_CALL:
            calls.append(_tool_call(data))
        elif kind in _HOSTED:
            texts.append(_hosted_line(data))
    fields: dict[str, Any] = {"tool_calls": calls} if calls else {}
    return _view_message("assistant", "\n".join(texts) if texts else None, list(group), **fields)


def to_view(items: Sequence[Any], instructions: str | None = None) -> list[dict[str, Any]]:
    """The chat view MemRM reads: instructions as the system turn, one assistant turn per model response.

    The items of one model response (reasoning, the assistant message, its calls) become one
    assistant turn, so one model call is one agent step. Every view message carries the items it
    was made from under `ITEMS_KEY`, so `from_view` can give them back exactly.

    Args:
        items: The SDK's input items.
        instructions: The agent's instructions (None: no system turn).

    Returns:
        The view, as OpenAI-style message dicts.

    Raises:
        ValueError: `items` is not a list of Responses input items (the bad item is named by position).
    """
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError(f"expected a list of Responses input items, got {type(items).__name__}")
    view: list[dict[str, Any]] = []
    if instructions:
        view.append({"role": "system", "content": instructions, INSTRUCTIONS_KEY: True, ITEMS_KEY: []})
    group: list[Any] = []
    for index, item in enumerate(items):
        try:
            data = _plain(item)
        except ValueError as exc:
            raise ValueError(f"item {index}: {exc}") from None
        if _is_model_side(data):
            group.append(item)
            continue
        if group:
            view.append(_assistant_turn(group))
            group = []
        view.append(_single(item))
    if group:
        view.append(_assistant_turn(group))
    return view


def opening_view(items: Sequence[Any], instructions: str | None = None) -> list[dict[str, Any]]:
    """The start of `to_view(items, instructions)`: enough of it for `memguard.conversation_key`.

    An audit gate checks no cooldown, so without a conversation id it reads only the opening (the
    first <= 8 view messages) to derive one. `to_view` makes one message per item, except that
    the items of one model response become one assistant turn, closed by the next item that is
    not a model output: the view of a prefix of `items` is the full view's prefix, with at most
    its last message cut short. A prefix whose view has more than 8 messages therefore gives the
    same id as the whole view. The prefix doubles until it does (or is all of `items`).

    Args:
        items: The SDK's input items.
        instructions: The agent's instructions (None: no system turn).

    Returns:
        A prefix of the view, longer than the opening (the whole view for a short conversation).

    Raises:
        ValueError: As `to_view`, for an item in the prefix it converts.
    """
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError(f"expected a list of Responses input items, got {type(items).__name__}")
    length = 2 * OPENING_MESSAGES
    while True:
        view = to_view(items[:length], instructions)
        if length >= len(items) or len(view) > OPENING_MESSAGES:
            return view
        length *= 2


def gate_view(items: Sequence[Any], instructions: str | None, *, audit: bool,
              conversation_id: str | None) -> list[dict[str, Any]] | None:
    """What `Guard.gate` needs of the view of `items`, and no more.

    An enforcing gate may check a cooldown, which counts the assistant turns of the whole view; an
    audit gate checks none, so it needs nothing when the conversation is named and only the
    opening (`opening_view`) to derive an id when it is not.

    Args:
        items: The SDK's input items.
        instructions: The agent's instructions (None: no system turn).
        audit: Whether the gate is an audit gate (the guard's mode, or a per-call audit).
        conversation_id: The conversation's id, if the integration knows one.

    Returns:
        The whole view, its opening, or None.

    Raises:
        ValueError: As `to_view`, for an item it converts.
    """
    if not audit:
        return to_view(items, instructions)
    if conversation_id is not None:
        return None
    return opening_view(items, instructions)


def _field(message: Any, name: str, default: Any = None) -> Any:
    if isinstance(message, Mapping):
        return message.get(name, default)
    extra = getattr(message, "model_extra", None) or {}
    return extra.get(name, getattr(message, name, default))


def _shown(message: Any) -> dict[str, Any]:
    """What a view message says (role, content, tool calls, call id), without its carried items."""
    calls = _field(message, "tool_calls") or []
    return {
        "role": _field(message, "role"),
        "content": _field(message, "content"),
        "tool_calls": [dict(c) for c in calls] or None,
        "tool_call_id": _field(message, "tool_call_id"),
    }


def from_view(messages: Sequence[Any]) -> tuple[str | None, list[Any]]:
    """The instructions and items for a view, possibly edited by a strategy, without loss.

    A message a strategy left alone gives back the very item objects it carries; an edited one is
    rebuilt from its own items, keeping every field the edit did not touch (ids, status, call
    ids, parts); a message a strategy wrote is built fresh.

    Args:
        messages: A view from `to_view`, or a strategy's compaction of one.

    Returns:
        The instructions (None when the view has none) and the input items.

    Raises:
        ValueError: An edit cannot be expressed as items (a tool result moved to another call,
            text written over a non-text item); the message is named by position.
    """
    instructions: str | None = None
    items: list[Any] = []
    for index, message in enumerate(messages):
        if _field(message, INSTRUCTIONS_KEY):
            content = _field(message, "content")
            instructions = content if isinstance(content, str) else _text_parts(content)
            continue
        carried = list(_field(message, ITEMS_KEY) or [])
        if carried and _same_turn(message, carried):
            items.extend(carried)
            continue
        try:
            items.extend(_rebuilt(message, carried))
        except ValueError as exc:
            raise ValueError(f"message {index}: {exc}") from None
    return instructions, items


def _same_turn(message: Any, carried: list[Any]) -> bool:
    shown = _shown(message)
    if _is_model_side(_plain(carried[0])):
        original = _assistant_turn(carried)
    else:
        original = _single(carried[0])
    return shown == _shown(original)


def _rebuilt(message: Any, carried: list[Any]) -> list[Any]:
    """Items for a message a strategy created or edited, from the items it carries when it has any."""
    role = _field(message, "role")
    content = _field(message, "content")
    if role == "tool":
        return [_rebuilt_output(message, carried)]
    if role == "assistant":
        return _rebuilt_turn(message, carried)
    if role in ("user", "system", "developer"):
        if len(carried) == 1:
            original = _plain(carried[0])
            if _type_of(original) == "message":
                return [{**original, "content": content}]
        if carried:
            raise ValueError(f"cannot rewrite a {_type_of(_plain(carried[0]))} item as a {role} message")
        return [{"role": role, "content": content if content is not None else ""}]
    raise ValueError(f"cannot rebuild an item of type {role!r} that a strategy edited")


def _rebuilt_output(message: Any, carried: list[Any]) -> Any:
    content = _field(message, "content")
    call_id = _field(message, "tool_call_id")
    if not carried:
        return {"type": "function_call_output", "call_id": call_id, "output": content if content is not None else ""}
    original = _plain(carried[0])
    field = _payload_field(original)
    if str(call_id) != _call_id(original):
        raise ValueError("a tool result was moved to another call id")
    if not isinstance(original.get(field), (str, list)) or not isinstance(content, (str, list)):
        raise ValueError(f"cannot rewrite the {field} of a {_type_of(original)} item with text")
    return {**original, field: content}


def _rebuilt_turn(message: Any, carried: list[Any]) -> list[Any]:
    """An edited assistant turn: its items kept, the calls matched by id, the text replaced."""
    content = _field(message, "content")
    wanted = {str(c.get("id")): c for c in (_field(message, "tool_calls") or []) if isinstance(c, Mapping)}
    original_text = _field(_assistant_turn(carried), "content") if carried else None
    text_changed = (content or None) != (original_text or None)
    out: list[Any] = []
    placed_text = False
    for item in carried:
        data = _plain(item)
        kind = _type_of(data)
        if kind == "message":
            if not text_changed:
                out.append(item)
            elif not placed_text and content:
                out.append({"role": "assistant", "content": content})
            placed_text = True
        elif kind in _OUTPUT_OF_CALL:
            call = wanted.pop(_call_id(data), None)
            if call is None:
                continue  # the strategy dropped this call
            out.append(item if call == _tool_call(data) else _rebuilt_call(data, call))
        else:
            out.append(item)  # reasoning and hosted calls stay with their turn
    if text_changed and not placed_text and content:
        out.insert(_after_reasoning(out), {"role": "assistant", "content": content})
    for call in wanted.values():
        out.append(_new_call(call))
    return out


def _after_reasoning(items: list[Any]) -> int:
    index = 0
    while index < len(items) and _type_of(_plain(items[index])) == "reasoning":
        index += 1
    return index


def _rebuilt_call(original: Mapping[str, Any], call: Mapping[str, Any]) -> dict[str, Any]:
    if _type_of(original) != "function_call":
        raise ValueError(f"cannot rewrite the arguments of a {_type_of(original)} item")
    function = call.get("function") or {}
    return {**original, "name": function.get("name", original.get("name")),
            "arguments": function.get("arguments", original.get("arguments"))}


def _new_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"type": "function_call", "call_id": str(call.get("id") or ""),
            "name": function.get("name") or "tool", "arguments": function.get("arguments") or ""}


def input_digest(instructions: str | None, items: Sequence[Any]) -> str:
    """A fingerprint of one model input, to recognise the same call again.

    Args:
        instructions: The instructions sent.
        items: The input items sent.

    Returns:
        A SHA-256 hex digest.
    """
    payload = _json([instructions, [_plain(item) for item in items]])
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()
