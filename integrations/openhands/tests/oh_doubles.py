"""A small real OpenHands agent for the tests: a shell-like tool and scripted, context-aware LLMs.

The agent runs ``echo step k`` while the fact from step 1's output (FACT) is in its context and
``ls step k`` once a condensation made it forget it, then says "done: FACT" or "done: forgot".
The step number survives condensation through the summary ("commands ran up to step k"), which
leaves FACT out: the summarizer is lossy in exactly the way the guard exists to catch.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

from memguard.testing import LookupScorer
from openhands.sdk import Agent, Conversation
from openhands.sdk.context.condenser import CondenserBase, LLMSummarizingCondenser
from openhands.sdk.event import ActionEvent, Condensation, CondensationRequest, MessageEvent, ObservationEvent
from openhands.sdk.llm import LLMResponse, Message, MessageToolCall, TextContent
from openhands.sdk.llm.exceptions import LLMContextWindowExceedError
from openhands.sdk.testing import TestLLM
from openhands.sdk.tool import Action, Observation, Tool, ToolDefinition, ToolExecutor, register_tool
from pydantic import Field, PrivateAttr

FACT = "FACT-42"
N_STEPS = 9
TASK = "Find the fact, then report it."
_STEP = re.compile(r"\bstep (\d+)\b")


class ShellAction(Action):
    command: str = Field(description="The shell command to run.")


class ShellObservation(Observation):
    pass


class ShellExecutor(ToolExecutor):
    def __call__(self, action: ShellAction, conversation: Any = None) -> ShellObservation:
        output = f"ran: {action.command}"
        if action.command.endswith(" step 1"):
            output += f" -> {FACT}"
        return ShellObservation.from_text(output)


class ShellTool(ToolDefinition[ShellAction, ShellObservation]):
    """Named like OpenHands' own shell tool, so the guard shows its calls as commands."""

    name = "terminal"

    @classmethod
    def create(cls, conv_state: Any = None, **params: Any) -> Sequence[ShellTool]:
        return [cls(description="Run a shell command.", action_type=ShellAction,
                    observation_type=ShellObservation, executor=ShellExecutor())]


register_tool("terminal", ShellTool)


def context_text(messages: Sequence[Message]) -> str:
    """Everything a scripted LLM may read: texts and tool-call arguments."""
    parts = [c.text for m in messages for c in m.content if isinstance(c, TextContent)]
    parts += [call.arguments for m in messages for call in (m.tool_calls or [])]
    return "\n".join(parts)


def last_step(text: str) -> int:
    return max((int(k) for k in _STEP.findall(text)), default=0)


