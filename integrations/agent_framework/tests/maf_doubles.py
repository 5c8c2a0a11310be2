"""Test doubles for agent-framework-memguard: a deterministic offline chat client, a `bash` tool, a real
`agent_framework.Agent` around them, and a normalised transcript.

agent-framework-core ships no fake client, so `ScriptedChatClient` is built like the real ones: the
framework's layers (`FunctionInvocationLayer`, `ChatMiddlewareLayer`, `ChatTelemetryLayer`) over
`BaseChatClient`, with `_inner_get_response` (the leaf a provider implements) running a script.
Its next action depends on whether it still sees FACT (only in the first tool result itself, not in a
summary of it):
``echo step k`` while it does, ``ls -la # step k`` once a compaction made it forget, and its final
answer says which. So a compaction that drops FACT changes what the agent does (and the scorer is
really consulted). Every leaf call is recorded with its request signature (model settings, tools,
tool_choice, instructions: never the messages).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from agent_framework import (
    Agent,
    BaseChatClient,
    ChatMiddlewareLayer,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    Message,
    ResponseStream,
    tool,
)
from agent_framework._compaction import (
    EXCLUDE_REASON_KEY,
    EXCLUDED_KEY,
    GROUP_ANNOTATION_KEY,
    SUMMARIZED_BY_SUMMARY_ID_KEY,
    SUMMARY_OF_MESSAGE_IDS_KEY,
)
from agent_framework.observability import ChatTelemetryLayer
from memguard.testing import LookupScorer

FACT = "FACT-42"
TASK = "Find the fact, then report it."
INSTRUCTIONS = "You are a careful programmer."
N_STEPS = 6
OPTIONS: dict[str, Any] = {"temperature": 0.25, "max_tokens": 321, "tool_choice": "auto"}


def _results(messages: Sequence[Message]) -> str:
    """The tool results the model sees (a summary of them is not the result: it forgets FACT)."""
    return "\n".join(str(c.result) for m in messages for c in m.contents if c.type == "function_result")


def _last_step(messages: Sequence[Message]) -> int:
    steps = [int(s) for m in messages for c in m.contents if c.type == "function_result"
             for s in re.findall(r"step (\d+)", str(c.result))]
    steps += [int(s) for m in messages for c in m.contents if c.type == "text" and m.role == "assistant"
              for s in re.findall(r"step (\d+)", c.text or "")]
    return max(steps, default=0)


def next_action(messages: Sequence[Message], n_steps: int = N_STEPS, task: str = TASK) -> Message:
    """The scripted agent's next message for a context."""
    remembers = FACT in _results(messages)
    k = _last_step(messages)
    tag = f" [{task[-1]}]" if task != TASK else ""
    if k >= n_steps:
        return Message("assistant", [f"done{tag}, {'the fact is ' + FACT if remembers else 'I forgot the fact'}"])
    command = f"echo step {k + 1}" if (remembers or k == 0) else f"ls -la # step {k + 1}"
    call = Content.from_function_call(f"call_{k + 1}", "bash", arguments=json.dumps({"command": command + tag}))
    return Message("assistant", [call])


def signature(options: Mapping[str, Any]) -> tuple[Any, ...]:
    """A request's signature: model settings, tool names, tool_choice, instructions (not the messages)."""
    tools = tuple(sorted(getattr(t, "name", str(t)) for t in options.get("tools") or ()))
    settings = tuple(sorted((k, repr(v)) for k, v in options.items() if k not in ("tools",)))
    return ("scripted-agent", settings, tools)


