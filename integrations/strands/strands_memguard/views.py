"""Strands (Bedrock Converse) messages shown to memguard, and back, without loss.

A Strands message is ``{"role": "user" | "assistant", "content": [ContentBlock, ...]}`` plus
``tracking_id`` and ``metadata``: tool calls are ``toolUse`` blocks in an assistant message, tool
results ``toolResult`` blocks in a user message. memguard (and MemRM's prompt) reads OpenAI-style
turns, so `StrandsView.to_view` shows

- an assistant message as one assistant turn: its text, and each ``toolUse`` as a tool call
  (name and JSON arguments; a shell tool's call as a ``bash`` call, so MemRM reads ``$ command``
  as in its SWE-agent training data);
- a user message as its turns in block order: each ``toolResult`` a ``tool`` turn answering its
  call (its text and JSON items), consecutive other blocks one user turn (images, documents and
  videos named, not inlined);
- the summary a `SummarizingConversationManager` keeps as ``"[Summary] " + text`` (protocol §4);
- the agent's system prompt first, as a system turn (view only: it is not in ``agent.messages``).

Blocks the model reads but MemRM need not (``reasoningContent``, ``cachePoint``) stay hidden and
travel with their message. Every view turn carries `REF`, so `from_view` maps any list the guard
hands back (the full context, the inner manager's proposal, a fallback's) to Strands messages:
unchanged turns to the very same message objects, an edited turn to a copy of its message with
only the edited blocks replaced (``toolUseId``, ``status``, ``tracking_id`` and ``metadata`` kept),
a turn memguard wrote to a new message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memguard import SUMMARY_PREFIX, Message

__all__ = ["REF", "SHELL_TOOLS", "SYSTEM_REF", "StrandsView", "assistant_turns"]

REF = "strands_ref"
"""Key, in each view turn, naming the Strands message (and blocks) the turn shows."""

SYSTEM_REF = "system"
"""`REF` of the system turn that shows the agent's system prompt (view only, never sent back)."""

SHELL_TOOLS: frozenset[str] = frozenset({"shell", "bash", "execute_bash", "terminal", "run_shell_command"})
"""Tools whose string ``command`` input is a shell command: shown to MemRM as ``bash`` calls."""

_HIDDEN = frozenset({"reasoningContent", "cachePoint"})
_FIELDS = ("role", "content", "tool_calls", "tool_call_id")


@dataclass(frozen=True)
class _Shown:
    """One view turn as first made: which message and blocks it shows, and what it looked like."""

    key: int
    blocks: tuple[int, ...]
    kind: str  # "assistant" | "text" | "tool" | "summary"
    fields: tuple[Any, ...]


def assistant_turns(messages: Sequence[Any]) -> int:
    """The step of a Strands context: its number of assistant messages.

    Args:
        messages: Strands messages.

    Returns:
        How many have the role ``assistant``.
    """
    return sum(1 for message in messages if isinstance(message, Mapping) and message.get("role") == "assistant")


