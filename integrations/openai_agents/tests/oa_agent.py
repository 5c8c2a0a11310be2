"""A real SDK agent for the tests: a function tool, a context-dependent `ScriptedModel`, three turns.

Turn 1 looks the launch code up (the tool's long report ends with FACT), turn 2 checks the
weather, turn 3 asks for the code again. `ToolOutputTrimmer(recent_turns=1)` trims every tool
report from earlier turns to a preview that no longer holds FACT. The model mentions FACT
whenever it can still see it, and in turn 3 looks the code up again when it cannot: trimming
changes the transcript, and the probes on the full and the trimmed input differ.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from agents import Agent, Model, ModelSettings, RunConfig, RunHooks, Runner, function_tool
from agents.extensions import ToolOutputTrimmer
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from memguard.testing import LookupScorer

FACT = "FACT-42"
TURNS = ("Look up the launch code for project alpha.", "Check the weather.", "What was the launch code?")
INSTRUCTIONS = "You are a careful assistant. Use the lookup tool for facts."
FILLER = "Lorem ipsum dolor sit amet. " * 25


@function_tool
def lookup(topic: str) -> str:
    """Look a topic up in the archive."""
    report = f"Report on {topic}: {FILLER}"
    return report + (f" The launch code is {FACT}." if topic == "alpha" else " Sunny, 21 degrees.")


RUN_SETTINGS = ModelSettings(temperature=0.3, max_tokens=77, tool_choice="required")
"""Non-default run settings: a probe sent without them is caught (the Runner resets tool_choice
after the agent used a tool, so the forced choice holds only for each run's first call)."""


def run_config(**options: Any) -> RunConfig:
    """The tests' RunConfig: no tracing, the non-default run settings."""
    return RunConfig(tracing_disabled=True, model_settings=RUN_SETTINGS, **options)


def signature(call: ModelCall) -> tuple[Any, ...]:
    """A model call without its input: settings, tools, tool_choice, schema, handoffs (the contract's `requests`)."""
    return (json.dumps(call.model_settings.to_json_dict(), sort_keys=True), tuple(t.name for t in call.tools),
            None if call.output_schema is None else call.output_schema.name(),
            tuple(h.tool_name for h in call.handoffs))


def trimmer() -> ToolOutputTrimmer:
    return ToolOutputTrimmer(recent_turns=1, max_output_chars=200, preview_chars=60)


def _text(items: Sequence[Any]) -> str:
    return json.dumps(list(items), default=str)


def _current_turn(items: Sequence[Any]) -> tuple[str, list[Any]]:
    """The last user message and the items after it."""
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            return (content if isinstance(content, str) else json.dumps(content)), list(items[index + 1:])
    return "", list(items)


def respond(call: ModelCall) -> list[Any]:
    """The agent's policy: what it does next depends on what its input still shows."""
    items = list(call.input) if isinstance(call.input, list) else [{"role": "user", "content": call.input}]
    sees_fact = FACT in _text(items)
    n_calls = sum(1 for i in items if isinstance(i, dict) and i.get("type") == "function_call")
    n_messages = sum(1 for i in items if isinstance(i, dict) and i.get("role") == "assistant")
    call_id, message_id = f"call_{n_calls + 1}", f"msg_{n_messages + 1}"
    ask, after = _current_turn(items)
    looked_up = any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in after)
    memo = " I still have the launch code at hand." if sees_fact else ""  # never repeats FACT itself
    if ask.startswith(TURNS[0]):
        if not looked_up:
            return [function_call("lookup", {"topic": "alpha"}, call_id=call_id)]
        return [assistant_message("Noted the launch code.", item_id=message_id)]
    if ask.startswith(TURNS[1]):
        if not looked_up:
            return [function_call("lookup", {"topic": "weather"}, call_id=call_id)]
        return [assistant_message("It is sunny." + memo, item_id=message_id)]
    if sees_fact:
        return [assistant_message(f"The launch code is {FACT}.", item_id=message_id)]
    return [function_call("lookup", {"topic": "alpha"}, call_id=call_id)]


def scripted_model(steps: int = 200) -> ScriptedModel:
    return ScriptedModel([ModelStep.respond(respond) for _ in range(steps)])


def make_agent(model: Model) -> Agent[Any]:
    return Agent(name="archivist", instructions=INSTRUCTIONS, model=model, tools=[lookup])


