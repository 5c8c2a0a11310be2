"""Running a `create_agent` graph the ways a user does and keeping what each consumer saw.

One run streams ``["messages", "values"]`` (sync or async) with two callback handlers in its config:
LangChain's own usage counter and a recorder of every chat-model call the run's callbacks saw.
What the stream showed, the usage and the calls are compared across variants.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, UsageMetadataCallbackHandler
from langchain_core.messages import HumanMessage

from lc_doubles import signature

TASK = "Find the fact, then report it."


class CallRecorder(BaseCallbackHandler):
    """Every chat-model call the run's callbacks saw (summariser calls apart)."""

    def __init__(self) -> None:
        self.agent_calls = 0
        self.summarizer_calls = 0
        self._lock = threading.Lock()

    def on_chat_model_start(self, serialized: Any, messages: Any, *, metadata: Any = None, **kwargs: Any) -> None:
        with self._lock:
            if (metadata or {}).get("lc_source") == "summarization":
                self.summarizer_calls += 1
            else:
                self.agent_calls += 1


@dataclass
class StreamedRun:
    """What one run left: its final messages, the streamed messages, usage and callback calls."""

    messages: list[Any]
    streamed: list[Any] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    recorder: CallRecorder = field(default_factory=CallRecorder)

    @property
    def transcript(self) -> list[Any]:
        return signature(self.messages)


def streamed_message(message: Any) -> tuple[Any, ...]:
    """A streamed message without its random id."""
    calls = tuple((c.get("name"), repr(c.get("args")), c.get("id")) for c in getattr(message, "tool_calls", None) or [])
    return (message.type, repr(message.content), calls)


def _config(recorder: CallRecorder, usage: UsageMetadataCallbackHandler, thread_id: str | None,
            callbacks: list[Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"callbacks": [recorder, usage, *callbacks]}
    if thread_id is not None:
        config["configurable"] = {"thread_id": thread_id}
    return config


def _finish(chunks: list[tuple[str, Any]], recorder: CallRecorder, usage: UsageMetadataCallbackHandler) -> StreamedRun:
    streamed = [streamed_message(payload[0]) for kind, payload in chunks if kind == "messages"]
    values = [payload for kind, payload in chunks if kind == "values"]
    return StreamedRun(messages=list(values[-1]["messages"]), streamed=streamed, usage=usage.usage_metadata,
                       recorder=recorder)


def run_streamed(agent: Any, *, mode: str = "sync", task: str = TASK, thread_id: str | None = None,
                 callbacks: Sequence[Any] = ()) -> StreamedRun:
    """Run `agent` to the end, streaming messages and values (sync, or async in a loop of its own)."""
    if mode != "sync":
        return asyncio.run(arun_streamed(agent, task=task, thread_id=thread_id, callbacks=callbacks))
    recorder, usage = CallRecorder(), UsageMetadataCallbackHandler()
    config = _config(recorder, usage, thread_id, list(callbacks))
    chunks = list(agent.stream({"messages": [HumanMessage(task)]}, config, stream_mode=["messages", "values"]))
    return _finish(chunks, recorder, usage)


async def arun_streamed(agent: Any, *, task: str = TASK, thread_id: str | None = None,
                        callbacks: Sequence[Any] = ()) -> StreamedRun:
    """`run_streamed` from a running loop (`astream`)."""
    recorder, usage = CallRecorder(), UsageMetadataCallbackHandler()
    config = _config(recorder, usage, thread_id, list(callbacks))
    chunks = [chunk async for chunk in agent.astream({"messages": [HumanMessage(task)]}, config,
                                                     stream_mode=["messages", "values"])]
    return _finish(chunks, recorder, usage)
