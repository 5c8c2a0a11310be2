"""Google ADK request contents shown to memguard, and back, without loss.

An ADK model request carries `google.genai.types.Content` turns: ``model`` turns (text, thoughts,
function calls) and ``user`` turns (text, function responses, files). memguard's `Message` is one
OpenAI-style turn. `ContentBridge.to_view` gives each ``model`` content one assistant message and
each run of visible ``user`` parts its own user or tool message, tagged with where it came from;
`from_view` groups them back: an unchanged message returns the very `Content` object it came
from, a changed one is rebuilt from the original with only the changed parts replaced (thought
signatures, hidden parts and ids kept), and a message memguard wrote is built fresh.

ADK strips function-call ids from requests to models that do not pair calls by id (Gemini), so
the view synthesizes them (``call_1``, ``call_2``, ...: a response pairs with the oldest
unanswered call of its name), or MemRM would see tool results that answer no call. Synthesized
ids never travel back into ADK contents. A compaction summary is shown the way MemRM saw
summaries in training: a user turn that starts with ``[Summary] `` (protocol section 4).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.genai import types
from memguard import SUMMARY_PREFIX, Message

__all__ = ["REF", "SYSTEM_REF", "ContentBridge", "response_view"]

REF = "adk_ref"
"""The extra `Message` field naming the ADK content (and parts) a view message shows."""

SYSTEM_REF = "system"
"""`REF` of the system turn that shows the request's system instruction (view only, never sent back)."""


@dataclass(frozen=True)
class _Shown:
    """One view message as first made: which content and parts it shows, and what it looked like."""

    key: int
    parts: tuple[int, ...]
    fields: dict[str, Any]
    call_ids: dict[str, int] = field(default_factory=dict)  # view call id -> part index (model turns)
    summary: bool = False


