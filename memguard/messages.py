"""One message model for every framework memguard sits in.

Agents hand memguard OpenAI-style dicts or LangChain ``BaseMessage`` objects. The guard works on
`Message`; `to_messages` converts in, `restore_messages` converts back to the caller's own type,
returning the caller's original objects untouched wherever a message was not changed, so nothing
(ids, metadata, response metadata) is lost on the way through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "Message",
    "MessageFormat",
    "as_protocol_dict",
    "block_text",
    "detect_format",
    "is_langchain_message",
    "restore_messages",
    "to_messages",
]


class MessageFormat(StrEnum):
    """The caller's message type, so results go back in the same type they came in."""

    OPENAI = "openai"
    """OpenAI-style dicts (``{"role": ..., "content": ...}``)."""
    LANGCHAIN = "langchain"
    """LangChain ``BaseMessage`` objects."""
    MEMGUARD = "memguard"
    """memguard's own `Message` objects."""


class Message(BaseModel):
    """An OpenAI-style chat message.

    `content` stays loosely typed on purpose: the MemRM protocol defines a rendering for any
    content (string, list of parts, None, anything else), and agents do send all of those.
    Unknown OpenAI fields are kept (``extra="allow"``) so a round trip loses nothing.
    """

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    role: Any = "user"
    """The author: "system", "developer", "user", "assistant" or "tool" (any value is kept)."""
    content: Any = None
    """A string, a list of content parts, None, or anything else the agent sent."""
    tool_calls: list[Any] | None = None
    """An assistant turn's tool calls, OpenAI-style (None: none)."""
    tool_call_id: str | None = None
    """The call a tool result answers (tool turns only)."""
    name: str | None = None
    """The author's or the tool's name, when the message has one."""

    # The object this message was converted from (a dict or a LangChain message). It lets
    # `restore_messages` hand back the very same object when the message is unchanged.
    _source: Any = PrivateAttr(default=None)
    _fields_at_source: dict[str, Any] | None = PrivateAttr(default=None)

    @property
    def source(self) -> Any:
        """The dict or LangChain message this one was converted from (None: built directly)."""
        return self._source

    def to_openai(self) -> dict[str, Any]:
        """A plain OpenAI-style dict, without None-valued optional fields.

        Returns:
            A new dict that always has ``role`` and ``content`` (None when there is none).
        """
        data = self.model_dump(exclude_none=True)
        data.setdefault("role", self.role)
        if "content" not in data:
            data["content"] = None
        return data

    def text(self) -> str:
        """Best-effort plain text of the content (for sizes, rails and strategies, not the RM).

        MemRM reads the protocol's own rendering (`render_prompt`), never this.

        Returns:
            A string content as is; a list's text parts joined by newlines; "" for None;
            `str()` of anything else.
        """
        return content_text(self.content)

    def tool_call_ids(self) -> list[str]:
        """Ids of this message's tool calls, in order.

        Returns:
            The ids (empty when it makes no call, or its calls have no ids).
        """
        ids = []
        for call in self.tool_calls or []:
            if isinstance(call, Mapping) and call.get("id"):
                ids.append(str(call["id"]))
        return ids

    def _mark_source(self, source: Any) -> Message:
        self._source = source
        self._fields_at_source = self.model_dump()
        return self

    def unchanged_since_source(self) -> bool:
        """Whether it still equals the object it was converted from (then that object is handed back).

        Returns:
            False when it has no source or any field changed since the conversion.
        """
        return self._source is not None and self._fields_at_source == self.model_dump()

    def changed_since_source(self) -> dict[str, Any] | None:
        """The fields that differ from the source's.

        Returns:
            Field name to its new value (None for a field that is gone); None when there is no
            source to compare with.
        """
        if self._source is None or self._fields_at_source is None:
            return None
        now = self.model_dump()
        at_source = self._fields_at_source
        changed = {key: value for key, value in now.items() if key not in at_source or at_source[key] != value}
        changed.update({key: None for key in at_source if key not in now})
        return changed


def content_text(content: Any) -> str:
    """Best-effort plain text of any message content: strings, text parts, else `str()`."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for item in content:
            if isinstance(item, Mapping) and isinstance(item.get("text"), str):
                parts.append(item["text"])
            elif isinstance(item, str):
                parts.append(item)
        return "\n".join(parts)
    return str(content)


def role_of(item: Any, *, index: int | None = None) -> str:
    """A message's role without building a `Message` (cheap: for hot paths such as the gate)."""
    if isinstance(item, Mapping):
        return str(item.get("role", "user"))
    if isinstance(item, Message):
        return str(item.role)
    if is_langchain_message(item):
        kind = getattr(item, "type", None)
        return str(_LC_ROLE.get(str(kind)) or getattr(item, "role", None) or kind)
    return str(to_message(item, index=index).role)


