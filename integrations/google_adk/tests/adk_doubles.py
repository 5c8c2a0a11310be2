"""Test doubles for google-adk-memguard: an offline scripted `BaseLlm`, a `bash` tool, compaction
summarizers, a real ADK `App` on an `InMemoryRunner`, and a scorer keyed on the proposed action.

The agent's next action depends on whether it still remembers FACT (only the first tool output
has it): ``echo step k`` while it does, ``ls -la # step k`` once a compaction made it forget, and
its answers say which. So a compaction that drops FACT changes what the agent does (and the
scorer is really consulted), and one that keeps it leaves the action identical.

Two conversations shapes: ``in_flow`` (one user turn, six tool steps, compacted before model
calls once the prompt passes `token_threshold`) and ``post_invocation`` (five user turns of one
tool step each, compacted after every second run: a sliding window, proposing again after each
run once two new runs are in).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from google.adk.agents import LlmAgent
from google.adk.agents.run_config import RunConfig, StreamingMode
from google.adk.apps.app import App, EventsCompactionConfig
from google.adk.apps.base_events_summarizer import BaseEventsSummarizer
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions, EventCompaction
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import InMemoryRunner
from google.genai import types
from memguard.testing import LookupScorer
from pydantic import Field, PrivateAttr

FACT = "FACT-42"
INSTRUCTION = "You are a careful programmer."
TASK = "Find the fact, then report it."
NEXT = "Continue."
PAD = " " + "." * 160  # tool outputs long enough to cross the token threshold within a few steps
Shape = Literal["in_flow", "post_invocation"]


@dataclass(frozen=True)
class Script:
    """A conversation shape: the user turns and the tool steps each run makes."""

    turns: tuple[str, ...]
    steps_per_turn: int


SCRIPTS: dict[str, Script] = {
    "in_flow": Script((TASK,), 6),
    "post_invocation": Script((TASK, NEXT, NEXT, NEXT, NEXT), 1),
}


def contents_text(contents: Sequence[types.Content]) -> str:
    out: list[str] = []
    for content in contents:
        for part in content.parts or ():
            if part.text:
                out.append(part.text)
            if part.function_call:
                out.append(json.dumps(part.function_call.args))
            if part.function_response:
                out.append(json.dumps(part.function_response.response))
    return "\n".join(out)


DYNAMIC_INSTRUCTION = "Step budget: six."
"""An instruction a test moves into the contents (with a static instruction, ADK puts it there)."""


def _instruction_block(content: types.Content) -> bool:
    text = contents_text([content])
    return "BEGIN_SYSTEM_INSTRUC" in text or DYNAMIC_INSTRUCTION in text


def next_action(contents: Sequence[types.Content], steps_per_turn: int, tag: str = "") -> types.Content:
    """The scripted agent's next turn for a context."""
    text = contents_text(contents)
    steps = [int(k) for k in re.findall(r"step (\d+)", text)]
    k = max(steps) if steps else 0
    remembers = FACT in text
    memory = f"the fact is {FACT}" if remembers else "I forgot the fact"
    turns = [content for content in contents if not _instruction_block(content)]
    last = turns[-1] if turns else None  # what the agent answers (ADK's dynamic instruction block aside)
    if last is None or last.role == "model":
        return types.Content(role="model", parts=[types.Part(text=f"waiting{tag}; {memory}")])
    tool_result = any(part.function_response for part in last.parts or ())
    if tool_result and k % steps_per_turn == 0:
        return types.Content(role="model", parts=[types.Part(text=f"turn done at step {k}{tag}; {memory}")])
    command = f"echo step {k + 1}{tag}" if (remembers or k == 0) else f"ls -la # step {k + 1}{tag}"
    return types.Content(role="model", parts=[
        types.Part(function_call=types.FunctionCall(name="bash", args={"command": command}))])


def signature(request: LlmRequest) -> tuple[Any, ...]:
    """What a request asks besides its messages: model, settings, tools, tool choice, schema."""
    config = request.config or types.GenerateContentConfig()
    tools = tuple(sorted(
        declaration.name or ""
        for tool in config.tools or () for declaration in getattr(tool, "function_declarations", None) or ()
    ))
    return (
        request.model, config.temperature, config.max_output_tokens, config.top_p,
        config.tool_config.model_dump_json() if config.tool_config else None,
        str(config.system_instruction), tools, tuple(sorted((config.labels or {}).items())),
        config.response_schema.model_dump_json() if config.response_schema else None,
    )