class ContentBridge:
    """One conversion of a request's contents, remembering the originals to convert back exactly.

    Args:
        system_instruction: The request's system instruction (`LlmRequest.config.system_instruction`):
            it leads the view as a system turn, as MemRM's training views start with the system prompt.
        summaries: Contents that are compaction summaries (compared by value: ADK copies contents
            into each request); they are shown as ``[Summary]`` user turns.
    """

    def __init__(self, system_instruction: Any = None, summaries: Iterable[types.Content] = ()) -> None:
        self.system = _instruction_text(system_instruction)
        """The system instruction's text (None: none)."""
        self.summaries = [summary for summary in summaries if summary is not None]
        """The contents shown as ``[Summary]`` user turns."""
        self._originals: list[types.Content] = []
        self._keys: dict[int, int] = {}
        self._shown: dict[str, _Shown] = {}
        self._synthesized: set[str] = set()
        self._next_id = 0

    # ------------------------------------------------------------------ to memguard

    def to_view(self, contents: Sequence[types.Content]) -> list[Message]:
        """memguard's view of `contents`: the system instruction first, one turn per visible piece.

        Each call to `to_view` pairs function calls with responses afresh (ids are synthesized
        per view, in order), so a candidate's view names its calls the way the full view does
        wherever the two share a prefix.

        Args:
            contents: The request contents.

        Returns:
            One assistant `Message` per ``model`` content and one user or tool `Message` per run
            of visible ``user`` parts, each tagged with `REF`; summaries as ``[Summary]`` turns.
        """
        view: list[Message] = []
        if self.system:
            view.append(Message.model_validate({"role": "system", "content": self.system, REF: SYSTEM_REF}))
        pending: dict[str, deque[str]] = {}
        for content in contents:
            key = self._key(content)
            if content in self.summaries:
                text = "\n".join(part.text for part in content.parts or () if part.text and not part.thought)
                shown = _Shown(key, tuple(range(len(content.parts or ()))), {}, summary=True)
                view.append(self._remember({"role": "user", "content": SUMMARY_PREFIX + text}, shown, f"{key}:s"))
            elif content.role == "model":
                view.append(self._model_turn(content, key, pending))
            else:
                view.extend(self._user_turns(content, key, pending))
        return view

    def _key(self, content: types.Content) -> int:
        key = self._keys.get(id(content))
        if key is None or self._originals[key] is not content:
            key = len(self._originals)
            self._originals.append(content)
            self._keys[id(content)] = key
        return key

    def _call_id(self, call: types.FunctionCall, pending: dict[str, deque[str]]) -> str:
        call_id = call.id
        if not call_id:
            self._next_id += 1
            call_id = f"call_{self._next_id}"
            self._synthesized.add(call_id)
        pending.setdefault(call.name or "tool", deque()).append(call_id)
        return call_id

    def _response_id(self, response: types.FunctionResponse, pending: dict[str, deque[str]]) -> str | None:
        queue = pending.get(response.name or "tool")
        if response.id:
            if queue and response.id in queue:
                queue.remove(response.id)
            return response.id
        return queue.popleft() if queue else None

    def _model_turn(self, content: types.Content, key: int, pending: dict[str, deque[str]]) -> Message:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        call_ids: dict[str, int] = {}
        for index, part in enumerate(content.parts or ()):
            if part.function_call is not None:
                call_id = self._call_id(part.function_call, pending)
                call_ids[call_id] = index
                calls.append(_call_fields(call_id, part.function_call))
            elif part.thought:
                continue  # the model's reasoning: not part of the conversation MemRM judges
            else:
                text = _part_text(part)
                if text is not None:
                    texts.append(text)
        fields = {"role": "assistant", "content": "\n".join(texts) if texts else None, "tool_calls": calls or None}
        return self._remember(fields, _Shown(key, tuple(range(len(content.parts or ()))), {}, call_ids), str(key))

    def _user_turns(self, content: types.Content, key: int, pending: dict[str, deque[str]]) -> list[Message]:
        out: list[Message] = []
        texts: list[tuple[int, str]] = []

        def flush_texts() -> None:
            if texts:
                fields = {"role": "user", "content": "\n".join(text for _, text in texts)}
                ref = f"{key}:" + ",".join(str(i) for i, _ in texts)
                out.append(self._remember(fields, _Shown(key, tuple(i for i, _ in texts), {}), ref))
                texts.clear()

        for index, part in enumerate(content.parts or ()):
            if part.function_response is not None:
                flush_texts()
                response = part.function_response
                fields = {
                    "role": "tool",
                    "content": _response_text(response.response),
                    "tool_call_id": self._response_id(response, pending),
                    "name": response.name,
                }
                out.append(self._remember(fields, _Shown(key, (index,), {}), f"{key}:{index}"))
            elif not part.thought:
                text = _part_text(part)
                if text is not None:
                    texts.append((index, text))
        flush_texts()
        return out

    def _remember(self, fields: dict[str, Any], shown: _Shown, ref: str) -> Message:
        message = Message.model_validate({**fields, REF: ref})
        self._shown[ref] = _Shown(shown.key, shown.parts, message.model_dump(), shown.call_ids, shown.summary)
        return message

    # ------------------------------------------------------------------ back to ADK

    def from_view(self, messages: Sequence[Any]) -> list[types.Content]:
        """The contents for a view: the request's own objects wherever nothing changed.

        A changed message is rebuilt from the original with only the changed parts replaced
        (thought signatures, hidden parts and ids kept); a message memguard wrote is built fresh.
        Synthesized call ids never travel back.

        Args:
            messages: A view from `to_view` (of this bridge), or a strategy's compaction of one.

        Returns:
            The request contents.

        Raises:
            ValueError: A message is neither a `Message` nor a message dict.
        """
        out: list[types.Content] = []
        group: list[tuple[Message, _Shown]] = []
        fresh: list[types.Part] = []

        def flush_group() -> None:
            if group:
                out.append(self._rebuild(group))
                group.clear()

        def flush_fresh() -> None:
            if fresh:
                out.append(types.Content(role="user", parts=list(fresh)))
                fresh.clear()

        for item in messages:
            message = item if isinstance(item, Message) else Message.model_validate(item)
            ref = (message.model_extra or {}).get(REF)
            if ref == SYSTEM_REF:
                continue  # the system instruction travels in the request's config, not its contents
            shown = self._shown.get(ref) if isinstance(ref, str) else None
            if shown is None:  # a message memguard (a fallback strategy) wrote
                flush_group()
                if message.role == "user" and message.text().startswith(SUMMARY_PREFIX):
                    flush_fresh()  # a summary: ADK shows those as the model's own turn
                    summary = message.text().removeprefix(SUMMARY_PREFIX)
                    out.append(types.Content(role="model", parts=[types.Part(text=summary)]))
                elif message.role in ("user", "tool"):
                    fresh.append(_new_user_part(message))
                elif message.role == "assistant":
                    flush_fresh()
                    out.append(self._new_model_content(message))
                continue
            flush_fresh()
            if group and group[0][1].key != shown.key:
                flush_group()
            group.append((message, shown))
        flush_group()
        flush_fresh()
        return out

    def _rebuild(self, group: list[tuple[Message, _Shown]]) -> types.Content:
        original = self._originals[group[0][1].key]
        parts = list(original.parts or ())
        message, shown = group[0]
        if shown.summary or original.role == "model":
            if message.model_dump() == shown.fields:
                return original
            if shown.summary:
                text = message.text().removeprefix(SUMMARY_PREFIX)
                return original.model_copy(update={"parts": [types.Part(text=text)]})
            return original.model_copy(update={"parts": self._changed_model_parts(parts, message, shown)})
        owners = {index: (message, shown) for message, shown in group for index in shown.parts}
        visible = _visible(original)
        kept: list[types.Part] = []
        for index, part in enumerate(parts):
            owner = owners.get(index)
            if owner is None:
                if index not in visible:
                    kept.append(part)  # hidden parts stay with their content; a shown one the view dropped goes
                continue
            message, shown = owner
            if message.model_dump() == shown.fields:
                kept.append(part)
            elif index == shown.parts[0]:
                kept.append(_changed_user_part(part, message))
        if len(kept) == len(parts) and all(a is b for a, b in zip(kept, parts, strict=True)):
            return original
        return original.model_copy(update={"parts": kept})

    def _changed_model_parts(self, parts: list[types.Part], message: Message, shown: _Shown) -> list[types.Part]:
        """`parts` with the view's text and calls; thoughts, signatures and other parts kept."""
        calls: dict[str, Mapping[str, Any]] = {}
        for call in message.tool_calls or []:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                calls[str(call.get("id"))] = function
        by_index = {index: call_id for call_id, index in shown.call_ids.items()}
        text = message.text()
        out: list[types.Part] = []
        text_done = False
        for index, part in enumerate(parts):
            if part.function_call is not None:
                call_id = by_index.get(index, "")
                function = calls.pop(call_id, None)
                if function is None:
                    continue  # the view dropped this call
                if _call_fields(call_id, part.function_call)["function"] == dict(function):
                    out.append(part)
                else:
                    changed = part.function_call.model_copy(
                        update={"name": str(function.get("name") or part.function_call.name),
                                "args": _arguments(function.get("arguments"))})
                    out.append(part.model_copy(update={"function_call": changed}))
            elif part.text is not None and not part.thought:
                if not text_done and text:
                    out.append(part if part.text == text else part.model_copy(update={"text": text}))
                text_done = True
            else:
                out.append(part)
        if not text_done and text:
            out.insert(0, types.Part(text=text))
        out.extend(self._new_call_part(call_id, function) for call_id, function in calls.items())
        return out

    def _new_model_content(self, message: Message) -> types.Content:
        parts = [types.Part(text=message.text())] if message.content else []
        for call in message.tool_calls or []:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                parts.append(self._new_call_part(str(call.get("id") or ""), function))
        return types.Content(role="model", parts=parts)

    def _new_call_part(self, call_id: str, function: Mapping[str, Any]) -> types.Part:
        real_id = None if not call_id or call_id in self._synthesized else call_id
        return types.Part(function_call=types.FunctionCall(
            id=real_id, name=str(function.get("name") or "tool"), args=_arguments(function.get("arguments"))))