def _fields(turn: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(turn.get(name) for name in _FIELDS)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _block_text(block: Mapping[str, Any]) -> str | None:
    """What MemRM reads for one non-tool block; None for a block it does not read."""
    if "text" in block:
        return str(block["text"])
    if any(key in block for key in _HIDDEN):
        return None
    if "citationsContent" in block:
        cited = block["citationsContent"].get("content", [])
        return "\n".join(str(item["text"]) for item in cited if isinstance(item, Mapping) and item.get("text"))
    if "guardContent" in block:
        guarded = block["guardContent"].get("text", {})
        return str(guarded.get("text", "")) if isinstance(guarded, Mapping) else ""
    if "image" in block:
        return f"[image {block['image'].get('format', '')}]".replace(" ]", "]")
    if "document" in block:
        return f"[document {block['document'].get('name', '')}]".replace(" ]", "]")
    if "video" in block:
        return "[video]"
    if "audio" in block:
        return "[audio]"
    return _json(block)[:400]


def _result_text(result: Mapping[str, Any]) -> str:
    """A tool result's content as the text the agent's model reads from it."""
    parts = []
    for item in result.get("content") or []:
        if not isinstance(item, Mapping):
            parts.append(str(item))
        elif "text" in item:
            parts.append(str(item["text"]))
        elif "json" in item:
            parts.append(_json(item["json"]))
        else:
            parts.append(_block_text(item) or "")
    return "\n".join(parts)


def _text_of(value: Any) -> str:
    """Plain text of view content (a strategy may leave a string, a list of parts or None)."""
    return Message(content=value).text()


def _decoded(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments if arguments is not None else {}
    try:
        return json.loads(arguments)
    except ValueError:
        return {"input": arguments}


class StrandsView:
    """One conversion of an agent's messages, remembering the originals to convert back exactly.

    Args:
        system_prompt: The agent's system prompt text, shown first (None: no system turn).
        shell_tools: Tool names whose string ``command`` input is shown as a ``bash`` call.
    """

    def __init__(self, system_prompt: str | None = None, *, shell_tools: Iterable[str] = SHELL_TOOLS) -> None:
        self.system_prompt = system_prompt
        """The system prompt text that leads the view (None: none)."""
        self.shell_tools = frozenset(shell_tools)
        """Tools whose calls are shown as ``bash`` calls."""
        self._originals: dict[int, dict[str, Any]] = {}
        self._keys: dict[int, int] = {}
        self._shown: dict[str, _Shown] = {}
        self._groups: dict[int, list[tuple[int, ...]]] = {}
        self._summaries: set[int] = set()

    # ------------------------------------------------------------------ to memguard

    def to_view(self, messages: Sequence[Any], *, summary: Any = None) -> list[dict[str, Any]]:
        """memguard's view of `messages`: the system prompt first, then each message's turns.

        An assistant message is one assistant turn (each ``toolUse`` a tool call); a user message
        is its turns in block order (each ``toolResult`` a ``tool`` turn, other blocks one user
        turn). Blocks MemRM need not read (``reasoningContent``, ``cachePoint``) stay hidden.

        Args:
            messages: Strands messages (``agent.messages``, or a candidate list).
            summary: The summary message a summarizing manager keeps, if any: shown as a
                ``[Summary]`` user turn in every view of this conversion.

        Returns:
            The view's turns, each carrying `REF`.
        """
        view: list[dict[str, Any]] = []
        if self.system_prompt:
            view.append({"role": "system", "content": self.system_prompt, REF: SYSTEM_REF})
        for message in messages:
            key = self._key(message)
            if message is summary:
                self._summaries.add(key)  # shown as a summary in every view of this conversion
            view.extend(self._show(message, key, summary=key in self._summaries))
        return view

    def response(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The assistant turn MemRM judges for a model response (a probe's answer).

        Args:
            message: The model's final message.

        Returns:
            Its text and tool calls as one assistant turn.
        """
        return self._assistant(message)

    def _key(self, message: Any) -> int:
        key = self._keys.get(id(message))
        if key is None or self._originals[key] is not message:
            key = len(self._originals)
            self._originals[key] = message
            self._keys[id(message)] = key
        return key

    def _show(self, message: Mapping[str, Any], key: int, *, summary: bool) -> list[dict[str, Any]]:
        blocks = list(message.get("content") or [])
        if message.get("role") == "assistant":
            indices = tuple(i for i, b in enumerate(blocks) if "toolUse" in b or _block_text(b) is not None)
            return [self._remember(self._assistant(message), key, indices, "assistant")]
        if summary:
            texts = [(i, _block_text(b)) for i, b in enumerate(blocks) if "toolResult" not in b]
            shown = [(i, t) for i, t in texts if t is not None]
            turn = {"role": "user", "content": SUMMARY_PREFIX + "\n".join(t for _, t in shown)}
            return [self._remember(turn, key, tuple(i for i, _ in shown), "summary")]
        turns: list[dict[str, Any]] = []
        group: list[tuple[int, str]] = []

        def flush() -> None:
            if group:
                turn = {"role": str(message.get("role", "user")), "content": "\n".join(t for _, t in group)}
                turns.append(self._remember(turn, key, tuple(i for i, _ in group), "text"))
                group.clear()

        for index, block in enumerate(blocks):
            if "toolResult" in block:
                flush()
                result = block["toolResult"]
                turn = {"role": "tool", "content": _result_text(result), "tool_call_id": result.get("toolUseId")}
                turns.append(self._remember(turn, key, (index,), "tool"))
                continue
            text = _block_text(block)
            if text is not None:
                group.append((index, text))
        flush()
        if not turns:  # nothing MemRM reads (say, only a cache point): an empty turn keeps its place
            turns.append(self._remember({"role": str(message.get("role", "user")), "content": ""}, key, (), "text"))
        return turns

    def _assistant(self, message: Mapping[str, Any]) -> dict[str, Any]:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in message.get("content") or []:
            if "toolUse" in block:
                calls.append(self._call(block["toolUse"]))
            else:
                text = _block_text(block)
                if text is not None:
                    texts.append(text)
        return {"role": "assistant", "content": "\n".join(texts), "tool_calls": calls or None}

    def _call(self, use: Mapping[str, Any]) -> dict[str, Any]:
        name = str(use.get("name") or "tool")
        arguments = use.get("input")
        if name in self.shell_tools and isinstance(arguments, Mapping) and isinstance(arguments.get("command"), str):
            name = "bash"
        function = {"name": name, "arguments": _json(arguments)}
        return {"id": use.get("toolUseId"), "type": "function", "function": function}

    def _remember(self, turn: dict[str, Any], key: int, blocks: tuple[int, ...], kind: str) -> dict[str, Any]:
        ref = f"{key}:{blocks[0]}" if blocks else f"{key}:-"
        self._shown[ref] = _Shown(key, blocks, kind, _fields(turn))
        groups = self._groups.setdefault(key, [])
        if blocks not in groups:
            groups.append(blocks)
        turn[REF] = ref
        return turn

    # ------------------------------------------------------------------ back to Strands

    def from_view(self, turns: Sequence[Any]) -> list[dict[str, Any]]:
        """The agent's messages for a view: its own objects wherever nothing changed.

        An edited turn becomes a copy of its message with only the edited blocks replaced
        (``toolUseId``, ``status``, ``tracking_id`` and ``metadata`` kept); a turn memguard wrote
        becomes a new message.

        Args:
            turns: A view from `to_view` (of this object), or a strategy's compaction of one.

        Returns:
            Strands messages.
        """
        out: list[dict[str, Any]] = []
        new_blocks: list[dict[str, Any]] = []
        group: list[tuple[Mapping[str, Any], _Shown]] = []

        def flush_group() -> None:
            if group:
                rebuilt = self._rebuild(group[0][1].key, group)
                if rebuilt is not None:
                    out.append(rebuilt)
                group.clear()

        def flush_new() -> None:
            if new_blocks:
                out.append({"role": "user", "content": list(new_blocks)})
                new_blocks.clear()

        for item in turns:
            turn = _as_turn(item)
            ref = turn.get(REF)
            if ref == SYSTEM_REF:
                continue
            shown = self._shown.get(ref) if isinstance(ref, str) else None
            if shown is None:  # a turn memguard (a fallback strategy) wrote
                flush_group()
                if turn.get("role") == "assistant":
                    flush_new()
                    out.append(_new_assistant(turn))
                else:
                    new_blocks.append(_new_user_block(turn))
                continue
            flush_new()
            if group and group[0][1].key != shown.key:
                flush_group()
            group.append((turn, shown))
        flush_group()
        flush_new()
        return out

    def sources(self, turns: Sequence[Any]) -> list[dict[str, Any]]:
        """The original messages `turns` show, kept as they were or edited.

        Args:
            turns: A view, or a strategy's compaction of one.

        Returns:
            The agent's messages those turns come from, in order, each once.
        """
        keys: dict[int, None] = {}
        for item in turns:
            ref = _as_turn(item).get(REF)
            shown = self._shown.get(ref) if isinstance(ref, str) else None
            if shown is not None:
                keys.setdefault(shown.key)
        return [self._originals[key] for key in keys]

    def _rebuild(self, key: int, group: list[tuple[Mapping[str, Any], _Shown]]) -> dict[str, Any] | None:
        original = self._originals[key]
        present = {shown.blocks: (turn, shown) for turn, shown in group}
        groups = self._groups[key]
        unchanged = {blocks for blocks, (turn, shown) in present.items() if _fields(turn) == shown.fields}
        if len(unchanged) == len(groups) and set(groups) == unchanged:
            return original
        if len(group) == 1 and group[0][1].kind == "assistant":  # one turn for the whole message
            turn, shown = group[0]
            return {**original, "content": _changed_assistant(list(original.get("content") or []), shown, turn)}
        owner = {index: blocks for blocks in groups for index in blocks}
        blocks_out: list[Any] = []
        for index, block in enumerate(original.get("content") or []):
            blocks = owner.get(index)
            if blocks is None:
                blocks_out.append(block)  # hidden blocks stay with their message
            elif blocks in unchanged:
                blocks_out.append(block)
            elif blocks in present and index == blocks[0]:
                turn, shown = present[blocks]
                blocks_out.extend(self._changed(original, shown, turn))
        if not any(blocks in present for blocks in groups):
            return None
        return {**original, "content": blocks_out}

    def _changed(self, original: Mapping[str, Any], shown: _Shown, turn: Mapping[str, Any]) -> list[Any]:
        """The blocks that stand for one edited view turn."""
        blocks = list(original.get("content") or [])
        if shown.kind == "tool":
            result = dict(blocks[shown.blocks[0]]["toolResult"])
            result["content"] = [{"text": _text_of(turn.get("content"))}]
            if turn.get("tool_call_id"):
                result["toolUseId"] = turn["tool_call_id"]
            return [{"toolResult": result}]
        text = _text_of(turn.get("content"))
        if shown.kind == "summary":
            text = text.removeprefix(SUMMARY_PREFIX)
        return [{"text": text}]


def _changed_assistant(blocks: list[Any], shown: _Shown, turn: Mapping[str, Any]) -> list[Any]:
    """An assistant message's blocks with the view's text and tool calls; reasoning kept."""
    before = dict(zip(_FIELDS, shown.fields, strict=True))
    text_changed = turn.get("content") != before["content"]
    text = _text_of(turn.get("content"))
    shown_calls = {call.get("id"): call for call in before["tool_calls"] or []}
    calls = {call.get("id"): call for call in turn.get("tool_calls") or [] if isinstance(call, Mapping)}
    out: list[Any] = []
    text_done = False
    for block in blocks:
        if "toolUse" in block:
            use = block["toolUse"]
            call = calls.pop(use.get("toolUseId"), None)
            if call is None:
                continue
            if call == shown_calls.get(use.get("toolUseId")):
                out.append(block)
                continue
            function = call.get("function") or {}
            was = (shown_calls.get(use.get("toolUseId")) or {}).get("function") or {}
            name = use.get("name") if function.get("name") == was.get("name") else function.get("name")
            out.append({"toolUse": {**use, "name": name or "tool", "input": _decoded(function.get("arguments"))}})
        elif not text_changed or _block_text(block) is None:
            out.append(block)
        elif not text_done:
            text_done = True
            if text:
                out.append({"text": text})
    if text_changed and not text_done and text:
        out.insert(0, {"text": text})
    out.extend(_new_use(call) for call in calls.values())
    return out


def _new_use(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"toolUse": {"toolUseId": str(call.get("id") or ""), "name": str(function.get("name") or "tool"),
                        "input": _decoded(function.get("arguments"))}}


def _new_assistant(turn: Mapping[str, Any]) -> dict[str, Any]:
    content: list[Any] = []
    text = _text_of(turn.get("content"))
    if text:
        content.append({"text": text})
    content.extend(_new_use(call) for call in turn.get("tool_calls") or [] if isinstance(call, Mapping))
    return {"role": "assistant", "content": content}


def _new_user_block(turn: Mapping[str, Any]) -> dict[str, Any]:
    text = _text_of(turn.get("content"))
    if turn.get("role") == "tool" and turn.get("tool_call_id"):
        result = {"toolUseId": str(turn["tool_call_id"]), "status": "success", "content": [{"text": text}]}
        return {"toolResult": result}
    return {"text": text.removeprefix(SUMMARY_PREFIX)}


def _as_turn(item: Any) -> Mapping[str, Any]:
    """A view turn as a mapping: dicts pass through, memguard `Message`s are dumped (extras kept)."""
    if isinstance(item, Mapping):
        return item
    if isinstance(item, Message):
        return item.to_openai()
    raise TypeError(f"expected a view turn (dict or memguard Message), got {type(item).__name__}")
