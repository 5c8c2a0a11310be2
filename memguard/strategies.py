"""Built-in compaction strategies used as fallbacks: deterministic, LLM-free, message-list in/out.

Every strategy keeps everything before the agent's first action (the system and developer
prompts, injected instructions such as a Codex AGENTS.md turn, and the user's task), keeps every
system-like turn (`system`, `developer`), and never separates an assistant tool call from its
tool results. Strategies take and return the caller's
own message type (OpenAI dicts, LangChain messages or `Message`), handing back the caller's very
objects wherever a message is unchanged, so a user's fallback and a built-in one are
interchangeable. Observation masking comes first in the default chain: on SWE-bench Verified it
halved cost and matched LLM summarisation's solve rate (Lindenbauer et al., "The Complexity Trap",
arXiv 2508.21433).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from memguard.messages import Message, detect_format, is_system_like, restore_messages, to_messages

__all__ = [
    "FunctionStrategy",
    "KeepMore",
    "ObservationMasking",
    "RecentWindow",
    "Strategy",
    "as_strategy",
    "calls_tools",
    "default_fallbacks",
    "issued_command",
    "protected_prefix_length",
    "resolve_strategy",
    "tool_groups",
]

MASK = "<MASKED>"
_TRACEBACK = re.compile(
    r"Traceback \(most recent call last\):.*?(?:\n\S[^\n]*(?:Error|Exception|Exit)[^\n]*)", re.DOTALL
)


@runtime_checkable
class Strategy(Protocol):
    """A compaction strategy: a name and a function of the message list (caller's type in and out).

    It may be a coroutine function: `Guard.areview` awaits it, `Guard.review` runs it to completion.
    A bare function works too: `as_strategy` names it after itself.
    """

    @property
    def name(self) -> str:
        """What the strategy is called in decisions, records and MemRM's perturbation tag."""
        ...

    def __call__(self, messages: Sequence[Any]) -> Any:
        """Compact `messages`.

        Args:
            messages: The context, in the caller's message type.

        Returns:
            The compacted context in the same type (or a coroutine that returns it).
        """
        ...


def _same_format(original: Sequence[Any], result: Sequence[Message]) -> list[Any]:
    """`result` in the format `original` came in (unchanged messages as the caller's objects)."""
    return restore_messages(result, detect_format(original))


def protected_prefix_length(messages: Sequence[Message]) -> int:
    """How many leading messages are untouchable: everything before the agent's first action.

    That is what the agent was given to start: system and developer prompts, instructions a
    harness injects as user turns (Codex sends AGENTS.md as the first user turn, the request
    after it), and the task. "System turns plus the first user turn" would keep AGENTS.md and
    drop the request.
    """
    for index, message in enumerate(messages):
        if message.role == "assistant":
            return index
    return len(messages)


def calls_tools(messages: Sequence[Message]) -> bool:
    """Whether the conversation uses tool calls (then observations are its tool results)."""
    return any(m.role == "tool" or (m.role == "assistant" and m.tool_calls) for m in messages)


_FENCED = re.compile(r"```[\w.+-]*[ \t]*\n.*?```", re.DOTALL)
_COMMAND_TAG = re.compile(r"<command>.*?</command>", re.DOTALL)


def issued_command(message: Message) -> bool:
    """Whether a text-only agent's turn acts: a fenced block or a ``<command>`` tag (SWE-agent,
    mini-swe-agent), or a whole-JSON ``{"command": ...}``. Prose is not an action."""
    text = message.content if isinstance(message.content, str) else ""
    if _FENCED.search(text) or _COMMAND_TAG.search(text):
        return True
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError):
        return False
    return isinstance(data, dict) and "command" in data


def _is_observation(messages: Sequence[Message], index: int, protected: int, tool_calling: bool) -> bool:
    """Tool results; for text-only agents (SWE-agent's convention) a user turn answering an action.

    In a conversation with tool calls a user turn is a human's words, never an observation; in
    one without, only the user turn that follows an assistant's command is (a user answering an
    assistant's question is a human too).
    """
    if index < protected:
        return False
    message = messages[index]
    if message.role == "tool":
        return True
    return (not tool_calling and message.role == "user" and index > 0
            and messages[index - 1].role == "assistant" and issued_command(messages[index - 1]))


