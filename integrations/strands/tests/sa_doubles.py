"""A small real Strands agent for the tests: a shell-like tool and scripted, context-aware models.

Strands ships no offline model, so `ScriptedModel` implements its `Model` interface: ``stream``
yields Bedrock-Converse stream events for an answer that is a function of the context it gets
(probes cannot disturb a script). The agent runs ``echo step k`` while the fact from step 1's
output (FACT) is in its context and ``ls step k`` once a reduction made it forget it, then says
"done: FACT" or "done: forgot"; asked "What was the fact?" it answers from its context too. The
summarizer (the agent's ``aux_model``) keeps the step count and drops FACT: lossy in exactly the
way the guard exists to catch.

One scenario per path Strands reduces on:

- ``per_turn``: ``SlidingWindowConversationManager(per_turn=True)`` before every model call;
- ``proactive``: ``SummarizingConversationManager(proactive_compression=...)`` before a model call
  once the projected input passes the threshold of the model's ``context_window_limit``;
- ``end``: ``SlidingWindowConversationManager`` at the end of each invocation (two invocations);
- ``overflow``: the model raises ``ContextWindowOverflowException`` past a size, and
  ``SummarizingConversationManager`` must reduce.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memguard.testing import LookupScorer
from strands import Agent, tool
from strands.agent.conversation_manager import (
    ConversationManager,
    NullConversationManager,
    SlidingWindowConversationManager,
    SummarizingConversationManager,
)
from strands.models import Model
from strands.types.exceptions import ContextWindowOverflowException

FACT = "FACT-42"
N_STEPS = 5
TASK = "Find the fact, then report it."
QUESTION = "What was the fact?"
PADDING = " ." * 60  # tool output bulk, so the proactive threshold is reached after a few steps
SYSTEM = "You are a careful shell agent."
_STEP = re.compile(r"\bstep (\d+)\b")
PATHS = ("per_turn", "proactive", "end", "overflow")


@tool
def shell(command: str) -> str:
    """Run a shell command.

    Args:
        command: The command to run.
    """
    output = f"ran: {command}"
    if command.endswith(" step 1"):
        output += f" -> {FACT}"
    return output + PADDING


def context_text(messages: Sequence[Any]) -> str:
    """Everything a scripted model may read: texts, tool inputs and tool results."""
    parts: list[str] = []
    for message in messages:
        for block in message.get("content", []):
            if "text" in block:
                parts.append(str(block["text"]))
            elif "toolUse" in block:
                parts.append(json.dumps(block["toolUse"].get("input")))
            elif "toolResult" in block:
                parts.extend(str(item.get("text", "")) for item in block["toolResult"].get("content", []))
    return "\n".join(parts)


def last_step(text: str) -> int:
    return max((int(k) for k in _STEP.findall(text)), default=0)


def last_prompt(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        blocks = message.get("content", [])
        if message.get("role") == "user" and not any("toolResult" in b for b in blocks):
            return "\n".join(str(b["text"]) for b in blocks if "text" in b)
    return ""


def agent_answer(messages: Sequence[Any]) -> dict[str, Any]:
    """The scripted agent's next message for `messages`."""
    text = context_text(messages)
    last = messages[-1] if messages else {}
    if last.get("role") == "user" and QUESTION in last_prompt(messages[-1:]):
        known = f"-> {FACT}" in text  # the tool output itself, not an earlier answer quoting it
        return {"role": "assistant", "content": [{"text": "the fact is " + (FACT if known else "forgotten")}]}
    k = last_step(text)
    if k >= N_STEPS:
        return {"role": "assistant", "content": [{"text": "done: " + (FACT if FACT in text else "forgot")}]}
    command = f"echo step {k + 1}" if FACT in text or k == 0 else f"ls step {k + 1}"
    return {"role": "assistant", "content": [
        {"text": f"Running step {k + 1}."},
        {"toolUse": {"toolUseId": f"call-{k + 1}", "name": "shell", "input": {"command": command}}},
    ]}


def summary_answer(messages: Sequence[Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"text": f"Commands ran up to step {last_step(context_text(messages))}."}]}