def role_and_text(item: Any, *, index: int | None = None) -> tuple[str, str]:
    """A message's role and plain text without building a `Message` (cheap: for hot paths)."""
    if isinstance(item, Mapping):
        return str(item.get("role", "user")), content_text(item.get("content"))
    if isinstance(item, Message):
        return str(item.role), content_text(item.content)
    if is_langchain_message(item):
        return role_of(item), content_text(item.content)
    message = to_message(item, index=index)
    return str(message.role), message.text()


def is_system_like(role: Any) -> bool:
    """`system` and `developer` (OpenAI's newer name for the same kind of turn) are instructions."""
    return role in SYSTEM_ROLES


SYSTEM_ROLES = frozenset({"system", "developer"})


def is_langchain_message(obj: Any) -> bool:
    """True for a LangChain ``BaseMessage`` without importing LangChain when it is absent."""
    for klass in type(obj).__mro__:
        if klass.__name__ == "BaseMessage" and klass.__module__.startswith("langchain_core"):
            return True
    return False


def detect_format(messages: Sequence[Any]) -> MessageFormat:
    """The format of a message list, judged by its elements (an empty list counts as OpenAI)."""
    for item in messages:
        if isinstance(item, Message):
            return MessageFormat.MEMGUARD
        if is_langchain_message(item):
            return MessageFormat.LANGCHAIN
        if isinstance(item, Mapping):
            return MessageFormat.OPENAI
    return MessageFormat.OPENAI


def _check_sequence(messages: Any) -> Sequence[Any]:
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise ValueError(
            f"expected a list of messages, got {type(messages).__name__}; "
            "pass the agent's conversation as a list of dicts or LangChain messages"
        )
    return list(messages)


def to_messages(messages: Any) -> list[Message]:
    """Convert a conversation to `Message` objects, remembering each one's source.

    `restore_messages` later hands back the caller's own objects for messages left unchanged.

    Args:
        messages: A list (or other iterable) of OpenAI-style dicts, LangChain messages or
            `Message` objects, mixed freely; a dict without ``role`` is a user turn.

    Returns:
        One `Message` per element, in order (a `Message` is passed through as is).

    Raises:
        ValueError: `messages` is not a sequence of messages (a string, a dict, None), or an
            element is not a message; the error names its position, never its content.
    """
    result: list[Message] = []
    for index, item in enumerate(_check_sequence(messages)):
        result.append(to_message(item, index=index))
    return result


def to_message(item: Any, *, index: int | None = None) -> Message:
    """Coerce one message. `index` only makes the error message more useful."""
    where = f"message {index}" if index is not None else "message"
    if isinstance(item, Message):
        return item
    if is_langchain_message(item):
        return _from_langchain(item)._mark_source(item)
    if isinstance(item, Mapping):
        data = dict(item)
        tool_calls = data.get("tool_calls")
        if tool_calls is not None and not isinstance(tool_calls, list):
            if isinstance(tool_calls, (tuple,)):
                data["tool_calls"] = list(tool_calls)
            else:
                raise ValueError(
                    f"{where}: tool_calls must be a list, got {type(tool_calls).__name__}"
                )
        for key in ("tool_call_id", "name"):
            if data.get(key) is not None and not isinstance(data[key], str):
                data[key] = str(data[key])
        if "role" not in data:
            data["role"] = "user"
        try:
            return Message.model_validate(data)._mark_source(item)
        except Exception as exc:  # noqa: BLE001 - pydantic's error would echo the content; keep it short
            raise ValueError(f"{where}: not a valid chat message ({type(exc).__name__})") from None
    raise ValueError(
        f"{where}: expected a dict with 'role' and 'content' or a LangChain message, "
        f"got {type(item).__name__}"
    )


_LC_ROLE = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _from_langchain(msg: Any) -> Message:
    msg_type = getattr(msg, "type", None)
    role = _LC_ROLE.get(str(msg_type))
    if role is None:
        role = getattr(msg, "role", None) or msg_type or "user"
    fields: dict[str, Any] = {"role": role, "content": msg.content}
    if role == "assistant":
        calls = []
        for call in getattr(msg, "tool_calls", None) or []:
            calls.append(
                {
                    "id": call.get("id"),
                    "type": "function",
                    "function": {
                        "name": call.get("name"),
                        "arguments": json.dumps(call.get("args") or {}),
                    },
                }
            )
        for call in getattr(msg, "invalid_tool_calls", None) or []:
            calls.append(
                {
                    "id": call.get("id"),
                    "type": "function",
                    "function": {"name": call.get("name"), "arguments": call.get("args") or ""},
                }
            )
        if calls:
            fields["tool_calls"] = calls
    if role == "tool":
        fields["tool_call_id"] = getattr(msg, "tool_call_id", None)
    if getattr(msg, "name", None):
        fields["name"] = msg.name
    if getattr(msg, "id", None):
        fields["id"] = msg.id
    return Message.model_validate(fields)