def response_view(response: Any) -> Message:
    """The assistant turn MemRM judges for a model response.

    Args:
        response: An `LlmResponse`, or its `Content`.

    Returns:
        Its text and function calls as one assistant `Message` (empty when it has no content).
    """
    content = getattr(response, "content", response)
    if not isinstance(content, types.Content):
        return Message(role="assistant", content=None)
    bridge = ContentBridge()
    return bridge._model_turn(content, bridge._key(content), {})


# ---------------------------------------------------------------------- what MemRM reads


def _instruction_text(instruction: Any) -> str | None:
    if instruction is None:
        return None
    if isinstance(instruction, str):
        return instruction or None
    if isinstance(instruction, types.Content):
        parts: Iterable[Any] = instruction.parts or ()
    elif isinstance(instruction, types.Part):
        parts = (instruction,)
    elif isinstance(instruction, Iterable):
        parts = instruction
    else:
        return str(instruction)
    texts = [part if isinstance(part, str) else getattr(part, "text", None) for part in parts]
    return "\n".join(text for text in texts if text) or None


def _part_text(part: types.Part) -> str | None:
    """What MemRM reads for a non-call part (None: nothing, e.g. an empty part)."""
    if part.text is not None:
        return part.text
    if part.executable_code is not None:
        return part.executable_code.code or ""
    if part.code_execution_result is not None:
        return part.code_execution_result.output or ""
    if part.inline_data is not None:
        return f"[file {part.inline_data.mime_type or ''}]".replace(" ]", "]")
    if part.file_data is not None:
        return f"[file {part.file_data.file_uri or ''}]".replace(" ]", "]")
    return None