class ScriptedModel(Model):
    """An offline Strands model: `answer(messages)` decides the reply, streamed as Converse events.

    Counts every ``stream`` call (probes included), records each request's signature (model id,
    settings, tool specs, tool choice, system prompt: never the messages) and the text of each
    context. With `overflow_chars`, a context longer than that raises the overflow error a real
    provider raises.
    """

    def __init__(self, answer: Callable[[Sequence[Any]], dict[str, Any]] = agent_answer, *,
                 model_id: str = "scripted-agent", overflow_chars: int | None = None, **config: Any) -> None:
        self.answer = answer
        self.config: dict[str, Any] = {"model_id": model_id, "temperature": 0.25, "max_tokens": 321, **config}
        self.overflow_chars = overflow_chars
        self.calls = 0
        self.overflows = 0
        self.requests: list[tuple[Any, ...]] = []
        self.contexts: list[str] = []
        self._lock = threading.Lock()

    def update_config(self, **model_config: Any) -> None:
        self.config.update(model_config)

    def get_config(self) -> dict[str, Any]:
        return self.config

    async def structured_output(self, output_model: Any, prompt: Any, system_prompt: str | None = None,
                                **kwargs: Any) -> AsyncGenerator[Any, None]:
        raise NotImplementedError("the scripted model has no structured output")
        yield  # pragma: no cover - an async generator, as the interface expects

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None, *,
                     tool_choice: Any = None, system_prompt_content: Any = None,
                     **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:
        text = context_text(messages)
        signature = (self.config["model_id"], json.dumps(self.config, sort_keys=True),
                     json.dumps(tool_specs, sort_keys=True, default=str), json.dumps(tool_choice, sort_keys=True),
                     system_prompt)
        with self._lock:
            self.calls += 1
            self.requests.append(signature)
            self.contexts.append(text)
        await asyncio.sleep(0)  # a real model call yields to the loop
        if self.overflow_chars is not None and len(text) > self.overflow_chars:
            with self._lock:
                self.overflows += 1
            raise ContextWindowOverflowException(f"{len(text)} characters do not fit")
        message = self.answer(messages)
        tag = re.search(r"\(conversation \d+\)", system_prompt or "")
        if tag and not any("toolUse" in block for block in message["content"]):  # answers name their conversation
            message = {**message, "content": [{"text": f"{b['text']} {tag.group(0)}"} for b in message["content"]]}
        yield {"messageStart": {"role": "assistant"}}
        uses = False
        for block in message["content"]:
            if "text" in block:
                yield {"contentBlockDelta": {"delta": {"text": block["text"]}}}
            else:
                uses = True
                use = block["toolUse"]
                start = {"toolUse": {"name": use["name"], "toolUseId": use["toolUseId"]}}
                yield {"contentBlockStart": {"start": start}}
                yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(use["input"])}}}}
            yield {"contentBlockStop": {}}
        yield {"messageStop": {"stopReason": "tool_use" if uses else "end_turn"}}
        out = sum(len(json.dumps(b)) for b in message["content"]) // 4
        usage = {"inputTokens": len(text) // 4, "outputTokens": out, "totalTokens": len(text) // 4 + out}
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": 7}}}


class CountingSliding(SlidingWindowConversationManager):
    """The built-in sliding window, counting how often it really reduced (the contract's `compactions`)."""

    reductions = 0

    def reduce_context(self, agent: Any, e: Exception | None = None, **kwargs: Any) -> None:
        self.reductions += 1
        super().reduce_context(agent, e, **kwargs)


class CountingSummarizing(SummarizingConversationManager):
    """The built-in summarizer, counting how often it really reduced."""

    reductions = 0

    def reduce_context(self, agent: Any, e: Exception | None = None, **kwargs: Any) -> None:
        self.reductions += 1
        super().reduce_context(agent, e, **kwargs)


def manager_for(path: str) -> ConversationManager:
    """The inner manager of a scenario (a fresh one: managers keep per-agent state)."""
    if path == "per_turn":
        return CountingSliding(window_size=6, per_turn=True)
    if path == "proactive":
        return CountingSummarizing(summary_ratio=0.5, preserve_recent_messages=2,
                                   proactive_compression={"compression_threshold": 0.4})
    if path == "end":
        return CountingSliding(window_size=4)
    if path == "overflow":
        return CountingSummarizing(summary_ratio=0.5, preserve_recent_messages=2)
    raise ValueError(path)


def prompts_for(path: str, conversation: int = 0) -> list[str]:
    """The user's prompts in a scenario (the end-of-invocation path needs a second invocation)."""
    task = TASK if conversation == 0 else f"{TASK} (conversation {conversation})"
    return [task, QUESTION] if path == "end" else [task]


@dataclass
class Run:
    """What a scenario left behind."""

    agent: Agent
    model: ScriptedModel
    summarizer: ScriptedModel
    outputs: list[str]
    streamed: list[Any] = field(default_factory=list)


class StreamCollector:
    """A callback handler recording what a streaming consumer sees (text and tool-input deltas)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, **event: Any) -> None:
        record(self.seen, event)


def record(seen: list[Any], event: Any) -> None:
    if "data" in event:
        seen.append(("text", event["data"]))
    elif "current_tool_use" in event and event.get("delta"):
        seen.append(("tool", event["current_tool_use"].get("name"), json.dumps(event["delta"], sort_keys=True)))


def build_agent(path: str, manager: ConversationManager | None, *, session_manager: Any = None,
                callback_handler: Any = None, agent_id: str | None = None, hooks: list[Any] | None = None,
                conversation: int = 0) -> tuple[Agent, ScriptedModel, ScriptedModel]:
    """A scenario's agent; `conversation` > 0 names itself in the system prompt, the agent id and its answers."""
    model = ScriptedModel(overflow_chars=650 if path == "overflow" else None,
                          context_window_limit=400 if path == "proactive" else 100_000)
    summarizer = ScriptedModel(summary_answer, model_id="scripted-summarizer")
    options: dict[str, Any] = {}
    if session_manager is not None:
        options["session_manager"] = session_manager
    if agent_id is not None or conversation:
        options["agent_id"] = agent_id or f"agent-{conversation}"
    if hooks:
        options["hooks"] = hooks
    system = SYSTEM if not conversation else f"{SYSTEM} (conversation {conversation})"
    agent = Agent(model=model, aux_model=summarizer, tools=[shell], system_prompt=system,
                  conversation_manager=manager if manager is not None else NullConversationManager(),
                  callback_handler=callback_handler, retry_strategy=None, **options)
    return agent, model, summarizer


def run(path: str, manager: ConversationManager | None, mode: str = "sync", *, conversation: int = 0,
        **options: Any) -> Run:
    """Run a scenario to the end with `manager` (None: a `NullConversationManager`)."""
    collector = StreamCollector()
    agent, model, summarizer = build_agent(path, manager, callback_handler=collector, conversation=conversation,
                                           **options)
    outputs: list[str] = []
    if mode == "sync":
        for prompt in prompts_for(path, conversation):
            outputs.append(str(agent(prompt)))
        return Run(agent, model, summarizer, outputs, collector.seen)
    return asyncio.run(_arun(path, agent, model, summarizer, conversation))


async def _arun(path: str, agent: Agent, model: ScriptedModel, summarizer: ScriptedModel,
                conversation: int = 0) -> Run:
    outputs: list[str] = []
    seen: list[Any] = []
    for prompt in prompts_for(path, conversation):
        result = None
        async for event in agent.stream_async(prompt):
            record(seen, event)
            if "result" in event:
                result = event["result"]
        outputs.append(str(result))
    return Run(agent, model, summarizer, outputs, seen)


async def arun(path: str, manager: ConversationManager | None, *, conversation: int = 0, **options: Any) -> Run:
    """`run` from a running loop (stream_async: what a streaming consumer sees)."""
    agent, model, summarizer = build_agent(path, manager, conversation=conversation, **options)
    return await _arun(path, agent, model, summarizer, conversation)


def transcript(messages: Sequence[Any]) -> list[Any]:
    """The history as plain values: tracking ids and metadata (usage, timings, pins) dropped."""
    return [(m["role"], json.loads(json.dumps(m["content"], sort_keys=True, default=str))) for m in messages]


class TagScorer(LookupScorer):
    """P(HARMFUL) by perturbation tag (a key found in the strategy under review's tag); `default` for the rest."""

    def __init__(self, by_tag: dict[str, float], default: float = 1.0) -> None:
        super().__init__(default=default, by_strategy=by_tag, strategy_match="contains")