def _assistant_positions(messages: Sequence[Message]) -> list[int]:
    return [i for i, m in enumerate(messages) if m.role == "assistant"]


def tool_groups(messages: Sequence[Message]) -> list[tuple[int, int]]:
    """Half-open spans [start, end) that must stay together: an assistant turn and its tool results."""
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(messages):
        end = i + 1
        if messages[i].role == "assistant" and messages[i].tool_calls:
            while end < len(messages) and messages[end].role == "tool":
                end += 1
        spans.append((i, end))
        i = end
    return spans


def _keep_tracebacks(text: str) -> str:
    found = _TRACEBACK.findall(text)
    if not found:
        return MASK
    return MASK + "\n" + "\n".join(found)


@dataclass(frozen=True)
class ObservationMasking:
    """Replace observations older than the last `keep_last` assistant turns with a placeholder.

    The agent's own reasoning and actions stay; only bulky environment output goes. With
    `keep_errors`, Python tracebacks in masked outputs survive (they often carry the bug).
    Observations are tool results; in a conversation without tool calls, a user turn that
    answers an assistant's command (SWE-agent's convention). Everything before the agent's first
    action is kept.
    """

    keep_last: int = 10
    """Assistant turns whose observations stay whole (counted from the end)."""
    placeholder: str = MASK
    """What a masked observation's content becomes."""
    keep_errors: bool = False
    """Keep Python tracebacks of masked observations after the placeholder."""
    name: str = "observation_masking"
    """The strategy's name in decisions and records."""

    def __call__(self, messages: Sequence[Any]) -> list[Any]:
        msgs = to_messages(messages)
        protected = protected_prefix_length(msgs)
        assistants = _assistant_positions(msgs)
        if len(assistants) <= self.keep_last:
            return list(messages)
        boundary = assistants[-self.keep_last] if self.keep_last > 0 else len(msgs)
        tool_calling = calls_tools(msgs)
        out: list[Message] = []
        for i, message in enumerate(msgs):
            if (i < boundary and _is_observation(msgs, i, protected, tool_calling)
                    and message.text() != self.placeholder):
                text = _keep_tracebacks(message.text()) if self.keep_errors else self.placeholder
                if text == MASK and self.placeholder != MASK:
                    text = self.placeholder
                message = message.model_copy(update={"content": text})
            out.append(message)
        return _same_format(messages, out)

    def widened(self, factor: float) -> ObservationMasking:
        """The same strategy masking less: `keep_last` grown by `factor` (`KeepMore` calls this).

        Args:
            factor: How much larger `keep_last` becomes (at least one more turn).

        Returns:
            A new strategy named ``<name>_x<factor>``.
        """
        return replace(
            self, keep_last=max(self.keep_last + 1, int(self.keep_last * factor)), name=f"{self.name}_x{factor:g}"
        )


@dataclass(frozen=True)
class RecentWindow:
    """Keep the first `keep_first` messages (at least all before the first action) and the last `keep_last`.

    The cut moves earlier rather than split an assistant tool call from its results, and
    system-like turns (`system`, `developer`) in the dropped middle are kept.
    """

    keep_last: int = 20
    """Messages kept at the end."""
    keep_first: int = 3
    """Messages kept at the start (more when the agent's first action comes later)."""
    name: str = "recent_window"
    """The strategy's name in decisions and records."""

    def __call__(self, messages: Sequence[Any]) -> list[Any]:
        msgs = to_messages(messages)
        head = max(self.keep_first, protected_prefix_length(msgs))
        if len(msgs) <= head + self.keep_last:
            return list(messages)
        head = _snap_to_group_end(msgs, head)
        start = max(head, len(msgs) - self.keep_last)
        start = _snap_to_group_start(msgs, start)
        middle = [m for m in msgs[head:start] if is_system_like(m.role)]
        return _same_format(messages, [*msgs[:head], *middle, *msgs[max(start, head) :]])

    def widened(self, factor: float) -> RecentWindow:
        """The same strategy keeping more: `keep_last` grown by `factor` (`KeepMore` calls this).

        Args:
            factor: How much larger `keep_last` becomes (at least one more message).

        Returns:
            A new strategy named ``<name>_x<factor>``.
        """
        return replace(
            self, keep_last=max(self.keep_last + 1, int(self.keep_last * factor)), name=f"{self.name}_x{factor:g}"
        )