class ScriptedLlm(BaseLlm):
    """An offline `BaseLlm` running the script (plain and SSE-streamed); records every call.

    `usage_metadata.prompt_token_count` is the request's size in characters / 4, so ADK's token
    threshold reads a real, context-dependent figure.
    """

    model: str = "scripted-agent"
    steps_per_turn: int = 6
    tag: str = ""
    calls: list[list[types.Content]] = Field(default_factory=list)
    signatures: list[tuple[Any, ...]] = Field(default_factory=list)
    summaries: int = 0
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def n_calls(self) -> int:
        """Calls for the agent's next step (probes included); summarization calls are `summaries`."""
        return len(self.calls)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        contents = list(llm_request.contents)
        summarizing = _summarization(llm_request)  # ADK's LlmEventSummarizer asks the agent's model
        with self._lock:
            if summarizing:
                self.summaries += 1
            else:
                self.calls.append([content.model_copy(deep=True) for content in contents])
                self.signatures.append(signature(llm_request))
        if summarizing:
            content = _summary_content(contents_text(contents), keep_fact=False)
        else:
            content = next_action(contents, self.steps_per_turn, self.tag)
        prompt = len(contents_text(contents)) + len(str(llm_request.config.system_instruction or ""))
        usage = types.GenerateContentResponseUsageMetadata(
            prompt_token_count=prompt // 4, candidates_token_count=7, total_token_count=prompt // 4 + 7)
        llm_request.contents.append(content)  # models append turns to the request they are given
        if stream:
            text = (content.parts or [types.Part()])[0].text
            if text:
                for word in re.split(r"(?<= )", text)[:-1]:
                    yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=word)]), partial=True)
            await asyncio.sleep(0)
        yield LlmResponse(content=content, usage_metadata=usage, partial=False if stream else None)


def bash(command: str) -> str:
    """Run a shell command."""
    found = re.search(r"step (\d+)", command)
    step = found.group(1) if found else "0"
    return f"step {step}" + (f" {FACT}" if step == "1" else "") + PAD


def _summarization(request: LlmRequest) -> bool:
    text = contents_text(request.contents[:1])
    return not (request.config and request.config.tools) and "conversation history" in text


def _summary_content(text: str, keep_fact: bool, label: str = "Summary") -> types.Content:
    steps = [int(k) for k in re.findall(r"step (\d+)", text)]
    facts = f" {FACT}" if keep_fact and FACT in text else ""
    summary = f"{label}, last step {max(steps) if steps else 0}{facts}."
    return types.Content(role="model", parts=[types.Part(text=summary)])


def _summary(events: Sequence[Event], keep_fact: bool) -> Event:
    text = contents_text([event.content for event in events if event.content])
    return Event(
        author="user", invocation_id=Event.new_id(),
        actions=EventActions(compaction=EventCompaction(
            start_timestamp=events[0].timestamp, end_timestamp=events[-1].timestamp,
            compacted_content=_summary_content(text, keep_fact, f"Summary of {len(events)} events"))),
    )