class ScriptedChatClient(FunctionInvocationLayer[Any], ChatMiddlewareLayer[Any], ChatTelemetryLayer[Any],
                         BaseChatClient[Any]):
    """An offline chat client with the real clients' layers; its leaf runs the script and records every call."""

    OTEL_PROVIDER_NAME = "scripted"

    def __init__(self, n_steps: int = N_STEPS, task: str = TASK, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_steps = n_steps
        self.task = task
        self.inputs: list[list[Message]] = []
        self.requests: list[tuple[Any, ...]] = []
        self.streamed: list[bool] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.inputs)

    def _inner_get_response(self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any],
                            **kwargs: Any) -> Any:
        with self._lock:
            self.inputs.append(list(messages))
            self.requests.append(signature(options))
            self.streamed.append(stream)
        message = next_action(messages, self.n_steps, self.task)
        tokens = 10 * len(messages)
        usage = {"input_token_count": tokens, "output_token_count": 7, "total_token_count": tokens + 7}
        if not stream:
            async def respond() -> ChatResponse[Any]:
                await self._validate_options(options)
                return ChatResponse(messages=[message], model="scripted-agent", usage_details=usage)  # type: ignore[arg-type]

            return respond()

        async def updates() -> AsyncIterator[ChatResponseUpdate]:
            await self._validate_options(options)
            for content in message.contents:
                if content.type == "text":
                    for word in re.split(r"(?<= )", content.text or ""):
                        yield ChatResponseUpdate(role="assistant", contents=[Content.from_text(word)],
                                                 model="scripted-agent")
                else:
                    yield ChatResponseUpdate(role="assistant", contents=[content], model="scripted-agent")
            yield ChatResponseUpdate(role="assistant", contents=[Content.from_usage(usage)],  # type: ignore[arg-type]
                                     model="scripted-agent")

        stream_response: ResponseStream[ChatResponseUpdate, ChatResponse[Any]] = self._build_response_stream(updates())
        return stream_response


@tool
def bash(command: str) -> str:
    """Run a shell command."""
    found = re.search(r"step (\d+)", command)
    step = found.group(1) if found else "?"
    return f"step {step}" + (f" {FACT}" if step == "1" else "")


def make_agent(client: ScriptedChatClient, *, compaction: Any = None, middleware: Sequence[Any] = (),
               **kwargs: Any) -> Agent[Any]:
    """A real `Agent` with the scripted client, the `bash` tool and non-default model settings."""
    return Agent(client, instructions=INSTRUCTIONS, tools=[bash], compaction_strategy=compaction,
                 middleware=list(middleware) or None, default_options=dict(OPTIONS), **kwargs)


def history(session: Any) -> list[Message]:
    """The session's stored history (the in-memory history provider's list)."""
    return list(session.state["in_memory"]["messages"])


def _content(content: Content) -> tuple[Any, ...]:
    if content.type == "function_call":
        return ("call", content.name, str(content.arguments), content.call_id)
    if content.type == "function_result":
        return ("result", str(content.result), content.call_id)
    if content.type == "usage":
        return ("usage",)
    return (content.type, content.text)


def transcript(messages: Sequence[Message]) -> list[tuple[Any, ...]]:
    """A history with its compaction state: roles, contents, exclusion flags, summary links.

    Group bookkeeping (ids, indices, token counts) is left out: the framework writes it whenever a
    strategy is installed, so a guarded run that vetoed everything still has it.
    """
    out = []
    for message in messages:
        props = message.additional_properties
        excluded = bool(props.get(EXCLUDED_KEY, False))
        group = props.get(GROUP_ANNOTATION_KEY) if isinstance(props.get(GROUP_ANNOTATION_KEY), dict) else {}
        links = (tuple(group.get(SUMMARY_OF_MESSAGE_IDS_KEY) or ()), group.get(SUMMARIZED_BY_SUMMARY_ID_KEY))
        out.append((message.role, tuple(_content(c) for c in message.contents), excluded,
                    props.get(EXCLUDE_REASON_KEY) if excluded else None, links))
    return out




class StrategyScorer(LookupScorer):
    """P(HARMFUL) by the strategy named in each real rendered prompt's perturbation tag, else `default`."""

    def __init__(self, by_strategy: Mapping[str, float], default: float = 0.02) -> None:
        super().__init__(default=default, by_strategy=by_strategy)


class SummarizerClient(BaseChatClient[Any]):
    """The summariser a `SummarizationStrategy` calls: names the steps it read, never the fact's value."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _inner_get_response(self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any],
                            **kwargs: Any) -> Any:
        self.calls += 1
        steps = sorted({int(s) for m in messages for s in re.findall(r"step (\d+)", m.text)})

        async def respond() -> ChatResponse[Any]:
            return ChatResponse(messages=[Message("assistant", [f"Ran steps {steps}; found a fact."])])

        return respond()