def _snap_to_group_start(messages: Sequence[Message], index: int) -> int:
    for start, end in tool_groups(messages):
        if start < index < end:
            return start
    return index


def _snap_to_group_end(messages: Sequence[Message], index: int) -> int:
    for start, end in tool_groups(messages):
        if start < index < end:
            return end
    return index


@dataclass(frozen=True)
class KeepMore:
    """Re-run `strategy` with a tail `factor` times larger: the usual next step after a veto.

    Calling it raises `TypeError` when `strategy` has no ``widened(factor)``.
    """

    strategy: Any
    """The strategy to widen (`ObservationMasking`, `RecentWindow`, or any strategy with
    ``widened(factor)``).
    """
    factor: float = 2.0
    """How much more it keeps."""

    @property
    def name(self) -> str:
        """``<strategy's name>+keep_more_x<factor>``, the name TOML configs use for it."""
        return f"{self.strategy.name}+keep_more_x{self.factor:g}"

    def __call__(self, messages: Sequence[Any]) -> Any:
        widened = getattr(self.strategy, "widened", None)
        if widened is None:
            raise TypeError(f"strategy {self.strategy.name!r} has no widened(factor); KeepMore cannot grow it")
        return widened(self.factor)(messages)


@dataclass(frozen=True)
class FunctionStrategy:
    """Name a plain ``f(messages) -> messages`` (sync or async, the caller's message type)."""

    func: Callable[[list[Any]], Any]
    name: str

    def __call__(self, messages: Sequence[Any]) -> Any:
        return self.func(list(messages))


def as_strategy(obj: Any) -> Strategy:
    """A `Strategy` from a strategy object or a bare callable (named after the function).

    Args:
        obj: A `Strategy`, or any callable ``f(messages) -> messages`` (sync or async).

    Returns:
        `obj` itself when it is a strategy, else a wrapper named after it.

    Raises:
        TypeError: `obj` is not callable.
    """
    if isinstance(obj, Strategy):
        return obj
    if callable(obj):
        return FunctionStrategy(obj, getattr(obj, "__name__", type(obj).__name__))
    raise TypeError(f"a fallback must be a strategy or a callable, got {type(obj).__name__}")


def default_fallbacks() -> tuple[Strategy, ...]:
    """The recommended fallback chain: mask old observations, then mask fewer, then a wide recent window.

    Observation masking comes first: on SWE-bench Verified it halved cost and matched LLM
    summarisation's solve rate (Lindenbauer et al., arXiv 2508.21433).

    Returns:
        ``(ObservationMasking(keep_last=10), KeepMore(that, 2.0), RecentWindow(keep_last=40))``.
    """
    masking = ObservationMasking(keep_last=10)
    return (masking, KeepMore(masking, 2.0), RecentWindow(keep_last=40))


_KEEP_MORE = re.compile(r"^(?P<base>.+)\+keep_more_x(?P<factor>\d+(?:\.\d+)?)$")


def resolve_strategy(name: str) -> Strategy:
    """A built-in strategy by its `name` (as configs write them); `ValueError` lists the known ones.

    `observation_masking`, `recent_window`, and `<name>+keep_more_x<factor>` for a wider retry;
    the default chain's own settings win for the names it uses.
    """
    known: dict[str, Strategy] = {"observation_masking": ObservationMasking(), "recent_window": RecentWindow()}
    known.update({s.name: s for s in default_fallbacks()})
    if name in known:
        return known[name]
    match = _KEEP_MORE.match(name)
    if match and float(match["factor"]) > 1:
        return KeepMore(resolve_strategy(match["base"]), float(match["factor"]))
    raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(known))}, or <name>+keep_more_x<factor>")