class DroppingSummarizer(BaseEventsSummarizer):
    """Summarizes without the details (FACT is lost); counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def maybe_summarize_events(self, *, events: list[Event]) -> Event | None:
        self.calls += 1
        return _summary(events, keep_fact=False) if events else None


class KeepingSummarizer(DroppingSummarizer):
    """Summarizes and keeps FACT (a good fallback)."""

    async def maybe_summarize_events(self, *, events: list[Event]) -> Event | None:
        self.calls += 1
        return _summary(events, keep_fact=True) if events else None


class RaisingSummarizer(DroppingSummarizer):
    """Always fails, as a summarizer whose model is down does."""

    async def maybe_summarize_events(self, *, events: list[Event]) -> Event | None:
        self.calls += 1
        raise ConnectionError("summarizer backend unavailable")


def compaction_config(shape: Shape, summarizer: BaseEventsSummarizer | None) -> EventsCompactionConfig:
    if shape == "in_flow":
        # compaction_interval and overlap_size: required before ADK 2.0; an interval never reached here
        return EventsCompactionConfig(summarizer=summarizer, token_threshold=150, event_retention_size=2,
                                      compaction_interval=100, overlap_size=0)
    return EventsCompactionConfig(summarizer=summarizer, compaction_interval=2, overlap_size=0)


def make_agent(llm: BaseLlm, **options: Any) -> LlmAgent:
    settings: dict[str, Any] = {
        "name": "coder", "model": llm, "instruction": INSTRUCTION, "tools": [bash],
        "generate_content_config": types.GenerateContentConfig(  # non-default settings: a probe must carry them
            temperature=0.3, max_output_tokens=200, top_p=0.9,
            tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="AUTO"))),
    }
    return LlmAgent(**{**settings, **options})


def make_app(llm: BaseLlm, summarizer: BaseEventsSummarizer | None, shape: Shape,
             plugins: Sequence[Any] = (), *, compacting: bool | None = None, **agent_options: Any) -> App:
    """The app; without compaction ("plain") when `summarizer` is None, unless `compacting` says so
    (ADK's default summarizer)."""
    compacting = summarizer is not None if compacting is None else compacting
    config = compaction_config(shape, summarizer) if compacting else None
    return App(name="coder_app", root_agent=make_agent(llm, **agent_options), events_compaction_config=config,
               plugins=list(plugins))


@dataclass
class Outcome:
    """What one conversation left behind."""

    events: list[Event]
    yielded: list[Event]


def _message(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


def run_conversation(app: App, script: Script, *, session_id: str = "session-0", streaming: bool = False,
                     mode: Literal["sync", "async"] = "async", max_llm_calls: int = 500) -> Outcome:
    """Every user turn of `script`, one run each, on a fresh `InMemoryRunner`."""
    config = RunConfig(streaming_mode=StreamingMode.SSE if streaming else StreamingMode.NONE,
                       max_llm_calls=max_llm_calls)
    runner = InMemoryRunner(app=app)
    if mode == "sync":
        asyncio.run(runner.session_service.create_session(app_name=app.name, user_id="u", session_id=session_id))
        yielded = [event for turn in script.turns
                   for event in runner.run(user_id="u", session_id=session_id, new_message=_message(turn),
                                           run_config=config)]
        session = asyncio.run(runner.session_service.get_session(app_name=app.name, user_id="u", session_id=session_id))
        assert session is not None
        return Outcome(list(session.events), yielded)
    return asyncio.run(arun_conversation(runner, app, script, session_id=session_id, config=config))


async def arun_conversation(runner: InMemoryRunner, app: App, script: Script, *, session_id: str,
                            config: RunConfig) -> Outcome:
    await runner.session_service.create_session(app_name=app.name, user_id="u", session_id=session_id)
    yielded: list[Event] = []
    for turn in script.turns:
        async for event in runner.run_async(user_id="u", session_id=session_id, new_message=_message(turn),
                                            run_config=config):
            yielded.append(event)
    session = await runner.session_service.get_session(app_name=app.name, user_id="u", session_id=session_id)
    assert session is not None
    return Outcome(list(session.events), yielded)


# ---------------------------------------------------------------------- normalised results


def _parts(content: types.Content | None) -> tuple[Any, ...]:
    out: list[Any] = []
    for part in (content.parts if content else None) or ():
        if part.function_call:
            out.append(("call", part.function_call.name, json.dumps(part.function_call.args, sort_keys=True)))
        elif part.function_response:
            out.append(("response", part.function_response.name, json.dumps(part.function_response.response)))
        elif part.text is not None:
            out.append(("text", part.text))
    return tuple(out)


def transcript(outcome: Outcome) -> dict[str, Any]:
    """Session events and the run's outputs without what differs from run to run (ids, times)."""
    events = outcome.events
    index = {event.timestamp: i for i, event in enumerate(events)}
    session = []
    for event in events:
        compaction = event.actions.compaction if event.actions else None
        if compaction is not None:
            session.append(("compaction", index.get(compaction.start_timestamp), index.get(compaction.end_timestamp),
                            _parts(compaction.compacted_content)))
        else:
            session.append((event.author, _parts(event.content)))
    outputs = [_parts(event.content) for event in outcome.yielded if not event.partial and event.content]
    return {"session": session, "outputs": outputs}


def usage(outcome: Outcome) -> tuple[int, int, int]:
    """The run's usage as ADK reports it: model events, prompt and output tokens."""
    metered = [event.usage_metadata for event in outcome.events
               if event.usage_metadata and not event.actions.compaction]
    return (len(metered), sum(u.prompt_token_count or 0 for u in metered),
            sum(u.candidates_token_count or 0 for u in metered))


def streamed(outcome: Outcome) -> list[tuple[bool, tuple[Any, ...]]]:
    """What a streaming consumer saw: every yielded event, partial or not."""
    return [(bool(event.partial), _parts(event.content)) for event in outcome.yielded]


def compactions(outcome: Outcome) -> int:
    return sum(1 for event in outcome.events if event.actions and event.actions.compaction)


# ---------------------------------------------------------------------- scoring


class ActionScorer(LookupScorer):
    """P(HARMFUL) looked up in each real rendered prompt: by the strategy in the perturbation tag
    (`by_strategy`), else by a key found anywhere in the proposed action (`table`), else `default`."""

    def __init__(self, table: dict[str, float] | None = None, default: float = 0.02, *,
                 by_strategy: dict[str, float] | None = None) -> None:
        super().__init__(table, default, by_strategy=by_strategy, action_match="contains")


def harmful_when_forgotten() -> ActionScorer:
    """The RM's verdict, played by a double: every action of a forgetful agent is harmful."""
    return ActionScorer({"ls -la": 0.97, "I forgot": 0.97})