class Counter:
    """Thread-safe call counter shared by a scripted LLM and its copies."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def tick(self) -> int:
        with self._lock:
            self.value += 1
            return self.value


class _Scripted(TestLLM):
    """A TestLLM whose answer is a function of its input (probes cannot disturb a script)."""

    _counter: Counter = PrivateAttr(default_factory=Counter)
    _contexts: list[str] = PrivateAttr(default_factory=list)
    _overflow_at: int | None = PrivateAttr(default=None)
    _requests: list[tuple[Any, ...]] = PrivateAttr(default_factory=list)

    @property
    def calls(self) -> int:
        return self._counter.value

    @property
    def requests(self) -> list[tuple[Any, ...]]:
        """One signature per call: the LLM's settings, the tools offered and the call's options (not the messages)."""
        return self._requests

    @property
    def contexts(self) -> list[str]:
        """The text of every context this LLM was called on, in order."""
        return self._contexts

    def answer(self, text: str) -> Message:
        raise NotImplementedError

    def completion(self, messages: list[Message], tools: Any = None, add_security_risk_prediction: bool = False,
                   on_token: Any = None, call_context: Any = None, **kwargs: Any) -> LLMResponse:
        self._counter.tick()
        self._contexts.append(context_text(messages))
        options = sorted((k, repr(v)) for k, v in kwargs.items())
        self._requests.append((self.model, self.temperature, self.max_output_tokens,
                               tuple(getattr(t, "name", repr(t)) for t in tools or ()),
                               add_security_risk_prediction, tuple(options)))
        if self._overflow_at is not None and len(messages) > self._overflow_at:
            raise LLMContextWindowExceedError(f"{len(messages)} messages do not fit")
        message = self.answer(context_text(messages))
        raw = self._create_model_response(message)
        return LLMResponse(message=message, metrics=self._zero_metrics(), raw_response=raw)


class AgentLLM(_Scripted):
    def answer(self, text: str) -> Message:
        k = last_step(text)
        if k >= N_STEPS:
            answer = "done: " + (FACT if FACT in text else "forgot")
            return Message(role="assistant", content=[TextContent(text=answer)])
        command = f"echo step {k + 1}" if FACT in text or k == 0 else f"ls step {k + 1}"
        call = MessageToolCall(id=f"call-{k + 1}", name="terminal", origin="completion",
                               arguments=json.dumps({"command": command, "security_risk": "LOW"}))
        return Message(role="assistant", content=[TextContent(text="")], tool_calls=[call])


class SummarizerLLM(_Scripted):
    def answer(self, text: str) -> Message:
        return Message(role="assistant", content=[TextContent(text=f"Commands ran up to step {last_step(text)}.")])


def agent_llm(*, overflow_at: int | None = None) -> AgentLLM:
    """The agent's LLM, with non-default settings (a probe sent with other settings is caught)."""
    llm = AgentLLM(model="test-model", usage_id="agent", temperature=0.3, max_output_tokens=777)
    llm._overflow_at = overflow_at
    return llm


def summarizing(*, max_size: int = 8, keep_first: int = 2) -> LLMSummarizingCondenser:
    return LLMSummarizingCondenser(llm=SummarizerLLM(model="test-model", usage_id="condenser"),
                                   max_size=max_size, keep_first=keep_first)


def make_agent(llm: AgentLLM, condenser: CondenserBase | None) -> Agent:
    return Agent(llm=llm, tools=[Tool(name="terminal")], include_default_tools=[], condenser=condenser)


def task_for(conversation: int) -> str:
    return TASK if conversation == 0 else f"{TASK} (ticket {conversation})"


def new_conversation(agent: Agent, conversation: int = 0, *, workspace: str | None = None, **options: Any) -> Any:
    started = Conversation(agent=agent, workspace=workspace or tempfile.mkdtemp(prefix="oh-memguard-"),
                           visualizer=None, max_iteration_per_run=60, **options)
    started.send_message(task_for(conversation))
    return started


def run(agent: Agent, mode: str = "sync", *, workspace: str | None = None, conversation: int = 0,
        **options: Any) -> Any:
    """Run `agent` on its task to the end in a fresh local conversation; returns the conversation."""
    started = new_conversation(agent, conversation, workspace=workspace, **options)
    if mode == "sync":
        started.run()
    else:
        asyncio.run(started.arun())
    return started


def transcript(events: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The run as plain values: ids, timestamps and response ids dropped."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, ActionEvent):
            out.append(("action", event.tool_name, json.loads(event.tool_call.arguments)["command"]))
        elif isinstance(event, ObservationEvent):
            out.append(("observation", event.observation.text))
        elif isinstance(event, MessageEvent):
            out.append((event.source, context_text([event.llm_message])))
        elif isinstance(event, Condensation):
            out.append(("condensation", len(event.forgotten_event_ids), event.summary, event.summary_offset))
        elif isinstance(event, CondensationRequest):
            out.append(("condensation request",))
    return out


class TagScorer(LookupScorer):
    """P(HARMFUL) by perturbation tag (a key found in the strategy under review's tag); `default` for the rest."""

    def __init__(self, by_tag: dict[str, float], default: float = 1.0) -> None:
        super().__init__(default=default, by_strategy=by_tag, strategy_match="contains")


def commands(events: Sequence[Any]) -> list[str]:
    return [json.loads(e.tool_call.arguments)["command"] for e in events if isinstance(e, ActionEvent)]
