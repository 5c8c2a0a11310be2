"""Test doubles for the LangChain drop-ins: a context-dependent tool-calling agent model, a fixed
summariser, a `bash` tool, and a scorer keyed on the proposed action in the rendered prompt.

The agent's next action depends on whether it still remembers FACT (it is in the first tool
output only), so a compaction that drops it changes the agent's behaviour, and the scorer is
consulted; one that keeps it leaves the action identical.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from memguard.scoring.base import Score
from pydantic import PrivateAttr

try:  # langchain-core >= 1.3
    from langchain_core.exceptions import ContextOverflowError as ContextOverflow
except ImportError:  # the oldest langchain-core declared
    class ContextOverflow(ValueError):  # type: ignore[no-redef]
        """The provider's refusal of a context larger than its input window."""


FACT = "FACT-42"
PROPOSED = re.compile(r"Proposed action under perturbation '(.*?)':\n(.*?)\n\nIs the proposed action safe", re.DOTALL)


class PrefixScorer:
    """P(HARMFUL) looked up by the start of the proposed action in each real rendered prompt."""

    def __init__(self, table: dict[str, float] | None = None, default: float = 0.02) -> None:
        self.table = dict(table or {})
        self.default = default
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def score(self, prompts: list[str]) -> list[Score]:
        with self._lock:
            self.calls.append(list(prompts))
        out = []
        for prompt in prompts:
            assert prompt.endswith("\n\nAnswer:")
            _tag, action = PROPOSED.search(prompt).groups()
            p = next((v for k, v in self.table.items() if action.startswith(k)), self.default)
            out.append(Score(p_harmful=p, n_tokens=len(prompt) // 4))
        return out

    @property
    def prompts(self) -> list[str]:
        return [p for call in self.calls for p in call]


def _last_step(messages: list[Any]) -> int:
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            found = re.search(r"step (\d+)", str(message.content))
            if found:
                return int(found.group(1))
    return 0


class FactAgentModel(BaseChatModel):
    """A tool-calling agent: runs `n_steps` bash commands, then answers.

    Its command is ``echo step k`` while it remembers FACT and ``ls -la # step k`` once it has
    forgotten it; its answer says which. Records every input it was called with. With `blocks`, its
    messages hold a list of content blocks (what ChatAnthropic returns), with a line of text.
    """

    n_steps: int = 6
    blocks: bool = False
    label: str = ""  # ends its answer (tells runs of several conversations apart)
    _inputs: list[list[Any]] = PrivateAttr(default_factory=list)
    _requests: list[Any] = PrivateAttr(default_factory=list)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "fact-agent"

    @property
    def inputs(self) -> list[list[Any]]:
        return self._inputs

    @property
    def requests(self) -> list[Any]:
        """One signature per call: the model and every setting it was sent with (tools by name)."""
        return self._requests

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[getattr(t, "name", None) or t["name"] for t in tools], **kwargs)

    def _generate(self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        with self._lock:
            self._inputs.append(list(messages))
            self._requests.append(request_signature(self._llm_type, stop, kwargs))
        limit = (self.profile or {}).get("max_input_tokens")
        if limit is not None and count_tokens_approximately(messages) > limit:
            raise ContextOverflow(f"{count_tokens_approximately(messages)} tokens > {limit}")
        text = "\n".join(str(m.content) for m in messages)
        k = _last_step(messages)
        remembers = FACT in text
        if k >= self.n_steps:
            answer = f"done, {'the fact is ' + FACT if remembers else 'I forgot the fact'}{self.label}"
            message = AIMessage(content=self._content(answer))
        else:
            command = f"echo step {k + 1}" if (remembers or k == 0) else f"ls -la # step {k + 1}"
            message = AIMessage(
                content=self._content(f"Running step {k + 1}." if self.blocks else ""),
                tool_calls=[{"name": "bash", "args": {"command": command}, "id": f"call_{k + 1}"}],
            )
        tokens = len(text) // 4
        message.usage_metadata = {"input_tokens": tokens, "output_tokens": 8, "total_tokens": tokens + 8}
        message.response_metadata = {"model_name": self._llm_type}
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _content(self, text: str) -> Any:
        return [{"type": "text", "text": text}] if self.blocks else text


def request_signature(model: str, stop: Any, settings: dict[str, Any]) -> tuple[Any, ...]:
    """A hashable signature of one model request, messages aside."""
    return (model, repr(stop), tuple(sorted((k, repr(v)) for k, v in settings.items())))


class FixedSummarizer(BaseChatModel):
    """A summariser that always writes the same summary (and counts its calls)."""

    summary: str = "The agent ran a few echo commands."
    _calls: list[int] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "fixed-summarizer"

    @property
    def calls(self) -> int:
        return len(self._calls)

    def _generate(self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self._calls.append(1)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.summary))])


@tool
def bash(command: str) -> str:
    """Run a shell command."""
    step = re.search(r"step (\d+)", command).group(1)
    return f"step {step}" + (f" {FACT}" if step == "1" else "")


def make_agent(model: FactAgentModel, middleware: list[Any] = (), checkpointer: Any = None,
               tools: list[Any] | None = None) -> Any:
    return create_agent(
        model,
        tools=[bash] if tools is None else tools,
        system_prompt="You are a careful programmer.",
        middleware=list(middleware),
        checkpointer=checkpointer,
    )


def signature(messages: list[Any]) -> list[tuple[Any, ...]]:
    """A message list without ids (those are random): type, content, tool calls."""
    return [
        (m.type, m.content, tuple((c["name"], repr(c["args"]), c["id"]) for c in getattr(m, "tool_calls", None) or []))
        for m in messages
    ]


class RunSettings(AgentMiddleware):
    """Sends every model call with non-default settings, so a probe that drops them is caught."""

    settings: dict[str, Any] = {"temperature": 0.3, "max_tokens": 512}
    tool_choice = "auto"

    def _with_settings(self, request: Any) -> Any:
        return request.override(model_settings=dict(self.settings), tool_choice=self.tool_choice)

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        return handler(self._with_settings(request))

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        return await handler(self._with_settings(request))


class CountingEdit:
    """A context edit (`ClearToolUsesEdit`'s protocol) that counts the calls where it changed something."""

    def __init__(self, edit: Any) -> None:
        self.edit = edit
        self.keep = getattr(edit, "keep", None)
        self.applied = 0

    def apply(self, messages: list[Any], *, count_tokens: Any) -> None:
        before = list(messages)
        self.edit.apply(messages, count_tokens=count_tokens)
        if messages != before:
            self.applied += 1
