"""What an agent's next action *is*, compared as a message rather than as rendered text.

`identical_is_safe` commits a candidate without an RM call when the agent's next action is the
same under both contexts. The rendered action text (protocol §5) cannot say that: it is cut at
500 characters and renders a custom tool call (Codex's ``apply_patch``) as ``tool()``, so two
different patches look alike. Here an action is its content and its tool calls in full: each
call's kind, name and parsed arguments (or a custom call's raw input). Call ids and reasoning
are not part of it: they differ between two requests that act the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from memguard.messages import Message, is_langchain_message

__all__ = ["action_signature", "same_action", "tool_call_signature"]

_NOT_THE_ACTION = frozenset({"tool_use", "thinking", "redacted_thinking", "reasoning"})
_VOLATILE_KEYS = frozenset({"id", "index", "signature", "cache_control"})
_TEXT_TYPES = frozenset({"text", "input_text", "output_text"})


def _parsed(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except (json.JSONDecodeError, RecursionError, ValueError):
            return arguments
    return arguments


def _call_signature(call: Any) -> tuple[Any, ...]:
    if not isinstance(call, Mapping):
        return ("other", str(call))
    custom = call.get("custom")
    if isinstance(custom, Mapping):  # Chat Completions custom tool call (Codex apply_patch)
        return ("custom", custom.get("name"), custom.get("input"))
    function = call.get("function")
    if isinstance(function, Mapping):
        return ("function", function.get("name"), _parsed(function.get("arguments")))
    if "name" in call and "args" in call:  # a LangChain tool call (or an invalid one: args a string)
        return ("function", call.get("name"), _parsed(call.get("args")))
    return ("other", json.dumps({k: v for k, v in call.items() if k not in _VOLATILE_KEYS},
                                sort_keys=True, default=str))


def tool_call_signature(message: Any) -> list[tuple[Any, ...]]:
    """The message's tool calls as (kind, name, arguments) tuples, ids left out; [] for none."""
    if is_langchain_message(message):
        calls = list(getattr(message, "tool_calls", None) or [])
        calls += list(getattr(message, "invalid_tool_calls", None) or [])
    elif isinstance(message, Mapping):
        calls = message.get("tool_calls") or []
    elif isinstance(message, Message):
        calls = message.tool_calls or []
    else:
        return []
    if not isinstance(calls, (list, tuple)):
        return [("other", str(calls))]
    return [_call_signature(call) for call in calls]


def _content_signature(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        return str(content)
    kept: list[Any] = []
    for item in content:
        if isinstance(item, Mapping):
            if item.get("type") in _NOT_THE_ACTION:
                continue
            kept.append({k: v for k, v in item.items() if k not in _VOLATILE_KEYS})
        else:
            kept.append(item)
    if all(isinstance(i, str) or (isinstance(i, Mapping) and i.get("type") in _TEXT_TYPES) for i in kept):
        return "".join(i if isinstance(i, str) else str(i.get("text") or "") for i in kept)
    return json.dumps(kept, sort_keys=True, default=str)


def action_signature(response: Any) -> tuple[str, list[tuple[Any, ...]]] | None:
    """An agent response as (content, tool calls); None for no action at all (nothing to compare)."""
    if response is None:
        return None
    if isinstance(response, str):
        content: Any = response
        calls: list[tuple[Any, ...]] = []
    elif isinstance(response, Mapping):
        content, calls = response.get("content"), tool_call_signature(response)
    else:
        content, calls = getattr(response, "content", None), tool_call_signature(response)
    text = _content_signature(content)
    if not text.strip() and not calls:
        return None
    return text, calls


def same_action(a: Any, b: Any) -> bool:
    """True when two responses act identically: same content, same tool calls in full (ids aside).

    This is how `identical_is_safe` skips the RM call. Tool-call ids, thinking and reasoning
    blocks, and cache or signature keys are ignored; arguments are compared as parsed JSON.
    Two empty responses are not the same action: no action is what HARMFUL labels mean.

    Args:
        a: An agent response: a string, an OpenAI-style dict, or a message object (LangChain's,
            `Message`).
        b: The other response, of any of those types.

    Returns:
        True when both act and act alike.
    """
    left, right = action_signature(a), action_signature(b)
    return left is not None and left == right
