"""How a LangChain conversation is shown to MemRM, and back.

MemRM was trained on views where a summary is a user turn ``"[Summary] " + text`` (protocol §4).
LangChain's `SummarizationMiddleware` writes its summary as a `HumanMessage` starting with
"Here is a summary of the conversation to date:\\n\\n" and tagged ``lc_source="summarization"``.
Both drop-ins (middleware and callback) convert with `to_guard_view` before handing messages to
the guard, and convert probes back with `from_guard_view`, so the agent itself only ever sees its
own messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from memguard.protocol import SUMMARY_PREFIX

__all__ = [
    "LANGCHAIN_SUMMARY_PREFIX",
    "GuardView",
    "from_guard_view",
    "summary_text",
    "to_guard_view",
]

LANGCHAIN_SUMMARY_PREFIX = "Here is a summary of the conversation to date:\n\n"
"""The prefix `SummarizationMiddleware` puts before its summary (langchain 1.x)."""

_VIEW_MARK = "memguard_summary_prefix"


def summary_text(message: Any) -> str | None:
    """The summary's own text when `message` is a LangChain summary message.

    Args:
        message: Any message.

    Returns:
        The text after LangChain's summary prefix (or the whole content of a message tagged
        ``lc_source="summarization"``); None when `message` is not a summary.
    """
    if not isinstance(message, HumanMessage) or not isinstance(message.content, str):
        return None
    content = message.content
    if content.startswith(LANGCHAIN_SUMMARY_PREFIX):
        return content[len(LANGCHAIN_SUMMARY_PREFIX):]
    if message.additional_kwargs.get("lc_source") == "summarization":
        return content
    return None


def _as_training_summary(message: HumanMessage, text: str) -> HumanMessage:
    content = str(message.content)  # a summary message's content is a string (see summary_text)
    prefix = content[: len(content) - len(text)]
    return message.model_copy(update={
        "content": SUMMARY_PREFIX + text,
        "additional_kwargs": {**message.additional_kwargs, _VIEW_MARK: prefix},
    })


class GuardView:
    """One conversion of an agent's context, remembering its originals to convert back exactly.

    The system prompt (kept apart from the messages by `create_agent`) leads the view, because
    MemRM's training views start with it; it is stripped again on the way back. Use one view for
    one model call: it remembers the summaries it converted.

    Args:
        system_message: The agent's system prompt at this call, or None when it has none.
    """

    def __init__(self, system_message: SystemMessage | None = None) -> None:
        self.system_message = system_message
        self._originals: dict[int, BaseMessage] = {}
        self._originals_by_id: dict[str, BaseMessage] = {}

    def to_view(self, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        """The view MemRM should see: the system prompt first, summaries as ``[Summary]`` user turns.

        Args:
            messages: The agent's messages, without the system prompt.

        Returns:
            A new list. Messages other than summaries are the agent's own objects; each
            converted summary is remembered, so `from_view` gives the original back.
        """
        out: list[BaseMessage] = [self.system_message] if self.system_message is not None else []
        for message in messages:
            text = summary_text(message)
            if text is None:
                out.append(message)
                continue
            shown = _as_training_summary(message, text)  # type: ignore[arg-type]
            self._originals[id(shown)] = message
            if message.id:
                self._originals_by_id[message.id] = message
            out.append(shown)
        return out

    def from_view(self, messages: Sequence[Any]) -> list[BaseMessage]:
        """The agent's own messages for a view: the system prompt dropped, summaries restored.

        A summary this view made comes back as the original object; one that a strategy rebuilt
        from the view gets LangChain's summary prefix back.

        Args:
            messages: A view from `to_view`, or a strategy's compaction of one.

        Returns:
            The messages as the agent keeps them.
        """
        out: list[BaseMessage] = []
        for index, message in enumerate(messages):
            if index == 0 and self.system_message is not None and _same_system(message, self.system_message):
                continue
            original = self._originals.get(id(message))
            if original is None:
                original = self._rebuilt_summary(message)
            out.append(original if original is not None else _restore_summary(message))
        return out

    def _rebuilt_summary(self, message: Any) -> BaseMessage | None:
        """A summary a strategy rebuilt from our view (same id, new object): the original's prefix."""
        original = self._originals_by_id.get(getattr(message, "id", None) or "")
        if original is None or not isinstance(message.content, str) or not message.content.startswith(SUMMARY_PREFIX):
            return None
        text = message.content[len(SUMMARY_PREFIX):]
        if text == summary_text(original):
            return original
        content = str(original.content)
        prefix = content[: len(content) - len(summary_text(original) or "")]
        return original.model_copy(update={"content": prefix + text})


def _same_system(message: Any, system: SystemMessage) -> bool:
    return message is system or (isinstance(message, SystemMessage) and message.content == system.content)


def _restore_summary(message: Any) -> Any:
    """A view summary that a strategy rebuilt (so not one of our objects): give its prefix back."""
    if not isinstance(message, HumanMessage) or not isinstance(message.content, str):
        return message
    if not message.content.startswith(SUMMARY_PREFIX):
        return message
    kwargs = dict(message.additional_kwargs)
    prefix = kwargs.pop(_VIEW_MARK, None)
    if prefix is None:
        if kwargs.get("lc_source") != "summarization":
            return message
        prefix = LANGCHAIN_SUMMARY_PREFIX
    return message.model_copy(update={
        "content": prefix + message.content[len(SUMMARY_PREFIX):],
        "additional_kwargs": kwargs,
    })


def to_guard_view(messages: Sequence[BaseMessage], system_message: SystemMessage | None = None) -> list[BaseMessage]:
    """The view MemRM should see for `messages`: summaries as ``[Summary]`` user turns.

    Args:
        messages: The agent's messages, without the system prompt.
        system_message: The system prompt to lead the view, if any.

    Returns:
        The view (see `GuardView.to_view`).
    """
    return GuardView(system_message).to_view(messages)


def from_guard_view(messages: Sequence[Any], system_message: SystemMessage | None = None) -> list[BaseMessage]:
    """The agent's own messages for a view: summary prefixes restored, system prompt removed.

    Prefer `GuardView.from_view` on the view that made the messages: it returns the original
    summary objects rather than rebuilt ones.

    Args:
        messages: A MemRM view of the agent's messages.
        system_message: The system prompt that leads the view, if any (dropped).

    Returns:
        The messages as the agent keeps them.
    """
    return GuardView(system_message).from_view(messages)