def normalise(items: Sequence[Any]) -> list[Any]:
    """A transcript without SDK bookkeeping (statuses, annotations), keeping roles, texts and calls."""
    out: list[Any] = []
    for item in items:
        kind = item.get("type") or "message"
        if kind == "message":
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
            out.append((item.get("role"), content))
        elif kind == "function_call":
            out.append(("call", item.get("call_id"), item.get("name"), item.get("arguments")))
        elif kind == "function_call_output":
            out.append(("output", item.get("call_id"), item.get("output")))
        else:
            out.append((kind,))
    return out


def run_turns(agent: Agent[Any], config: RunConfig, *, mode: str, turns: Sequence[str] = TURNS,
              session: Any = None, after_turn: Callable[[int], Any] | None = None) -> list[Any]:
    """Run the conversation turn by turn (history carried by hand, or by `session`); the final history."""
    if mode == "sync":
        history: list[Any] = []
        for index, turn in enumerate(turns):
            given = turn if session is not None else [*history, {"role": "user", "content": turn}]
            result = Runner.run_sync(agent, given, run_config=config, session=session)
            history = result.to_input_list()
            if after_turn is not None:
                after_turn(index)
        return history
    return asyncio.run(_arun_turns(agent, config, turns, session, after_turn))


async def _arun_turns(agent: Agent[Any], config: RunConfig, turns: Sequence[str], session: Any,
                      after_turn: Callable[[int], Any] | None) -> list[Any]:
    history: list[Any] = []
    for index, turn in enumerate(turns):
        given = turn if session is not None else [*history, {"role": "user", "content": turn}]
        result = await Runner.run(agent, given, run_config=config, session=session)
        history = result.to_input_list()
        if after_turn is not None:
            after_turn(index)
    return history




class ActionScorer(LookupScorer):
    """The RM played by a double: P(HARMFUL) by the proposed action in each real rendered prompt (exactly)."""

    def __init__(self, table: dict[str, float], default: float = 0.02) -> None:
        super().__init__(table, default, action_match="exact")


FORGETFUL = {"It is sunny.": 0.9, "lookup({'topic': 'alpha'})": 0.95}
"""What the agent does once the trimming hid the launch code: harmful."""


def turns_for(conversation: int) -> tuple[str, ...]:
    """Conversation k's turns: the same task, told apart by a ticket number (the script reads prefixes)."""
    return TURNS if conversation == 0 else tuple(f"{turn} (ticket {conversation})" for turn in TURNS)


def usage_of(results: Sequence[Any]) -> tuple[int, int, int]:
    """The runs' usage as the SDK reports it: requests and tokens."""
    usages = [result.context_wrapper.usage for result in results]
    return (sum(u.requests for u in usages), sum(u.input_tokens for u in usages), sum(u.output_tokens for u in usages))


def stream_view(event: Any) -> Any:
    """What a streaming consumer reads from one event: the items and agent changes (raw deltas left out)."""
    if event.type == "run_item_stream_event":
        return (event.name, tuple(normalise([event.item.to_input_item()])))
    if event.type == "agent_updated_stream_event":
        return ("agent", event.new_agent.name)
    return None


async def stream_turns(agent: Agent[Any], config: RunConfig, turns: Sequence[str], *, session: Any = None,
                       carry: bool = True) -> tuple[list[Any], list[Any], list[Any]]:
    """`Runner.run_streamed`, turn by turn: the final history, what the consumer saw, the results."""
    history: list[Any] = []
    seen: list[Any] = []
    results = []
    for turn in turns:
        given: Any = [*history, {"role": "user", "content": turn}] if carry and session is None else turn
        result = Runner.run_streamed(agent, given, run_config=config, session=session)
        async for event in result.stream_events():
            view = stream_view(event)
            if view is not None:
                seen.append(view)
        history = result.to_input_list()
        results.append(result)
    return history, seen, results


class Observer(RunHooks[Any]):
    """What a sync run's observers see (its `RunHooks`): the sync counterpart of a stream consumer."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def on_agent_start(self, context: Any, agent: Any) -> None:
        self.seen.append(("agent", agent.name))

    async def on_llm_start(self, context: Any, agent: Any, system_prompt: Any, input_items: Any) -> None:
        self.seen.append(("llm start", agent.name))

    async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
        self.seen.append(("llm end", agent.name, tuple(normalise(response.to_input_items()))))

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        self.seen.append(("tool", tool.name))

    async def on_handoff(self, context: Any, from_agent: Any, to_agent: Any) -> None:
        self.seen.append(("handoff", from_agent.name, to_agent.name))


def to_view_threads(monkeypatch: Any, module: Any) -> list[str]:
    """Spy on `module.to_view`: the names of the threads it runs on, call by call (audit: the worker's)."""
    threads: list[str] = []
    real = module.to_view

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "to_view", spy)
    return threads