def _to_langchain(message: Message) -> Any:
    from langchain_core.messages import (
        AIMessage,
        ChatMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )

    content = message.content if message.content is not None else ""
    extra: dict[str, Any] = {}
    msg_id = (message.model_extra or {}).get("id")
    if msg_id is not None:
        extra["id"] = msg_id
    if message.name:
        extra["name"] = message.name
    role = message.role
    if role == "user":
        return HumanMessage(content=content, **extra)
    if role == "system":
        return SystemMessage(content=content, **extra)
    if role == "tool":
        return ToolMessage(content=content, tool_call_id=message.tool_call_id or "", **extra)
    if role == "assistant":
        return AIMessage(content=content, tool_calls=_langchain_tool_calls(message), **extra)
    return ChatMessage(content=content, role=str(role), **extra)


def _langchain_tool_calls(message: Message) -> list[dict[str, Any]]:
    calls = []
    for call in message.tool_calls or []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            continue
        arguments = function.get("arguments")
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            args = {"__raw__": arguments}
        if not isinstance(args, dict):
            args = {"__value__": args}
        calls.append({"name": function.get("name") or "tool", "args": args, "id": call.get("id")})
    return calls


def _update_langchain(source: Any, message: Message, changed: dict[str, Any]) -> Any:
    """`source` with only what changed replaced: status, artifact, metadata and ids stay."""
    update: dict[str, Any] = {}
    for key, value in changed.items():
        if key == "content":
            update["content"] = value if value is not None else ""
        elif key == "tool_calls":
            update["tool_calls"] = _langchain_tool_calls(message)
            update["invalid_tool_calls"] = []
        elif key in ("name", "tool_call_id", "id") and hasattr(source, key):
            update[key] = value
    return source.model_copy(update=update) if update else source


def _update_dict(source: Mapping[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
    """`source`'s keys, with only what changed replaced (a field set to None where it had one)."""
    data = dict(source)
    for key, value in changed.items():
        if value is None and key not in source:
            continue
        data[key] = value
    return data


def restore_messages(
    messages: Sequence[Message], fmt: MessageFormat | str
) -> list[Any]:
    """Convert back to the caller's type, losing nothing.

    An unchanged message comes back as the caller's own object; a changed one as a copy of the
    caller's object with only the changed fields replaced (a masked LangChain `ToolMessage`
    keeps its `status`, `artifact`, `additional_kwargs`, `response_metadata` and ids; an OpenAI
    dict keeps every key). A message with no source of the caller's type is converted.

    Args:
        messages: The messages, from `to_messages` or built anew.
        fmt: The type to return (a `MessageFormat` or its value): "openai", "langchain" or
            "memguard".

    Returns:
        A new list in that type.

    Raises:
        ValueError: `fmt` is not a known format.
    """
    fmt = MessageFormat(fmt)
    if fmt is MessageFormat.MEMGUARD:
        return list(messages)
    out: list[Any] = []
    for message in messages:
        source = message.source
        changed = message.changed_since_source()
        if changed is not None and "role" not in changed:
            if fmt is MessageFormat.LANGCHAIN and is_langchain_message(source):
                out.append(_update_langchain(source, message, changed))
                continue
            if fmt is MessageFormat.OPENAI and isinstance(source, Mapping):
                out.append(_update_dict(source, changed) if changed else source)
                continue
        if fmt is MessageFormat.LANGCHAIN:
            out.append(_to_langchain(message))
        else:
            out.append(message.to_openai())
    return out


def as_protocol_dict(message: Any) -> Mapping[str, Any]:
    """The mapping the protocol renderer reads.

    Plain dicts pass through untouched, so rendering them is exactly the training renderer's
    behaviour (a missing role, odd content types and all). Everything else goes via `Message`.
    A LangChain `AIMessage` whose content is a list of blocks (what ChatAnthropic returns)
    reads as the text of its blocks, joined as LangChain's own ``.text`` joins them, and as
    LiteLLM maps such a response to a chat message: its tool-use blocks are its `tool_calls`.
    """
    if isinstance(message, Mapping):
        return message
    msg = message if isinstance(message, Message) else to_message(message)
    data = msg.to_openai()
    content = data.get("content")
    if data.get("role") == "assistant" and isinstance(content, list) and is_langchain_message(msg.source):
        data["content"] = block_text(content)
    return data


def block_text(blocks: Sequence[Any]) -> str:
    """The text of a content-block list: text blocks and plain strings, concatenated."""
    parts = []
    for block in blocks:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type", "text") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "".join(parts)


class Conversation(BaseModel):
    """A message list together with the format it arrived in."""

    messages: list[Message] = Field(default_factory=list)
    fmt: MessageFormat = MessageFormat.OPENAI

    @classmethod
    def coerce(cls, messages: Any) -> Conversation:
        seq = _check_sequence(messages)
        return cls(messages=to_messages(seq), fmt=detect_format(seq))

    def restore(self, messages: Sequence[Message] | None = None) -> list[Any]:
        return restore_messages(self.messages if messages is None else messages, self.fmt)