def _visible(content: types.Content) -> set[int]:
    """Indexes of the parts a user turn shows MemRM (function responses and readable parts)."""
    return {
        index for index, part in enumerate(content.parts or ())
        if part.function_response is not None or (not part.thought and _part_text(part) is not None)
    }


def _call_fields(call_id: str, call: types.FunctionCall) -> dict[str, Any]:
    arguments = json.dumps(call.args or {}, ensure_ascii=False, default=str)
    return {"id": call_id, "type": "function", "function": {"name": call.name or "tool", "arguments": arguments}}


def _response_text(response: Any) -> str:
    """A function response as the model reads it: a lone ``result`` string as is, else JSON."""
    if isinstance(response, Mapping) and set(response) == {"result"} and isinstance(response["result"], str):
        return response["result"]
    return json.dumps(response, ensure_ascii=False, default=str)


def _response_value(text: str, original: Any = None) -> dict[str, Any]:
    """A view's tool text as a function response: the original's shape where it had one."""
    if isinstance(original, Mapping) and set(original) == {"result"} and isinstance(original["result"], str):
        return {"result": text}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if isinstance(arguments, str) and arguments:
        try:
            value = json.loads(arguments)
        except ValueError:
            return {"input": arguments}
        return value if isinstance(value, dict) else {"input": value}
    return {}


def _changed_user_part(part: types.Part, message: Message) -> types.Part:
    text = message.text()
    if part.function_response is not None:
        response = part.function_response
        changed = response.model_copy(update={
            "name": message.name or response.name,
            "response": _response_value(text, response.response),
        })
        return part.model_copy(update={"function_response": changed})
    if part.text is not None:
        return part.model_copy(update={"text": text})
    return types.Part(text=text)


def _new_user_part(message: Message) -> types.Part:
    text = message.text()
    if message.role == "tool":
        return types.Part(function_response=types.FunctionResponse(
            name=message.name or "tool", response=_response_value(text)))
    return types.Part(text=text)
