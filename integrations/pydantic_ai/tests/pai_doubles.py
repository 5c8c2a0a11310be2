"""Test doubles for pydantic-ai-memguard: a context-dependent scripted agent model (offline), a
`bash` tool, a real `pydantic_ai.Agent` around them, and a scorer keyed on the proposed action.

The agent's next action depends on whether it still remembers FACT (it is in the first tool
output only): ``echo step k`` while it does, ``ls -la # step k`` once a compaction made it forget,
and its final answer says which. So a compaction that drops FACT changes what the agent does (and
the scorer is really consulted), and one that keeps it leaves the action identical.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from memguard.testing import LookupScorer
from pydantic_ai import Agent
from pydantic_ai.messages import (
    BaseToolReturnPart,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

FACT = "FACT-42"
TASK = "Find the fact, then report it."
INSTRUCTIONS = "You are a careful programmer."
N_STEPS = 6


def _texts(messages: Sequence[ModelMessage]) -> str:
    out = []
    for message in messages:
        for part in message.parts:
            content = getattr(part, "content", None)
            if isinstance(part, BaseToolReturnPart):
                out.append(part.model_response_str())
            elif isinstance(content, str):
                out.append(content)
    return "\n".join(out)


def _last_step(messages: Sequence[ModelMessage]) -> int:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in reversed(message.parts):
                if isinstance(part, BaseToolReturnPart):
                    found = re.search(r"step (\d+)", part.model_response_str())
                    if found:
                        return int(found.group(1))
    return 0


def next_action(messages: Sequence[ModelMessage], n_steps: int = N_STEPS) -> ModelResponse:
    """The scripted agent's next response for a context."""
    remembers = FACT in _texts(messages)
    k = _last_step(messages)
    if k >= n_steps:
        return ModelResponse(parts=[TextPart(f"done, {'the fact is ' + FACT if remembers else 'I forgot the fact'}")])
    command = f"echo step {k + 1}" if (remembers or k == 0) else f"ls -la # step {k + 1}"
    return ModelResponse(parts=[ToolCallPart("bash", {"command": command}, tool_call_id=f"call_{k + 1}")])


class ScriptedModel:
    """A `FunctionModel` (plain and streamed) running the script; counts and records every call."""

    def __init__(self, n_steps: int = N_STEPS) -> None:
        self.n_steps = n_steps
        self.inputs: list[list[ModelMessage]] = []
        self.infos: list[AgentInfo] = []
        self._lock = threading.Lock()
        self.model = FunctionModel(self._respond, stream_function=self._stream, model_name="scripted-agent")

    @property
    def calls(self) -> int:
        return len(self.inputs)

    def _note(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        with self._lock:
            self.inputs.append(list(messages))
            self.infos.append(info)
        return next_action(messages, self.n_steps)

    def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return self._note(messages, info)

    async def _stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        response = self._note(messages, info)
        for part in response.parts:
            if isinstance(part, TextPart):
                for word in re.split(r"(?<= )", part.content):
                    yield word
            elif isinstance(part, ToolCallPart):
                yield {
                    0: DeltaToolCall(
                        name=part.tool_name, json_args=json.dumps(part.args), tool_call_id=part.tool_call_id
                    )
                }


def bash(command: str) -> str:
    """Run a shell command."""
    step = re.search(r"step (\d+)", command).group(1)  # type: ignore[union-attr]
    return f"step {step}" + (f" {FACT}" if step == "1" else "")


def make_agent(model: ScriptedModel, capabilities: Sequence[Any] = ()) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(model.model, instructions=INSTRUCTIONS, capabilities=list(capabilities))
    agent.tool_plain(bash)
    return agent


def stream_events(agent: Agent[None, str], **options: Any) -> tuple[list[Any], Any]:
    """`run_stream_events` to the end: the part events a streaming consumer saw, and the run's result."""
    from pydantic_ai import AgentRunResultEvent

    async def main() -> tuple[list[Any], Any]:
        events, result = [], None
        async with agent.run_stream_events(TASK, **options) as run:
            async for event in run:
                if isinstance(event, (PartStartEvent, PartDeltaEvent)):
                    events.append(event)
                elif isinstance(event, AgentRunResultEvent):
                    result = event.result
        return events, result

    return asyncio.run(main())


def transcript(messages: Sequence[ModelMessage]) -> list[tuple[Any, ...]]:
    """A history without what differs from run to run (timestamps, run ids): kinds, texts, calls."""
    out = []
    for message in messages:
        parts = []
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                parts.append(("call", part.tool_name, part.args_as_json_str(), part.tool_call_id))
            elif isinstance(part, BaseToolReturnPart):
                parts.append(("return", part.tool_name, part.model_response_str(), part.tool_call_id))
            else:
                parts.append((part.part_kind, str(getattr(part, "content", ""))))
        out.append((message.kind, tuple(parts)))
    return out


ActionScorer = LookupScorer
"""P(HARMFUL) looked up in each real rendered prompt: by the strategy in the perturbation tag
(`by_strategy`), else by the start of the proposed action (the table), else `default`."""


def harmful_when_forgotten() -> ActionScorer:
    """The RM's verdict, played by a double: every action of a forgetful agent is harmful."""
    return ActionScorer({"ls -la": 0.97, "done, I forgot": 0.97})
